"""StreamTiming: a device's rate, gaps and clock offset from its stamps and arrival times, fed
here with made-up (deterministic) stamps and arrivals so every figure has an exact expectation."""

from __future__ import annotations

import numpy as np
import pytest

from devices.timing import StreamTiming


def test_a_device_that_claims_256_hz_and_runs_at_250_is_caught_with_its_offset() -> None:
    t = StreamTiming(256.0, window_s=10.0)
    rng = np.random.default_rng(0)
    for k in range(0, 250 * 30, 5):  # 30 s in chunks of 5, stamped on a clock 10 s behind ours
        stamps = (k + np.arange(5)) / 250.0
        t.update(stamps, stamps[-1] + 10.0 + 0.002 + rng.exponential(0.003))  # 2 ms + jitter
    fig = t.figures()
    assert fig["srate_stamps"] == pytest.approx(250.0, rel=1e-9)
    # arrival-based: over 10 s, the jitter (a few ms) moves the rate by well under 0.1 %
    assert fig["srate_host"] == pytest.approx(250.0, rel=1e-3)
    assert fig["rate_error_ppm"] == pytest.approx((250 / 256 - 1) * 1e6, abs=1000)
    # minimum-delay filter: the fastest chunk's delay, 2 ms plus the smallest jitter drawn
    assert 10_002.0 <= fig["clock_offset_ms"] < 10_002.5
    assert fig["gaps"] == 0 and fig["lost_samples"] == 0 and fig["samples"] == 7500


def test_gaps_are_found_between_chunks_and_inside_them_even_one_sample_long() -> None:
    t = StreamTiming(100.0)
    k = np.arange(1000)
    k = k[(k < 300) | (k >= 305)]          # 5 lost inside a chunk
    k = k[(k < 600) | (k >= 601)]          # 1 lost where one-sample chunks meet
    for i, chunk in enumerate(np.split(k, [100, 200, 598, 599, 600, 601, 602])):
        t.update(chunk / 100.0, i)
    assert (t.gaps, t.lost_samples, t.samples) == (2, 6, 994)


def test_the_offset_forgets_a_minimum_older_than_its_window() -> None:
    t = StreamTiming(100.0, window_s=5.0)
    t.update(np.array([0.0]), 1.0)             # lag 1.0 s at arrival 1 s
    t.update(np.array([1.0]), 3.0)             # lag 2.0
    assert t.offset == 1.0
    t.update(np.array([10.0]), 12.5)           # lag 2.5; the 1.0 and 2.0 are now > 5 s old
    assert t.offset == 2.5
