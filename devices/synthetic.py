"""Seeded synthetic EEG: a headset for demos and tests that needs no hardware.

``mode: sine`` (the default): each channel is a sine (its phase shifted per channel) plus white
Gaussian noise, in µV: easy to check by eye and by test. ``mode: realistic``: the model of
`devices.eeg_model` (1/f background, occipital alpha, sensorimotor mu, mains, and motor-imagery
trials whose cues come out of the ``markers`` port as EEGMMIDB's T0/T1/T2, at their first sample).
The signal is generated in blocks of BLOCK samples and cut into chunks, so it is the same whatever
the chunk size (and cheap per chunk). Chunks are released on the device's own schedule (``chunk / srate``
apart, on absolute deadlines so the rate does not drift), or as fast as the graph takes them with
``speed: max``.
"""

from __future__ import annotations

from typing import Literal, Mapping

import numpy as np
from pydantic import Field

from devices.eeg_model import MU_TOP_HZ, RealisticEEG, Trial, default_names
from devices.pacing import Speed, speed_factor, wait_until
from pipeline import Frame, FrameKind, NodeParams, ParamError, Source, StreamInfo
from pipeline.clock import now_ns, sample_clock
from pipeline.node import Output

#: Samples generated at a time.
BLOCK = 1024


class SyntheticEEG(Source):
    """Synthetic headset (sine + noise, or realistic EEG with cues), seeded, released at the
    nominal rate."""

    type_name = "synthetic_eeg"
    outputs = ("out", "markers")

    class Params(NodeParams):
        channels: int = Field(8, ge=1, le=1024, description="number of channels")
        srate: float = Field(250.0, gt=0, description="sampling rate (Hz)")
        chunk: int = Field(10, ge=1, description="samples per frame")
        freq: float = Field(10.0, ge=0, description="sine frequency; realistic: alpha peak (Hz)")
        amplitude: float = Field(10.0, ge=0, description="sine mode: amplitude (µV)")
        noise: float = Field(5.0, ge=0, description="noise SD; realistic: 1/f background RMS (µV)")
        seed: int = Field(0, description="random seed (same seed, same signal)")
        speed: Speed = "realtime"
        max_frames: int | None = Field(None, ge=1, description="end of stream after this many frames")
        names: list[str] | None = Field(None, description="channel names (default: EEG001... for "
                                                           "sine, 10-10 electrodes for realistic)")
        mode: Literal["sine", "realistic"] = Field("sine", description="sine + noise, or the "
                                                                      "realistic EEG model")
        alpha: float = Field(6.0, ge=0, description="realistic: occipital alpha RMS (µV)")
        mu: float = Field(5.0, ge=0, description="realistic: sensorimotor mu RMS (µV)")
        line: float = Field(4.0, ge=0, description="realistic: mains amplitude (µV)")
        line_freq: float = Field(50.0, gt=0, description="realistic: mains frequency (Hz)")
        trials: bool = Field(True, description="realistic: motor-imagery trials with markers")
        erd_depth: float = Field(0.7, ge=0, le=1, description="realistic: mu lost over the "
                                                              "contralateral hemisphere in a trial")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        p = self.params
        if p.names:
            names = tuple(p.names)
        elif p.mode == "realistic":
            names = default_names(p.channels)
        else:
            names = tuple(f"EEG{i + 1:03d}" for i in range(p.channels))
        if len(names) != p.channels:
            raise ParamError("names", f"{len(names)} names for {p.channels} channels")
        if p.mode == "realistic":
            nyquist = p.srate / 2
            for field, top in (("srate", MU_TOP_HZ), ("freq", p.freq + 1.5),
                               ("line_freq", p.line_freq)):
                if top >= nyquist:
                    raise ParamError(field, f"realistic mode draws up to {top:g} Hz here, at or "
                                            f"above Nyquist ({nyquist:g} Hz at srate {p.srate:g})")
        self.names = names
        speed = speed_factor(p.speed)
        self.period_ns = int(p.chunk / p.srate / speed * 1e9) if speed else 0
        self.phase = np.linspace(0, np.pi, p.channels, dtype=np.float64)[:, None]
        self.reset()
        numbering = sample_clock(self.name, p.srate)
        return {"out": StreamInfo(FrameKind.SAMPLES, p.srate, names, ("uV",) * p.channels,
                                  "float32", (p.channels,), clock="synthetic", extra=numbering),
                "markers": StreamInfo(FrameKind.MARKERS, 0.0, dtype="unicode", clock="synthetic",
                                      extra={"descriptions": ["T0", "T1", "T2"], **numbering})}

    def reset(self) -> None:
        p = self.params
        self.rng = np.random.default_rng(p.seed)
        self.model = RealisticEEG(self.names, p.srate, self.rng, background=p.noise, alpha=p.alpha,
                                  mu=p.mu, line=p.line, alpha_freq=p.freq, line_freq=p.line_freq,
                                  trials=p.trials, erd_depth=p.erd_depth) \
            if p.mode == "realistic" else None
        self.trials: list[Trial] = []  # cues generated but not yet sent
        self.n = 0  # samples emitted so far
        self.frames = 0
        self.t_start: int | None = None
        self.buffer = np.zeros((self.params.channels, 0), np.float32)
        self.buffer_start = 0  # sample index of buffer[:, 0]
        self.next_chunk: tuple[int, np.ndarray] | None = None

    def _block(self, n0: int) -> np.ndarray:
        """Samples ``n0 .. n0 + BLOCK`` (channels x BLOCK, float32 µV)."""
        p = self.params
        if self.model is not None:
            x, trials = self.model.block(BLOCK)
            self.trials += trials
            return x.astype(np.float32)
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
            self.next_chunk = (self.n, self.generate(p.chunk))
        if not wait_until(self.t_start + (self.frames + 1) * self.period_ns):
            return []
        start, data = self.next_chunk
        self.next_chunk = None
        self.frames += 1
        t0 = now_ns()
        out: list[Output] = [("out", Frame(FrameKind.SAMPLES, data, t0, t_device=start / p.srate))]
        while self.trials and self.trials[0].sample < start + data.shape[1]:
            cue = self.trials.pop(0)  # sent with the chunk that holds its first sample
            out.append(("markers", Frame(FrameKind.MARKERS, np.array([cue.code]), t0,
                                         t_device=cue.sample / p.srate,
                                         meta={"sample": cue.sample, "duration": cue.duration})))
        return out
