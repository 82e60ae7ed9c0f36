"""Multiply a stream by a constant: the simplest transform, and a free pass-through at gain 1."""

from __future__ import annotations

from typing import Iterable

import numpy as np
from pydantic import Field

from pipeline import Frame, FrameKind, Node, NodeParams
from pipeline.node import Output


class Gain(Node):
    """Scale samples or tensors by ``gain``; ``gain: 1`` forwards frames untouched (no copy)."""

    type_name = "gain"
    accepts = {"in": (FrameKind.SAMPLES, FrameKind.TENSOR)}

    class Params(NodeParams):
        gain: float = Field(1.0, description="factor applied to every value")

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        if self.params.gain == 1.0:
            yield "out", frame
        else:
            yield "out", frame.with_data(frame.data * np.float32(self.params.gain))
