"""The event invariants' one-pass scan (kernels/event_checks.py) against a plain loop."""

from __future__ import annotations

import numpy as np

from kernels.event_checks import scan_events
from pipeline.frame import EVENT_DTYPE


def test_the_invariant_scan_counts_like_a_plain_loop_whatever_the_padding_and_stride() -> None:
    """`kernels.event_checks.scan_events` reads records as two 64-bit words (padding masked):
    each kind of bad coordinate and polarity counted, times stepping back counted, garbage in
    the padding bytes ignored, a strided batch read as its copy."""
    rng = np.random.default_rng(4)
    n, W, H = 5000, 64, 48
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.cumsum(rng.integers(-3, 10, n))
    ev["x"], ev["y"] = rng.integers(-2, W + 2, n), rng.integers(-2, H + 2, n)
    ev["p"] = rng.choice([0, 1, 1, 0, 2, -1, 127, -128], n)
    ev.view(np.uint8).reshape(n, 16)[:, 13:] = 0xFF  # the padding
    for part, last_t in ((ev, 10**9), (ev, -10**9), (ev[::3], 0), (ev[:1], 10), (ev[:0], 7)):
        t, x, y, p = (part[f].astype(int).tolist() for f in "txyp")
        backwards = sum(b < a for a, b in zip([last_t] + t[:-1], t))
        invalid = sum(not (0 <= xi < W and 0 <= yi < H and pi in (0, 1))
                      for xi, yi, pi in zip(x, y, p))
        assert scan_events(part, W, H, last_t) == (backwards, invalid, t[-1] if t else last_t)


def test_a_packed_batch_is_refused_with_a_message_that_says_how_to_join_batches() -> None:
    import pytest

    packed = np.zeros(3, [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])  # 13 bytes
    with pytest.raises(TypeError, match="concat_events"):
        scan_events(packed, 10, 10)
