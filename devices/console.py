"""Print frames to standard output: a quick look at what a stream carries."""

from __future__ import annotations

import sys
from typing import Iterable, Mapping

from pydantic import Field

from pipeline import Frame, FrameKind, NodeParams, Sink, StreamInfo
from pipeline.clock import now_ns
from pipeline.node import Output


class Console(Sink):
    """One line per frame (every ``every``-th): kind, seq, shape, latency, and text payloads."""

    type_name = "console"

    class Params(NodeParams):
        every: int = Field(1, ge=1, description="print one frame in this many")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        self.count = 0
        return {}

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        self.count += 1
        if self.count % self.params.every == 0:
            latency_ms = (now_ns() - frame.t_origin_ns) / 1e6
            text = f"{self.name}: {frame.kind.value} seq={frame.seq} shape={list(frame.data.shape)} " \
                   f"latency={latency_ms:.3f} ms"
            if frame.kind in (FrameKind.MARKERS, FrameKind.CONTROL):
                text += f" {[str(s) for s in frame.data]}"
            if frame.meta:
                text += f" {dict(frame.meta)}"
            print(text, file=sys.stdout, flush=True)
        return ()

    def reset(self) -> None:
        self.count = 0
