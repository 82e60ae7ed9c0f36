"""Node types used only by the tests, loaded as plugins (``plugins:Name``) to exercise that path."""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from pipeline import Frame, FrameKind, Node, NodeParams, Sink, StreamInfo, StreamMismatch
from pipeline.node import Output


class EventsOnly(Sink):
    """Declares that it accepts event streams only."""

    accepts = {"in": (FrameKind.EVENTS,)}

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        return ()


class NeedsEightChannels(Node):
    """Refuses, in setup, any stream that is not 8 channels."""

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        if info["in"].n_channels != 8:
            raise StreamMismatch(f"needs 8 channels, got {info['in'].n_channels}")
        return {"out": info["in"]}

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        yield "out", frame


class Merge(Node):
    """Two inputs, one output: for port-resolution tests."""

    inputs = ("a", "b")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        return {"out": info["a"]}

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        yield "out", frame


class Explode(Node):
    """Misbehaves on every frame whose seq is in ``bad`` (all frames when ``bad`` is empty): raises,
    or with ``wrong_port`` emits to a port it does not have."""

    class Params(NodeParams):
        bad: list[int] = []
        wrong_port: bool = False

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        if not self.params.bad or frame.seq in self.params.bad:
            if self.params.wrong_port:
                yield "nope", frame
                return
            raise RuntimeError(f"boom at seq {frame.seq}")
        yield "out", frame


class NaNBurst(Node):
    """Passes samples through, except that the frames whose seq is in ``bad`` become all NaN."""

    class Params(NodeParams):
        bad: list[int] = []

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        if frame.seq in self.params.bad:
            frame = frame.with_data(np.full_like(frame.data, np.nan))
        yield "out", frame
