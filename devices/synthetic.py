"""Seeded synthetic EEG: a headset for demos and tests that needs no hardware.

Each channel is a sine (its phase shifted per channel) plus white Gaussian noise, in µV. The signal
is generated in blocks of BLOCK samples and cut into chunks, so it is the same whatever the chunk
size (and cheap per chunk). Chunks are released on the device's own schedule (``chunk / srate``
apart, on absolute deadlines so the rate does not drift), or as fast as the graph takes them with
``speed: max``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from pydantic import Field

from devices.pacing import Speed, speed_factor, wait_until
from pipeline import Frame, FrameKind, NodeParams, Source, StreamInfo
from pipeline.clock import now_ns
from pipeline.node import Output

#: Samples generated at a time.
BLOCK = 1024


class SyntheticEEG(Source):
    """Synthetic headset: sine + noise per channel, seeded, released at the nominal rate."""

    type_name = "synthetic_eeg"
    outputs = ("out",)

    class Params(NodeParams):
        channels: int = Field(8, ge=1, le=1024, description="number of channels")
        srate: float = Field(250.0, gt=0, description="sampling rate (Hz)")
        chunk: int = Field(10, ge=1, description="samples per frame")
        freq: float = Field(10.0, ge=0, description="sine frequency (Hz)")
        amplitude: float = Field(10.0, ge=0, description="sine amplitude (µV)")
        noise: float = Field(5.0, ge=0, description="noise standard deviation (µV)")
        seed: int = Field(0, description="random seed (same seed, same signal)")
        speed: Speed = "realtime"
        max_frames: int | None = Field(None, ge=1, description="end of stream after this many frames")
        names: list[str] | None = Field(None, description="channel names (default EEG001...)")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        p = self.params
        names = tuple(p.names) if p.names else tuple(f"EEG{i + 1:03d}" for i in range(p.channels))
        if len(names) != p.channels:
            raise ValueError(f"{len(names)} names for {p.channels} channels")
        speed = speed_factor(p.speed)
        self.period_ns = int(p.chunk / p.srate / speed * 1e9) if speed else 0
        self.phase = np.linspace(0, np.pi, p.channels, dtype=np.float64)[:, None]
        self.reset()
        return {"out": StreamInfo(FrameKind.SAMPLES, p.srate, names, ("uV",) * p.channels,
                                  "float32", (p.channels,), clock="synthetic")}

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.params.seed)
        self.n = 0  # samples emitted so far
        self.frames = 0
        self.t_start: int | None = None
        self.buffer = np.zeros((self.params.channels, 0), np.float32)
        self.buffer_start = 0  # sample index of buffer[:, 0]
        self.next_chunk: tuple[float, np.ndarray] | None = None

    def _block(self, n0: int) -> np.ndarray:
        """Samples ``n0 .. n0 + BLOCK`` (channels x BLOCK, float32 µV)."""
        p = self.params
        t = (n0 + np.arange(BLOCK)) / p.srate
        x = p.amplitude * np.sin(2 * np.pi * p.freq * t + self.phase)
        if p.noise:
            x += p.noise * self.rng.standard_normal((p.channels, BLOCK))
        return x.astype(np.float32)

    def generate(self, n: int) -> np.ndarray:
        """The next ``n`` samples (channels x n, float32 µV, C-contiguous)."""
        offset = self.n - self.buffer_start
        while self.buffer.shape[1] - offset < n:
            end = self.buffer_start + self.buffer.shape[1]
            self.buffer = np.hstack([self.buffer[:, offset:], self._block(end)])
            self.buffer_start, offset = self.n, 0
        out = np.ascontiguousarray(self.buffer[:, offset:offset + n])
        self.n += n
        return out

    def read(self) -> list[Output] | None:
        p = self.params
        if p.max_frames is not None and self.frames >= p.max_frames:
            return None
        if self.t_start is None:
            self.t_start = now_ns()
        if self.next_chunk is None:  # made while waiting, as a device fills its buffer
            self.next_chunk = (self.n / p.srate, self.generate(p.chunk))
        if not wait_until(self.t_start + (self.frames + 1) * self.period_ns):
            return []
        t_device, data = self.next_chunk
        self.next_chunk = None
        self.frames += 1
        return [("out", Frame(FrameKind.SAMPLES, data, now_ns(), t_device=t_device))]
