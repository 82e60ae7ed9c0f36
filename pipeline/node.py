"""The node API: pure processing objects that know nothing of sockets, processes or hosts.

The runtime decides where a node runs (fused with its neighbours or in its own process); the node
only turns input frames into output frames. That is what lets a unit test drive any node with plain
frames and the same class run fused or distributed (DESIGN.md §3).
"""

from __future__ import annotations

from typing import ClassVar, Iterable, Mapping

from pydantic import BaseModel, ConfigDict

from pipeline.frame import Frame, FrameKind
from pipeline.info import StreamInfo

Output = tuple[str, Frame]
#: A node-specific live figure: a count, a rate, an offset.
Figure = int | float | str | None


class ParamError(ValueError):
    """Raised from ``setup`` when a parameter does not fit the stream (a cut-off above Nyquist):
    the config error then points at that parameter's line."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NodeParams(BaseModel):
    """Base of every node's ``Params``: validated, documented, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Node:
    """A processing step: ``setup`` once from the upstream stream infos, then ``process`` frames.

    Subclasses set ``type_name`` (the YAML ``type``), ``inputs`` / ``outputs`` (port names),
    optionally ``optional`` (inputs that may stay unconnected: ``setup`` then gets no info for
    them), ``accepts`` (frame kinds allowed per input port, checked before ``setup``), and a
    nested ``Params`` model.
    """

    type_name: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ("in",)
    outputs: ClassVar[tuple[str, ...]] = ("out",)
    optional: ClassVar[tuple[str, ...]] = ()  # inputs a graph may leave unconnected
    accepts: ClassVar[Mapping[str, tuple[FrameKind, ...]]] = {}

    class Params(NodeParams):
        pass

    def __init__(self, params: NodeParams | None = None, name: str | None = None) -> None:
        self.params = params if params is not None else self.Params()
        self.name = name or self.type_name

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        """Prepare for streams ``info`` (by input port); return the info of every output port.

        The default passes the single input's info to every output. Raise
        `pipeline.info.StreamMismatch` when an input cannot be handled.
        """
        if len(self.inputs) != 1:
            raise NotImplementedError(f"{type(self).__name__} must define setup()")
        return {port: info[self.inputs[0]] for port in self.outputs}

    def open(self) -> None:
        """Acquire what the node holds while it runs (a device, an LSL outlet, a file): called in
        the worker after ``setup`` and before any frame. ``setup`` also runs when a graph is only
        validated, so it must not open anything. May raise; the supervisor restarts the group."""

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        """Handle one frame arriving on input ``port``; yield ``(output_port, frame)`` pairs."""
        raise NotImplementedError

    def reset(self) -> None:
        """Return to the state right after ``setup`` (filters, windows, membranes, weights)."""

    def close(self) -> Iterable[Output]:
        """End of stream: flush files and devices; may yield last frames (a partial window)."""
        return ()

    def figures(self) -> dict[str, Figure]:
        """Node-specific live figures (a source's measured rate, a guard's rejections), read once
        a second from another thread and shown beside the runtime's own; plain numbers only.
        A restarted worker's nodes start their figures again (only runtime counters are summed)."""
        return {}


class Source(Node):
    """A node at the graph's edge that produces frames from a device, a file or a generator.

    The runtime runs each source in its own thread: ``open()`` (in that thread: it may block on a
    device), then ``read()`` in a loop until it
    returns ``None`` or the graph stops, then ``close()``. ``read`` blocks until data is there
    (or ~100 ms pass, returning an empty list) and stamps ``t_origin_ns`` when the data is read.
    A source that must poll a device does so inside ``read`` at intervals of at most 1 ms.
    """

    inputs: ClassVar[tuple[str, ...]] = ()

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        raise NotImplementedError(f"{type(self).__name__} must define setup()")

    def read(self) -> list[Output] | None:
        """Frames read since the last call; ``[]`` if none yet; ``None`` at end of stream."""
        raise NotImplementedError

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        raise TypeError("a source has no inputs")


class Sink(Node):
    """A node at the graph's edge that consumes frames (files, devices, displays)."""

    outputs: ClassVar[tuple[str, ...]] = ()

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        return {}
