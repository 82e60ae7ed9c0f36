"""Per-node live figures: processing time, end-to-end latency since ``t_origin_ns``, rates, drops.

Workers record into `NodeStats` on the hot path (two list appends per frame) and publish a
`snapshot` once a second; the supervisor adds incarnations of a restarted worker together.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Counters that accumulate over a node's life (summed across restarts by the supervisor).
COUNTERS = ("frames_in", "frames_out", "drops", "queue_drops", "send_drops", "decode_errors",
            "errors", "resets")


class NodeStats:
    """Mutable counters and the current second's samples for one node."""

    __slots__ = COUNTERS + ("proc_ns", "lat_ns", "queue", "_last_in", "_last_out")

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.proc_ns: list[int] = []
        self.lat_ns: list[int] = []
        self.queue = 0
        self._last_in = 0
        self._last_out = 0

    def snapshot(self, interval_s: float) -> dict[str, Any]:
        """Figures for the interval just ended; starts a new interval."""
        proc, self.proc_ns = self.proc_ns, []
        lat, self.lat_ns = self.lat_ns, []
        out: dict[str, Any] = {name: getattr(self, name) for name in COUNTERS}
        out["queue"] = self.queue
        out["rate_in_hz"] = (self.frames_in - self._last_in) / interval_s
        out["rate_out_hz"] = (self.frames_out - self._last_out) / interval_s
        self._last_in, self._last_out = self.frames_in, self.frames_out
        out.update(percentiles(proc, "proc", 1e-3, "us"))
        out.update(percentiles(lat, "lat", 1e-6, "ms"))
        return out


def percentiles(samples_ns: list[int], name: str, scale: float, unit: str) -> dict[str, float | None]:
    """``{name_p50_unit, name_p99_unit, name_max_unit}`` of ``samples_ns`` scaled to ``unit``."""
    keys = [f"{name}_{q}_{unit}" for q in ("p50", "p99", "max")]
    if not samples_ns:
        return dict.fromkeys(keys)
    a = np.asarray(samples_ns, dtype=np.float64) * scale
    p50, p99 = np.percentile(a, [50, 99])
    return dict(zip(keys, (round(float(p50), 3), round(float(p99), 3), round(float(a.max()), 3))))
