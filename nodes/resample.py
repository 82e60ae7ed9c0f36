"""Change a sample stream's rate on the fly: polyphase resampling by a rational factor.

Why this design: it is SciPy's ``resample_poly`` made streaming. The rate ratio ``srate /
source`` becomes the reduced fraction ``up / down``; the anti-aliasing FIR is the one
``resample_poly`` designs (Kaiser-windowed ``firwin``, 20 * max(up, down) + 1 taps, cut-off at the
lower Nyquist frequency); the work is done by `kernels.polyphase`, which carries the last input
samples and the output phase across chunks, so the output does not depend on how the stream is
cut — even in chunks shorter than ``down``.

Delay, honestly: a linear-phase FIR delays its input by half its length, ``10 * max(up, down)``
upsampled samples (``group_delay_s`` in the output StreamInfo's ``extra``; 0.1 s for 160 -> 100 Hz).
A causal node cannot undo that without waiting for it, so there are two modes:

- ``compensate_delay: false`` (default): causal, no added latency. The output is
  ``upfirdn(h, x, up, down)`` of the whole stream (its first ``ceil(n * up / down)`` samples), each
  sample emitted as soon as the input at its position has arrived. A frame's ``t_device`` is the
  time of its first output sample on the output grid; what it shows happened ``group_delay_s``
  earlier — as after any causal filter.
- ``compensate_delay: true``: the output is exactly ``resample_poly(x, up, down)`` (time-aligned
  with the input, ``t_device`` true to the content), at the price of emitting every sample
  ``latency_s`` late (``extra``); the last samples are computed at the end of the stream with
  zeros after it, as ``resample_poly`` pads. A frame carries the ``t_origin_ns`` of the input
  frame holding the input sample its first output shows, so the latency measured downstream
  includes that wait (``standardize`` stamps its held block the same way).

Frames are float32; the arithmetic is float64. A NaN in the input spoils the outputs whose filter
window holds it (``len(h) / up`` input samples' worth) and then clears: the filter has no feedback.
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction
from typing import Iterable, Mapping

import numpy as np
from pydantic import Field

from kernels.polyphase import antialias_taps, polyphase_params, polyphase_state, polyphase_step
from nodes.checks import check_channels, require_srate
from pipeline import Frame, FrameKind, Node, NodeParams, ParamError, StreamInfo
from pipeline.node import Output

#: Largest up or down factor accepted: the FIR has 20 * max(up, down) + 1 taps.
MAX_FACTOR = 1000
#: Relative error allowed between the rate asked for and the one up / down gives.
RATE_TOLERANCE = 1e-9


def rate_ratio(source: float, target: float) -> tuple[int, int]:
    """``(up, down)``: ``target / source`` as a reduced fraction with both terms <= MAX_FACTOR.

    Raises
    ------
    ParamError
        On ``srate`` when no such fraction gives ``target`` (a ratio like 160 -> 127.3 Hz needs
        1273 / 1600); the message names the nearest rate that is possible.
    """
    ratio = Fraction(target / source).limit_denominator(MAX_FACTOR)
    up, down = ratio.numerator, ratio.denominator
    if not 0 < up <= MAX_FACTOR:
        raise ParamError("srate", f"{source:g} Hz -> {target:g} Hz is a factor of "
                                  f"{target / source:.6g}; up and down factors are limited to "
                                  f"1..{MAX_FACTOR}")
    if abs(source * up / down - target) > RATE_TOLERANCE * target:
        raise ParamError("srate", f"{source:g} Hz -> {target:g} Hz needs up/down factors above "
                                  f"{MAX_FACTOR}; the nearest rate with smaller ones is "
                                  f"{source * up / down:.8g} Hz (x {up}/{down})")
    return up, down


class Resample(Node):
    """Resample to ``srate`` Hz (polyphase FIR as SciPy's resample_poly; causal by default)."""

    type_name = "resample"
    accepts = {"in": (FrameKind.SAMPLES,)}

    class Params(NodeParams):
        srate: float = Field(gt=0, description="output sampling rate (Hz)")
        compensate_delay: bool = Field(
            False, description="false: causal, output delayed by the FIR's group delay; true: "
                               "equal to resample_poly (time-aligned), emitted that much later")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        stream = info["in"]
        self.source = require_srate(stream, self.type_name)
        up, down = rate_ratio(stream.srate, self.params.srate)
        h = antialias_taps(up, down)
        half_len = (h.size - 1) // 2
        if self.params.compensate_delay and half_len:
            # resample_poly: pad h in front so the delay is whole output samples, then drop them
            pad = down - half_len % down
            h = np.concatenate([np.zeros(pad), h])
            self.skip = (half_len + pad) // down   # outputs dropped at the start
        else:
            self.skip = 0
        self.poly = polyphase_params(h, up, down)
        self.channels = stream.n_channels
        srate = stream.srate * up / down
        self.reset()
        delay = 0 if self.params.compensate_delay else half_len
        extra = {"source_srate": stream.srate, "up": up, "down": down, "taps": int(h.size),
                 "compensate_delay": self.params.compensate_delay,
                 "group_delay_s": delay / (up * stream.srate),
                 "group_delay_samples": delay / down,
                 "latency_s": self.skip / srate}
        return {"out": stream.replace(srate=srate, extra=extra)}

    def reset(self) -> None:
        self.state = polyphase_state(self.poly, self.channels)
        self.to_skip = self.skip
        self.n_in = 0          # input samples consumed
        self.n_out = 0         # output samples produced
        # (first input sample, t_origin_ns) of the input frames that later outputs may show
        self.origins: deque[tuple[int, int]] = deque()
        self.anchor: tuple[float, int] | None = None  # last frame's t_device and first sample

    def resample(self, x: np.ndarray) -> np.ndarray:
        """The next chunk ``x`` (channels x n, any float dtype) resampled, float64: what
        `process` emits rounded to float32 (public so that tests check it against SciPy to
        float64 precision, as filters' ``filter``); possibly no samples (a chunk that does not
        reach the next output)."""
        y, self.state = polyphase_step(x, self.state, self.poly)
        drop = min(self.to_skip, y.shape[1])
        self.to_skip -= drop
        self.n_in += x.shape[1]
        self.n_out += y.shape[1] - drop
        return y[:, drop:]

    def flush(self) -> np.ndarray:
        """At the end of the stream: the outputs still owed (float64; what `close` emits).
        ``compensate_delay``: the last ``latency_s`` of them, computed with zeros after the end
        as resample_poly pads, so that ``ceil(n * up / down)`` come out in all; causal: none.
        Call `reset` before reusing the node on another stream."""
        up, down = self.poly.up, self.poly.down
        owed = -(-self.n_in * up // down) - self.n_out
        if owed <= 0:
            return np.zeros((self.channels, 0))
        # zeros until the input reaches the upsampled position of the last owed output
        last = (self.skip + self.n_out + owed - 1) * down
        n_in, n_out = self.n_in, self.n_out
        y = self.resample(np.zeros((self.channels, last // up + 1 - n_in)))
        self.n_in, self.n_out = n_in, n_out + owed  # zeros are not input: a second flush owes none
        return y[:, :owed]

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        x = frame.data
        check_channels(x, self.channels)
        first = self.n_out
        self.anchor = None if frame.t_device is None else (frame.t_device, self.n_in)
        if x.shape[1]:
            self.origins.append((self.n_in, frame.t_origin_ns))
        y = self.resample(x)
        if y.shape[1]:
            yield "out", self._frame(y, first)

    def close(self) -> Iterable[Output]:
        first = self.n_out
        y = self.flush()
        if y.shape[1]:
            yield "out", self._frame(y, first)

    def _frame(self, y: np.ndarray, first: int) -> Frame:
        """The frame of outputs ``first, first + 1, ...``. Output k sits at input sample
        ``k * down / up`` on the output grid (the input it shows when compensated): its
        ``t_device`` is that position's time, counted from the last input frame's, and its
        ``t_origin_ns`` that of the input frame holding the sample (rounded down)."""
        up, down = self.poly.up, self.poly.down
        aligned = first * down // up
        while len(self.origins) > 1 and self.origins[1][0] <= aligned:
            self.origins.popleft()   # later outputs show later inputs
        t_device = None
        if self.anchor is not None:
            t_frame, n_frame = self.anchor
            t_device = t_frame + (first * down - n_frame * up) / (up * self.source)
        return Frame(FrameKind.SAMPLES, y.astype(np.float32), self.origins[0][1],
                     t_device=t_device)
