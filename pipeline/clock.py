"""The one clock of a host: monotonic nanoseconds (DESIGN.md §6).

Every ``t_origin_ns``, processing time and latency inside a host uses `now_ns`; device clocks
(LSL, BrainFlow's Unix time, file times) are converted at the source and named in the StreamInfo.
"""

from __future__ import annotations

import time

#: Host monotonic clock in ns: immune to NTP steps, comparable across processes of one host.
now_ns = time.monotonic_ns


def sample_clock(source: str, srate: float) -> dict[str, str]:
    """StreamInfo ``extra`` entry a source puts on its samples and on its markers when the
    markers' ``meta["sample"]`` counts that samples stream: a node receiving both (``epoch``) may
    trust the sample numbers exactly when the two tokens match. A node that renumbers samples
    (``resample``) builds a new ``extra`` without it."""
    return {"sample_clock": f"{source}@{srate:g}"}
