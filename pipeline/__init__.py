"""neuroflow's framework: frames and their wire codec, the node API, graph configs and type
inference, transports, the process runtime and its supervisor, the clock, metrics and the CLI.

It never imports a concrete node or device: those are found through `pipeline.registry`.
"""

from pipeline.frame import EVENT_DTYPE, Frame, FrameKind
from pipeline.info import StreamInfo, StreamMismatch
from pipeline.node import Node, NodeParams, ParamError, Sink, Source

__all__ = ["EVENT_DTYPE", "Frame", "FrameKind", "Node", "NodeParams", "ParamError", "Sink",
           "Source", "StreamInfo", "StreamMismatch"]
