"""What every node that takes events shares: the sensor geometry from its input's `StreamInfo`,
and the invariants of DESIGN.md §2 checked on each batch with the counts shown live.

A node calls `checked` on each incoming batch and processes what it returns: events outside the
sensor or with a bad polarity are dropped (``out_of_range``), a time stepping back is kept and
counted (``non_monotonic``): reported, never silently "fixed".
"""

from __future__ import annotations

from typing import ClassVar, Mapping

import numpy as np

from kernels.event_checks import NO_TIME, scan_events, valid_mask
from pipeline.frame import FrameKind
from pipeline.info import StreamInfo, StreamMismatch
from pipeline.node import Figure, Node


class EventInput(Node):
    """Base of the event nodes: one ``in`` port of ``events`` from a sensor of known size."""

    accepts: ClassVar[Mapping[str, tuple[FrameKind, ...]]] = {"in": (FrameKind.EVENTS,)}

    def sensor(self, info: Mapping[str, StreamInfo]) -> StreamInfo:
        """The input's info, after checking it names its sensor size; call first in ``setup``."""
        src = info["in"]
        if src.sensor_size is None:
            raise StreamMismatch(f"{self.name}: the input stream has no sensor_size; give the "
                                 f"source a sensor size (W, H, P)")
        self.width, self.height = int(src.sensor_size[0]), int(src.sensor_size[1])
        self.last_t = NO_TIME
        self.non_monotonic = 0
        self.out_of_range = 0
        return src

    def checked(self, events: np.ndarray) -> np.ndarray:
        """``events`` without those outside the sensor; both kinds of violation counted."""
        backwards, invalid, self.last_t = scan_events(events, self.width, self.height, self.last_t)
        self.non_monotonic += backwards
        if invalid:
            self.out_of_range += invalid
            events = events[valid_mask(events, self.width, self.height)]
        return events

    def reset(self) -> None:
        self.last_t = NO_TIME

    def figures(self) -> dict[str, Figure]:
        return {"non_monotonic": self.non_monotonic, "out_of_range": self.out_of_range}
