"""Dense representations of an event stream: counts per polarity, a signed voxel grid, the last
time per pixel (for a time surface). The hot loops of `nodes.event_repr`.

Why these kernels look like this: a node cuts the stream into windows, but a batch may end
anywhere inside a window and a window may end anywhere inside a batch. So each ``add_*`` kernel
adds the events ``events[start:stop]`` to a window's accumulator (its state, updated in place,
as `kernels.filtering.sosfilt_chunk` updates its filter state) and stops at the first event whose
time is outside ``[lo, hi)`` — the event that closes the window — returning its index. The node
emits the window and calls again from there. One fused pass: the boundary test costs one
compare per event beside the scatter, and a random scatter into a 1280x720x2 float32 frame is
bound by cache misses, not by the loop.

Measured choices (10 M events, 1280x720, one core): events read as records (``events[i].t``),
~20 % faster than through the four strided field views; accumulators indexed flat, 15-50 %
faster than ``frame[p, y, x]``. No bounds checks: ``x``, ``y`` inside the sensor and ``p`` in
{0, 1} are the caller's promise (`nodes.event_input.EventInput` drops the rest).
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: The whole int64 time axis: ``lo`` / ``hi`` of a window cut by count, not by time.
T_MIN = np.iinfo(np.int64).min
T_MAX = np.iinfo(np.int64).max
#: A last-time map's value for a pixel that never fired.
NEVER = T_MIN
#: exp(-x) rounds to 0 in float32 for x > 150 ln 2 = 103.97 (below half the least subnormal).
_NO_DECAY_BEYOND = 104.0


@numba.njit(cache=True, nogil=True)
def add_counts(events: np.ndarray, start: int, stop: int, lo: int, hi: int,
               polarity_mask: int, frame: np.ndarray) -> int:
    """Count ``events[start:stop]`` into ``frame`` (P x H x W float32, C-contiguous, updated in
    place): ``frame[p & polarity_mask, y, x] += 1``, until an event's ``t`` is outside
    ``[lo, hi)`` (µs).

    ``polarity_mask`` is 1 for one channel per polarity, 0 to merge them into channel 0.
    Returns the index of the first event left out (``stop`` if none).
    """
    plane, width = frame.shape[1] * frame.shape[2], frame.shape[2]
    flat = frame.reshape(-1)
    for i in range(start, stop):
        e = events[i]
        if e.t < lo or e.t >= hi:
            return i
        flat[(e.p & polarity_mask) * plane + e.y * width + e.x] += 1.0
    return stop


@numba.njit(cache=True, nogil=True)
def add_voxels(events: np.ndarray, start: int, stop: int, lo: int, hi: int, t0: int, span: int,
               grid: np.ndarray) -> int:
    """Add ``events[start:stop]`` to the voxel grid ``grid`` (B x H x W float32, C-contiguous,
    updated in place), until an event's ``t`` is outside ``[lo, hi)`` (µs); return its index
    (or ``stop``).

    Zhu et al. 2019 (the event volume; E2VID's ``events_to_voxel_grid``): an event of polarity
    +1 (``p == 1``) or -1 (``p == 0``) at normalised time ``t* = (B - 1) (t - t0) / span`` adds
    ``pol * max(0, 1 - |b - t*|)`` to bins ``b = floor(t*)`` and ``b + 1``: its whole weight,
    split linearly between the two nearest bins. ``t - t0`` is clamped to ``[0, span]`` (a late
    event goes to bin 0); ``t*`` is float64, the weights float32. ``span == 0`` puts every event
    in bin 0.
    """
    bins, plane, width = grid.shape[0], grid.shape[1] * grid.shape[2], grid.shape[2]
    flat = grid.reshape(-1)
    scale = (bins - 1) / span if span > 0 else 0.0
    for i in range(start, stop):
        e = events[i]
        if e.t < lo or e.t >= hi:
            return i
        pol = np.float32(2 * e.p - 1)
        ts = min(max(e.t - t0, 0), span) * scale
        b = min(int(ts), bins - 1)
        frac = np.float32(ts - b)
        k = b * plane + e.y * width + e.x
        flat[k] += pol - pol * frac
        if b < bins - 1:
            flat[k + plane] += pol * frac
    return stop


@numba.njit(cache=True, nogil=True)
def stamp_times(events: np.ndarray, start: int, stop: int, lo: int, hi: int, polarity_mask: int,
                last: np.ndarray) -> int:
    """Write each event's ``t`` (µs) into ``last[p & polarity_mask, y, x]`` (P x H x W int64,
    C-contiguous, updated in place: the last time each pixel fired), for ``events[start:stop]``
    until an event's ``t`` is outside ``[lo, hi)``; return its index (or ``stop``)."""
    plane, width = last.shape[1] * last.shape[2], last.shape[2]
    flat = last.reshape(-1)
    for i in range(start, stop):
        e = events[i]
        if e.t < lo or e.t >= hi:
            return i
        flat[(e.p & polarity_mask) * plane + e.y * width + e.x] = e.t
    return stop


@numba.njit(cache=True, nogil=True)
def decay_surface(last: np.ndarray, t_now: int, tau: float) -> np.ndarray:
    """The time surface at ``t_now`` (µs): ``exp(-(t_now - last) / tau)`` per pixel (``tau`` in
    µs; a difference below 0 counts as 0), 0 where the pixel never fired (``last == NEVER``).
    Same shape as ``last``, float32 (computed in float64, then rounded)."""
    out = np.empty(last.shape, np.float32)
    flat_last = last.reshape(-1)
    flat_out = out.reshape(-1)
    for i in range(flat_last.shape[0]):
        t = flat_last[i]
        if t == NEVER:
            flat_out[i] = 0.0
            continue
        x = max(t_now - t, 0) / tau
        flat_out[i] = 0.0 if x > _NO_DECAY_BEYOND else math.exp(-x)
    return out


def warm_up(event_dtype: np.dtype) -> None:
    """Compile every kernel (or load it from Numba's cache) for batches of ``event_dtype``
    records, writable and read-only (a batch decoded off the wire is read-only)."""
    for writable in (True, False):
        none = np.empty(0, event_dtype)
        none.flags.writeable = writable
        add_counts(none, 0, 0, T_MIN, T_MAX, 1, np.zeros((2, 1, 1), np.float32))
        add_voxels(none, 0, 0, T_MIN, T_MAX, 0, 1, np.zeros((2, 1, 1), np.float32))
        stamp_times(none, 0, 0, T_MIN, T_MAX, 1, np.zeros((2, 1, 1), np.int64))
    decay_surface(np.zeros((2, 1, 1), np.int64), 0, 1.0)
