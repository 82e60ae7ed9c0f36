"""The ``speed`` parameter of every source that replays or simulates a device."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from pipeline.clock import now_ns


def _positive(v: float | str) -> float | str:
    if isinstance(v, float) and v <= 0:
        raise ValueError("speed must be > 0, 'realtime' or 'max'")
    return v


#: ``realtime`` (the device's own rate), a multiple of it, or ``max`` (as fast as the graph takes it).
Speed = Annotated[float | Literal["realtime", "max"], AfterValidator(_positive), Field(
    description="'realtime', a multiple of real time, or 'max' (as fast as the graph takes it: "
                "use lossless edges)")]


def speed_factor(speed: float | str) -> float:
    """Multiple of real time; 0.0 for ``max`` (no pacing)."""
    return {"realtime": 1.0, "max": 0.0}.get(speed, speed)  # type: ignore[arg-type, return-value]


#: Longest a source's ``read`` sleeps, so that a stop request is seen promptly.
MAX_BLOCK_S = 0.1


def wait_until(due_ns: int) -> bool:
    """Sleep until ``due_ns`` (monotonic) if that is at most MAX_BLOCK_S away and return True;
    otherwise sleep MAX_BLOCK_S and return False (the caller's ``read`` returns ``[]``)."""
    wait = (due_ns - now_ns()) / 1e9
    if wait > MAX_BLOCK_S:
        time.sleep(MAX_BLOCK_S)
        return False
    if wait > 0:
        time.sleep(wait)
    return True
