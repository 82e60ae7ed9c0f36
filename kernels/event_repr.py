"""Dense representations of an event stream: counts per polarity, a signed voxel grid, the last
time per pixel (for a time surface). The hot loops of `nodes.event_repr`.

Why these kernels look like this: a node cuts the stream into windows, but a batch may end
anywhere inside a window and a window may end anywhere inside a batch. So each ``add_*`` kernel
adds the events ``events[start:stop]`` to a window's accumulator (its state, updated in place,
as `kernels.filtering.sosfilt_chunk` updates its filter state) and stops at the first event whose
time is outside ``[lo, hi)`` — the event that closes the window — returning its index. The node
emits the window and calls again from there. One fused pass: the boundary test costs one
compare per event beside the scatter, and a random scatter into a 1280x720x2 float32 frame is
bound by cache misses, not by the loop (finding the window's end first, in a vectorised pass,
and scattering without the test measured 20-30 % faster on a batch read from memory, but no
faster in a node, where the batch is in cache after `nodes.event_input.EventInput`'s check).

Measured choices (10 M events, 1280x720, one core): events read as records (``events[i].t``),
~20 % faster than through the four strided field views; accumulators indexed flat, 15-50 %
faster than ``frame[p, y, x]``. No bounds checks: ``x``, ``y`` inside the sensor and ``p`` in
{0, 1} are the caller's promise (`nodes.event_input.EventInput` drops the rest).

The time surface's exponential (`decay_surface`, over every pixel at every step, ~10 ms per
1280x720x2 surface with ``math.exp``) is read from two tables of ``exp`` instead and checked to
round to the float32 that ``math.exp`` would give (`DecayTable`): 2-3x faster, same bits. (A
vectorised polynomial exp behind the same check was slower in a node: on real events most
pixels are old or never fired, which the tables' loop skips at the cost of a branch.)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

#: The whole int64 time axis: ``lo`` / ``hi`` of a window cut by count, not by time.
T_MIN = np.iinfo(np.int64).min
T_MAX = np.iinfo(np.int64).max
#: A last-time map's value for a pixel that never fired.
NEVER = T_MIN
#: exp(-x) rounds to 0 in float32 for x > 150 ln 2 = 103.97 (below half the least subnormal).
_NO_DECAY_BEYOND = 104.0
#: A table product within this relative distance of a float32 rounding boundary is not trusted
#: (its error is below 2^-45: `DecayTable`); ``math.exp`` is called instead.
_EDGE = 2.0 ** -40
#: At most 2^14 entries per decay table (128 KiB): ages up to 2^28 µs (4.5 min) are tabled.
_TABLE_BITS = 14


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
def take(acc: np.ndarray) -> np.ndarray:
    """A copy of the float32 accumulator ``acc`` (C-contiguous), which is zeroed: a finished
    window out and the next one started, in one pass."""
    out = np.empty_like(acc)
    flat_acc = acc.reshape(-1)
    flat_out = out.reshape(-1)
    for i in range(flat_acc.shape[0]):
        flat_out[i] = flat_acc[i]
        flat_acc[i] = 0.0
    return out


class DecayTable(NamedTuple):
    """``exp(-d / tau)`` for every integer age ``d`` (µs) a surface shows, as a product of two
    tables: ``d = q 2^shift + r``, ``exp(-d / tau) ~ high[q] * low[r]``.

    Exactness: the tables hold ``math.exp(-(a / tau))`` of their ages ``a``, each within a
    relative 2^-52 + (a / tau) 2^-53 of the exact value (the exponential's rounding and its
    argument's); the product is so within a relative 2^-50 + (d / tau) 2^-52 < 2^-45.2
    (``d / tau <= 104``) of ``math.exp(-(d / tau))``. Its float32 rounding is then the same as
    ``math.exp``'s unless it lies within `_EDGE` (2^-40, 36 times that bound) of a float32
    rounding boundary, about one pixel in 50 000, where `decay_surface` calls ``math.exp``
    instead. Ages of ``2^_TABLE_BITS * 2^shift`` and more (with a ``tau`` above 2.6 s) are not
    tabled and call it too.
    """

    high: np.ndarray  #: float64, exp(-(q 2^shift) / tau)
    low: np.ndarray   #: float64, exp(-r / tau), r < 2^shift
    shift: int
    oldest: int       #: the largest age (µs) with d / tau <= 104; older pixels show 0


def decay_table(tau: float) -> DecayTable:
    """The `DecayTable` of a time constant ``tau`` (µs, > 0): two tables of about
    sqrt(104 tau) entries each (at most 2^14)."""
    oldest = _oldest_visible(tau)
    ages = min(oldest, 1 << 2 * _TABLE_BITS) + 1
    shift = min(((ages - 1).bit_length() + 1) // 2, _TABLE_BITS)  # ceil(log2(ages) / 2)
    high = min(((ages - 1) >> shift) + 1, 1 << _TABLE_BITS)
    return DecayTable(_exp_ages(high, 1 << shift, tau), _exp_ages(1 << shift, 1, tau), shift,
                      oldest)


def _oldest_visible(tau: float) -> int:
    """The largest integer age ``d`` (µs) with ``d / tau <= 104`` in float64 (the cut-off of
    `decay_surface`, found by bisection in the same arithmetic), at most ``T_MAX``."""
    if T_MAX / tau <= _NO_DECAY_BEYOND:
        return T_MAX
    lo, hi = 0, T_MAX  # lo passes, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if mid / tau <= _NO_DECAY_BEYOND else (lo, mid)
    return lo


@numba.njit(cache=True, nogil=True)
def _exp_ages(n: int, step: int, tau: float) -> np.ndarray:
    """``math.exp(-(a / tau))`` for the ages ``a = 0, step, ..., (n - 1) step`` (µs)."""
    out = np.empty(n)
    for k in range(n):
        out[k] = math.exp(-(k * step / tau))
    return out


@numba.njit(cache=True, nogil=True)
def decay_surface(last: np.ndarray, t_now: int, tau: float, table: DecayTable) -> np.ndarray:
    """The time surface at ``t_now`` (µs): ``exp(-(t_now - last) / tau)`` per pixel (``tau`` in
    µs, ``table = decay_table(tau)``; a difference below 0 counts as 0), 0 where the pixel never
    fired (``last == NEVER``). Same shape as ``last``, float32: bit for bit
    ``float32(math.exp(-(max(t_now - last, 0) / tau)))``, and 0 beyond ``104 tau``."""
    out = np.empty(last.shape, np.float32)
    flat_last = last.reshape(-1)
    flat_out = out.reshape(-1)
    high, low, shift, oldest = table
    tabled = high.shape[0] << shift
    mask = (1 << shift) - 1
    up, down = 1.0 + _EDGE, 1.0 - _EDGE
    for i in range(flat_last.shape[0]):
        t = flat_last[i]
        if t == NEVER:
            flat_out[i] = 0.0
            continue
        d = max(t_now - t, 0)
        if d > oldest:
            flat_out[i] = 0.0
            continue
        if d < tabled:
            v = high[d >> shift] * low[d & mask]
            if np.float32(v * up) == np.float32(v * down):  # not near a rounding boundary
                flat_out[i] = v
                continue
        flat_out[i] = math.exp(-(d / tau))
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
    take(np.zeros((2, 1, 1), np.float32))
    decay_surface(np.zeros((2, 1, 1), np.int64), 0, 1.0, decay_table(1.0))
