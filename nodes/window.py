"""Sliding windows over a sample stream: what a decoder sees.

A window of ``length`` seconds is emitted every ``step`` seconds, as soon as its last sample has
arrived, however the stream is chunked: the k-th window holds samples ``k*S .. k*S + L`` of the
stream (L, S in samples), exactly. The last L samples live in a ring buffer written twice (at i
and i + L) so that every window is one contiguous slice, copied once into its frame.

Times: a window's ``t_device`` is that of its first sample; its ``t_origin_ns`` is the stamp of
the chunk that completed it — the latency that matters for a decision is from the moment its last
sample was acquired (DESIGN.md §2 says "oldest sample"; for a window that would add its whole
length to every latency figure).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
from pydantic import Field

from nodes.checks import check_channels, require_srate
from pipeline import Frame, FrameKind, Node, NodeParams, ParamError, StreamInfo
from pipeline.node import Output


class Window(Node):
    """Windows of ``length`` s every ``step`` s, as (channels x samples) float32 tensors."""

    type_name = "window"
    accepts = {"in": (FrameKind.SAMPLES,)}

    class Params(NodeParams):
        length: float = Field(1.0, gt=0, description="window length (s)")
        step: float = Field(0.1, gt=0, description="time between window starts (s)")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        stream, p = info["in"], self.params
        self.srate = require_srate(stream, self.type_name)
        self.length = round(p.length * stream.srate)
        self.step = round(p.step * stream.srate)
        for field, n in (("length", self.length), ("step", self.step)):
            if n < 1:
                raise ParamError(field, f"{getattr(p, field):g} s is less than one sample at "
                                        f"{stream.srate:g} Hz")
        self.channels = stream.n_channels
        self.reset()
        return {"out": StreamInfo(FrameKind.TENSOR, stream.srate / self.step, stream.channel_names,
                                  stream.units, "float32", (self.channels, self.length),
                                  clock=stream.clock,
                                  extra={"length_s": self.length / stream.srate,
                                         "step_s": self.step / stream.srate,
                                         "srate": stream.srate})}

    def reset(self) -> None:
        self.ring = np.zeros((self.channels, 2 * self.length), np.float32)
        self.seen = 0                   # samples written so far
        self.until_next = self.length   # samples still needed to complete the next window

    def _write(self, x: np.ndarray) -> None:
        """Append ``x`` (channels x k) to the ring (only its last ``length`` samples matter)."""
        k = x.shape[1]
        if k > self.length:
            self.seen += k - self.length
            x, k = x[:, -self.length:], self.length
        L, pos = self.length, self.seen % self.length
        first = min(k, L - pos)
        for offset in (0, L):
            self.ring[:, offset + pos:offset + pos + first] = x[:, :first]
            self.ring[:, offset:offset + k - first] = x[:, first:]
        self.seen += k

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        x = frame.data
        check_channels(x, self.channels)
        i, n = 0, x.shape[1]
        while i < n:
            take = min(n - i, self.until_next)
            self._write(x[:, i:i + take])
            i += take
            self.until_next -= take
            if self.until_next == 0:
                self.until_next = self.step
                start = self.seen % self.length
                window = self.ring[:, start:start + self.length].copy()
                t_device = None if frame.t_device is None else \
                    frame.t_device + (i - self.length) / self.srate
                yield "out", Frame(FrameKind.TENSOR, window, frame.t_origin_ns, t_device=t_device)
