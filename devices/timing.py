"""What a device's own timestamps say about it: measured rate, gaps, and its clock against ours.

Devices lie about their rate (a "250 Hz" amplifier that runs at 249.6 Hz drifts 1.6 s an hour)
and drop samples silently; their clocks run off ours. One model for every source (DESIGN.md §6):

- ``srate_stamps``: the rate the device's timestamps claim, over the last ``window_s``;
- ``srate_host``: the rate measured against this host's clock (samples over arrival time), which is
  what a decoder's wall-clock windows actually get; ``rate_error_ppm`` compares it with nominal;
- ``gaps`` / ``lost_samples``: intervals between consecutive stamps longer than 1.5 periods;
- ``offset``: host time minus device time, estimated as the *minimum* of (arrival − stamp) over
  the window (the NTP minimum-delay filter: the chunk that arrived fastest bounds the transport
  delay). It maps device stamps onto the host clock for a device whose clock is not synchronised
  (``lsl_inlet`` with ``clock: arrival``), shown as ``clock_offset_ms``; ``arrival_lag_ms`` is the
  median of (arrival − stamp): for a stream already on the host clock, its transport delay, and a
  glaring sign when a producer's stamps are not on the clock it claims.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from pipeline.node import Figure


class StreamTiming:
    """Running figures of one device stream, updated once per chunk (cheap: O(1) per chunk).

    Parameters
    ----------
    srate : float
        Nominal rate (Hz) the device declares; 0 for irregular streams (no gaps, no rate error).
    window_s : float
        Host seconds over which rates and the clock offset are measured.
    stamp_gaps : bool
        Count gaps from the stamps; off for devices whose stamps are assigned on the host in
        bursts (BrainFlow), where a packet counter tells losses instead.
    """

    def __init__(self, srate: float, window_s: float = 10.0, stamp_gaps: bool = True) -> None:
        self.srate = srate
        self.stamp_gaps = stamp_gaps and srate > 0
        self.window_s = window_s
        self.samples = 0
        self.gaps = 0
        self.lost_samples = 0
        self.last_stamp: float | None = None
        # (arrival host s, samples so far, last stamp, arrival - last stamp) per chunk
        self.history: deque[tuple[float, int, float, float]] = deque()
        self.minima: deque[tuple[float, float]] = deque()  # (arrival, lag) for `offset`

    def update(self, stamps: np.ndarray, arrival: float, correction: float = 0.0) -> None:
        """Record a chunk: its samples' device ``stamps`` (s), its ``arrival`` (host s), and the
        ``correction`` (s) already known to map stamps onto the host clock (LSL's
        ``time_correction``). Rates and gaps use the raw stamps: a correction re-estimated between
        chunks must not look like a rate change."""
        if not len(stamps):
            return
        if self.stamp_gaps:
            chained = stamps if self.last_stamp is None else np.concatenate(([self.last_stamp],
                                                                              stamps))
            steps = np.diff(chained) * self.srate
            late = steps > 1.5
            if late.any():
                self.gaps += int(late.sum())
                self.lost_samples += int(np.round(steps[late]).sum() - late.sum())
        self.samples += len(stamps)
        self.last_stamp = float(stamps[-1])
        lag = arrival - self.last_stamp - correction
        self.history.append((arrival, self.samples, self.last_stamp, lag))
        while len(self.history) > 2 and arrival - self.history[1][0] >= self.window_s:
            self.history.popleft()
        # sliding-window minimum of the lags: increasing lags, oldest first (O(1) per chunk)
        minima = self.minima
        while minima and minima[-1][1] >= lag:
            minima.pop()
        minima.append((arrival, lag))
        while arrival - minima[0][0] >= self.window_s and len(minima) > 1:
            minima.popleft()

    @property
    def offset(self) -> float | None:
        """Host time minus device time (s), by the minimum-delay filter; None before data."""
        minima = tuple(self.minima)  # one C-level copy: safe against the source thread
        return minima[0][1] if minima else None

    def figures(self) -> dict[str, Figure]:
        """Live figures; rates need two chunks, so they are None at first. Called from the
        metrics thread while the source thread updates: it reads one copy of the history."""
        history = tuple(self.history)
        offset = self.offset
        out: dict[str, Figure] = {"samples": self.samples, "gaps": self.gaps,
                                  "lost_samples": self.lost_samples,
                                  "srate_stamps": None, "srate_host": None,
                                  "rate_error_ppm": None, "clock_offset_ms": None,
                                  "arrival_lag_ms": None}
        if len(history) < 2 or offset is None:
            return out
        (a0, n0, s0, _), (a1, n1, s1, _) = history[0], history[-1]
        if self.srate > 0:  # an irregular stream (markers) has no rate to speak of
            if s1 > s0:
                out["srate_stamps"] = round((n1 - n0) / (s1 - s0), 4)
            if a1 > a0:
                host = (n1 - n0) / (a1 - a0)
                out["srate_host"] = round(host, 4)
                out["rate_error_ppm"] = round((host / self.srate - 1) * 1e6, 1)
        out["clock_offset_ms"] = round(offset * 1e3, 3)
        out["arrival_lag_ms"] = round(float(np.median([h[3] for h in history])) * 1e3, 3)
        return out
