"""The event-stream invariants, checked on every batch in one pass (DESIGN.md §2).

Why a kernel: a check that costs as much as the processing it guards would halve every event
node's speed; this scan is one read of the batch. Violations are counted, never "fixed": a
time that steps back is kept (the caller reports it), an event outside the sensor or with a
polarity not in {0, 1} is dropped (a kernel indexing by it would write out of bounds).
"""

from __future__ import annotations

import numba
import numpy as np

#: ``last_t`` before any event: every first time stamp is "monotonic".
NO_TIME = np.iinfo(np.int64).min


@numba.njit(cache=True, nogil=True)
def _scan(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, width: int, height: int,
          last_t: int) -> tuple[int, int, int]:
    backwards = 0
    invalid = 0
    prev = last_t
    for i in range(t.shape[0]):
        ti = t[i]
        if ti < prev:
            backwards += 1
        prev = ti
        if not (0 <= x[i] < width and 0 <= y[i] < height and 0 <= p[i] <= 1):
            invalid += 1
    return backwards, invalid, prev


def scan_events(events: np.ndarray, width: int, height: int,
                last_t: int = NO_TIME) -> tuple[int, int, int]:
    """Check EVENT_DTYPE ``events`` against a ``width`` x ``height`` sensor.

    Returns
    -------
    backwards : int
        Events whose ``t`` is earlier than the event before them (the first is compared with
        ``last_t``, the last time of the previous batch).
    invalid : int
        Events with ``x``/``y`` outside the sensor or ``p`` not in {0, 1}.
    last_t : int
        ``t`` of the batch's last event (``last_t`` unchanged for an empty batch), µs.
    """
    if events.shape[0] == 0:
        return 0, 0, last_t
    return _scan(events["t"], events["x"], events["y"], events["p"], width, height, last_t)


def valid_mask(events: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boolean mask of the events inside the sensor with a polarity in {0, 1}."""
    x, y, p = events["x"], events["y"], events["p"]
    return (x >= 0) & (x < width) & (y >= 0) & (y < height) & (p >= 0) & (p <= 1)
