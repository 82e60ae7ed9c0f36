"""Static stream descriptions, resolved once when the graph is built (never sent per frame)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pipeline.frame import FrameKind


class StreamMismatch(ValueError):
    """A node cannot accept the stream offered on one of its inputs (raised from ``setup``)."""


@dataclass(frozen=True)
class StreamInfo:
    """What one output port produces.

    Parameters
    ----------
    kind : FrameKind
        Frame kind on this stream.
    srate : float
        Nominal rate in Hz of the time axis (samples/s for ``samples``; frames/s for tensors
        emitted at a fixed step); 0 means irregular.
    channel_names, units : tuple of str
        One per channel (``samples``, per-channel ``tensor``); ``units`` may be empty.
    dtype : str
        numpy dtype string of the payload (``"float32"``, ``"events"`` for EVENT_DTYPE).
    shape : tuple of int
        Payload shape without its variable axis (``samples``: ``(n_channels,)``; a window
        ``tensor``: its full shape); ``-1`` marks a size known only at run time.
    sensor_size : (W, H, P) or None
        Event sensors only.
    class_names : tuple of str
        ``prediction`` streams: what each probability is for.
    clock : str
        Which clock ``Frame.t_device`` is in: ``"lsl"`` (this host's LSL clock, which is its
        monotonic clock), ``"unix"`` (BrainFlow), ``"file"`` (seconds from a recording's first
        sample), ``"synthetic"``, or ``""``. Two streams can be aligned by ``t_device`` only
        when they name the same clock.
    """

    kind: FrameKind
    srate: float = 0.0
    channel_names: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    dtype: str = "float32"
    shape: tuple[int, ...] = ()
    sensor_size: tuple[int, int, int] | None = None
    class_names: tuple[str, ...] = ()
    clock: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FrameKind(self.kind))
        for name in ("channel_names", "units", "shape", "class_names"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.sensor_size is not None:
            object.__setattr__(self, "sensor_size", tuple(self.sensor_size))
            if len(self.sensor_size) != 3 or min(self.sensor_size) <= 0:
                raise ValueError(f"sensor_size must be (W, H, P) > 0, got {self.sensor_size}")
        if self.srate < 0:
            raise ValueError(f"srate must be >= 0 Hz, got {self.srate}")
        if self.channel_names and self.shape and self.shape[0] != len(self.channel_names):
            raise ValueError(f"{len(self.channel_names)} channel names for {self.shape[0]} channels")
        if self.units and len(self.units) != len(self.channel_names):
            raise ValueError(f"{len(self.units)} units for {len(self.channel_names)} channels")

    @property
    def n_channels(self) -> int:
        """Channels of a ``samples`` stream (first axis of the payload)."""
        return self.shape[0] if self.shape else len(self.channel_names)

    def replace(self, **changes: Any) -> StreamInfo:
        """A copy with some fields changed (what ``setup`` of a transforming node returns)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for the plan handed to worker processes and ``neuroflow graph``."""
        d = dataclasses.asdict(self)
        d["kind"] = self.kind.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamInfo:
        return cls(**d)

    def describe(self) -> str:
        """One line for humans: ``samples 8 ch @ 250 Hz float32``."""
        parts = [self.kind.value]
        if self.kind is FrameKind.SAMPLES:
            parts.append(f"{self.n_channels} ch")
        elif self.shape:
            parts.append("x".join(str(s) for s in self.shape))
        if self.srate:
            parts.append(f"@ {self.srate:g} Hz")
        if self.sensor_size:
            parts.append("sensor %dx%dx%d" % self.sensor_size)
        if self.class_names:
            parts.append("classes " + ",".join(self.class_names))
        parts.append(self.dtype)
        return " ".join(parts)
