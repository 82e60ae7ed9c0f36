"""Event filters as Numba kernels: region of interest, downsampling, polarity, refractory
period, background activity (denoise) and pixel masks (hot pixels).

Why kernels: at sensor rates (tens to hundreds of Mev/s) a filter must cost a few nanoseconds
per event, and the stateful ones (refractory, denoise) decide each event from the ones before
it, which NumPy cannot express without a Python loop. Every kernel reads a batch once and
writes the events it keeps into ``out``, a new zeroed array the caller allocated with as many
records as the batch (never the input), and returns how many it kept: ``out[:k]`` is the result.

How (each choice measured on 10 M events, one core): a kernel that keeps records unchanged
copies them whole, as two 64-bit words (``words``), so they stay byte-identical to the input's;
one that changes a field (a crop's shift, a downsample, a merged polarity) writes the four
fields by name into a zeroed ``out`` (copying words and then overwriting a field is ~40%
slower). The copy is unconditional and the output position advances by the keep decision (0 or
1): on noisy input the decision cannot be predicted, and a branch per event would cost more
than the copy. Range tests are one unsigned comparison each (``x - x0 < width``). State (a
per-pixel time map, calibration counts) is passed in and updated in place, so a stream cut
anywhere gives the output of the whole. Per-pixel maps are (H, W) arrays read as flat rows with
unsigned index arithmetic: Numba then drops its negative-index handling, a quarter of the
denoise kernel's time.

Inputs must be EVENT_DTYPE batches already checked against the sensor
(`nodes.event_input.EventInput.checked`): coordinates index the state maps unchecked.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.event_checks import NO_TIME

__all__ = ["NO_TIME", "background_activity", "calibration_counts", "crop", "downsample",
           "mask_pixels", "polarity", "refractory", "words"]


def words(events: np.ndarray) -> np.ndarray:
    """A contiguous EVENT_DTYPE batch seen as (n, 2) uint64: each 16-byte record as two words
    (a view, no copy), the unit the kernels copy records in."""
    if events.dtype.itemsize != 16 or not events.flags.c_contiguous:
        raise ValueError("words() needs a contiguous batch of 16-byte event records")
    return events.view(np.uint64).reshape(-1, 2)


def _flat(state: np.ndarray) -> np.ndarray:
    """A per-pixel state map as one row (a view: the kernel's updates land in ``state``)."""
    if not state.flags.c_contiguous:
        raise ValueError("a per-pixel state map must be C-contiguous")
    return state.reshape(-1)


def _fields(events: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ``t``, ``x``, ``y``, ``p`` columns of an EVENT_DTYPE batch (views)."""
    return events["t"], events["x"], events["y"], events["p"]


@numba.njit(cache=True, nogil=True)
def _crop(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, out_t: np.ndarray,
          out_x: np.ndarray, out_y: np.ndarray, out_p: np.ndarray, x0: int, y0: int, width: int,
          height: int, dx: int, dy: int) -> int:
    j = 0
    for i in range(t.shape[0]):
        xi, yi = x[i], y[i]
        out_t[j] = t[i]
        out_x[j] = xi - dx
        out_y[j] = yi - dy
        out_p[j] = p[i]
        j += (np.uint32(xi - x0) < np.uint32(width)) & (np.uint32(yi - y0) < np.uint32(height))
    return j


def crop(events: np.ndarray, out: np.ndarray, x0: int, y0: int, width: int, height: int,
         shift: bool = True) -> int:
    """Keep the events with ``x0 <= x < x0 + width`` and ``y0 <= y < y0 + height``.

    Parameters
    ----------
    events : numpy.ndarray
        Contiguous EVENT_DTYPE batch.
    out : numpy.ndarray
        Zeroed EVENT_DTYPE array with at least ``len(events)`` records; receives the kept
        events.
    x0, y0, width, height : int
        The rectangle, in pixels.
    shift : bool
        Subtract ``(x0, y0)`` from the kept events' coordinates (the rectangle becomes the
        sensor), or leave them as they were.

    Returns
    -------
    int
        How many events were kept (``out[:k]``).
    """
    dx, dy = (x0, y0) if shift else (0, 0)
    return _crop(*_fields(events), *_fields(out), x0, y0, width, height, dx, dy)


@numba.njit(cache=True, nogil=True)
def _downsample(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, out_t: np.ndarray,
                out_x: np.ndarray, out_y: np.ndarray, out_p: np.ndarray, new_x: np.ndarray,
                new_y: np.ndarray) -> int:
    for i in range(t.shape[0]):
        out_t[i] = t[i]
        out_x[i] = new_x[x[i]]
        out_y[i] = new_y[y[i]]
        out_p[i] = p[i]
    return t.shape[0]


def downsample(events: np.ndarray, out: np.ndarray, new_x: np.ndarray, new_y: np.ndarray) -> int:
    """Every event, its ``x`` replaced by ``new_x[x]`` and ``y`` by ``new_y[y]``.

    Parameters
    ----------
    events : numpy.ndarray
        Contiguous EVENT_DTYPE batch.
    out : numpy.ndarray
        Zeroed EVENT_DTYPE array with at least ``len(events)`` records.
    new_x, new_y : numpy.ndarray
        int16 look-up tables, one entry per column / row of the input sensor (``arange(W) //
        factor``: a table lookup is several times cheaper than a division per event).

    Returns
    -------
    int
        ``len(events)``: a downsample drops nothing.
    """
    return _downsample(*_fields(events), *_fields(out), new_x, new_y)


@numba.njit(cache=True, nogil=True)
def _polarity(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, out_t: np.ndarray,
              out_x: np.ndarray, out_y: np.ndarray, out_p: np.ndarray, keep: np.ndarray,
              merge: int) -> int:
    j = 0
    for i in range(t.shape[0]):
        pi = p[i]
        out_t[j] = t[i]
        out_x[j] = x[i]
        out_y[j] = y[i]
        out_p[j] = pi if merge < 0 else merge
        j += keep[pi]
    return j


def polarity(events: np.ndarray, out: np.ndarray, keep_off: bool, keep_on: bool,
             merge: int | None = None) -> int:
    """Keep the OFF (``p == 0``) and/or ON (``p == 1``) events into ``out`` (zeroed, at least
    ``len(events)`` records), optionally all given polarity ``merge`` (0 or 1).

    Returns
    -------
    int
        How many events were kept (``out[:k]``).
    """
    keep = np.array([keep_off, keep_on], np.uint8)
    return _polarity(*_fields(events), *_fields(out), keep, -1 if merge is None else merge)


@numba.njit(cache=True, nogil=True)
def _refractory(t: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray, out: np.ndarray,
                last: np.ndarray, width: int, period: int) -> int:
    j = 0
    for i in range(t.shape[0]):
        ti = t[i]
        k = np.uint64(y[i]) * np.uint64(width) + np.uint64(x[i])
        out[j, 0] = w[i, 0]
        out[j, 1] = w[i, 1]
        j += ti >= last[k] + period  # t - last >= period, without overflow from NO_TIME
        last[k] = ti
    return j


def refractory(events: np.ndarray, out: np.ndarray, last: np.ndarray, period: int) -> int:
    """Drop an event when its pixel had an event (either polarity, kept or dropped) less than
    ``period`` µs before it: dv-processing's ``RefractoryPeriodFilter`` rule.

    Parameters
    ----------
    events : numpy.ndarray
        Contiguous EVENT_DTYPE batch.
    out : numpy.ndarray
        EVENT_DTYPE array with at least ``len(events)`` records.
    last : numpy.ndarray
        (H, W) int64: each pixel's last event time (µs), `NO_TIME` if it never fired; updated
        in place with every event, kept or not.
    period : int
        Refractory period (µs, >= 0).

    Returns
    -------
    int
        How many events were kept (``out[:k]``).
    """
    return _refractory(events["t"], events["x"], events["y"], words(events), words(out),
                       _flat(last), last.shape[1], period)


@numba.njit(cache=True, nogil=True)
def _background_activity(t: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray,
                         out: np.ndarray, last: np.ndarray, stride: int, window: int) -> int:
    j = 0
    row, one = np.uint64(stride), np.uint64(1)
    for i in range(t.shape[0]):
        ti = t[i]
        # the map has a one-pixel border that never fires: every pixel has 8 neighbours
        k = np.uint64(y[i] + 1) * row + np.uint64(x[i] + 1)
        above, below = k - row, k + row
        newest = max(last[above - one], last[above], last[above + one],
                     last[k - one], last[k + one],
                     last[below - one], last[below], last[below + one])
        out[j, 0] = w[i, 0]
        out[j, 1] = w[i, 1]
        j += ti < newest + window  # some neighbour: t - t_neighbour < window
        last[k] = ti
    return j


def background_activity(events: np.ndarray, out: np.ndarray, last: np.ndarray,
                        window: int) -> int:
    """Keep an event when one of its 8 neighbours (not its own pixel) fired less than
    ``window`` µs before it: dv-processing's ``BackgroundActivityNoiseFilter`` rule.

    Parameters
    ----------
    events : numpy.ndarray
        Contiguous EVENT_DTYPE batch.
    out : numpy.ndarray
        EVENT_DTYPE array with at least ``len(events)`` records.
    last : numpy.ndarray
        (H + 2, W + 2) int64: the last event time (µs) of pixel (x, y) at ``[y + 1, x + 1]``,
        `NO_TIME` for a pixel that never fired and for the border (which lets every pixel
        read 8 neighbours without a bounds test). Updated in place with every event.
    window : int
        Support window (µs, >= 0).

    Returns
    -------
    int
        How many events were kept (``out[:k]``).
    """
    return _background_activity(events["t"], events["x"], events["y"], words(events),
                                words(out), _flat(last), last.shape[1], window)


@numba.njit(cache=True, nogil=True)
def _mask_pixels(x: np.ndarray, y: np.ndarray, w: np.ndarray, out: np.ndarray,
                 mask: np.ndarray, width: int) -> int:
    j = 0
    for i in range(x.shape[0]):
        out[j, 0] = w[i, 0]
        out[j, 1] = w[i, 1]
        j += mask[np.uint64(y[i]) * np.uint64(width) + np.uint64(x[i])] == 0
    return j


def mask_pixels(events: np.ndarray, out: np.ndarray, mask: np.ndarray) -> int:
    """Drop the events of the pixels where ``mask`` ((H, W) uint8) is non-zero.

    Returns
    -------
    int
        How many events were kept (``out[:k]``).
    """
    return _mask_pixels(events["x"], events["y"], words(events), words(out), _flat(mask),
                        mask.shape[1])


@numba.njit(cache=True, nogil=True)
def _calibration_counts(t: np.ndarray, x: np.ndarray, y: np.ndarray, counts: np.ndarray,
                        start: int, span: int) -> tuple[int, int]:
    for i in range(t.shape[0]):
        if start == NO_TIME:
            start = t[i]
        counts[y[i], x[i]] += 1
        if t[i] > start + span:
            return i, start
    return t.shape[0], start


def calibration_counts(events: np.ndarray, counts: np.ndarray, start: int,
                       span: int) -> tuple[int, int]:
    """Count events per pixel until the first event later than ``start + span`` µs (counted
    too), as iniVation DV's hot-pixel learning does.

    Parameters
    ----------
    events : numpy.ndarray
        EVENT_DTYPE batch.
    counts : numpy.ndarray
        (H, W) int64 counts, updated in place.
    start : int
        Time the calibration started (µs), or `NO_TIME` to start it at the first event.
    span : int
        Calibration length (µs).

    Returns
    -------
    end : int
        Index of the event that ended the calibration, ``len(events)`` if it goes on.
    start : int
        The calibration's start time (µs; `NO_TIME` while no event was seen).
    """
    return _calibration_counts(events["t"], events["x"], events["y"], counts, start, span)
