"""Discard frames (their figures still count): the end of a benchmark or of an unused branch."""

from __future__ import annotations

import time
from typing import Iterable

from pydantic import Field

from pipeline import Frame, NodeParams, Sink
from pipeline.node import Output


class Null(Sink):
    """Sink that drops every frame; ``delay`` makes it a slow consumer for testing drop policies."""

    type_name = "null"

    class Params(NodeParams):
        delay: float = Field(0.0, ge=0, description="seconds spent per frame (simulates a slow "
                                                     "consumer)")

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        if self.params.delay:
            time.sleep(self.params.delay)
        return ()
