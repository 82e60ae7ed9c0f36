"""Exponential moving standardization, as braindecode's ``exponential_moving_standardize``
(Schirrmeister et al. 2017), streaming.

Why: decoders trained with braindecode (ShallowFBCSPNet, Deep4Net, EEGNet recipes) expect their
input standardized exactly this way, per channel, against a mean and variance that follow slow
changes of impedance and drift; the same numbers online is what keeps a trained model valid.
The output equals braindecode's on the whole recording however the stream is cut (float64 state
carried across chunks; the recursion is in `kernels.ewm`, which also says how it matches pandas'
``ewm(adjust=True)`` that braindecode calls).

``init_block_size``: braindecode standardizes the first ``init_block_size`` samples with the
mean and standard deviation of that block, which looks ahead. This node keeps that exact
output by holding the stream's first block until it is complete, then emitting it in one frame
(stamped with its first chunk's times, so its latency shows the hold), and streams without
delay afterwards; the moving statistics still start at the first sample, as braindecode's do.
A stream that ends inside the block is flushed at ``close`` with its own statistics (what
braindecode does with data shorter than the block).

A NaN (or infinite) sample is counted (``nonfinite``), comes out non-finite, and is skipped by the
moving statistics (pandas' rule), so it never spoils later samples. In the held block it makes
that channel's block output NaN, as in braindecode.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
from pydantic import Field

from kernels.ewm import ewm_standardize, ewm_state
from nodes.checks import check_channels
from pipeline import Frame, FrameKind, Node, NodeParams, StreamInfo
from pipeline.node import Figure, Output


class Standardize(Node):
    """Per channel ``(x_t - m_t) / max(sqrt(v_t), eps)``, with exponential moving mean ``m`` and
    variance ``v``."""

    type_name = "standardize"
    accepts = {"in": (FrameKind.SAMPLES,)}

    class Params(NodeParams):
        factor_new: float = Field(1e-3, gt=0, le=1, description="weight of the newest sample in "
                                                                "the moving mean and variance")
        init_block_size: int | None = Field(None, ge=1, description="samples standardized with "
                                                                    "their own mean and std "
                                                                    "(held until complete)")
        eps: float = Field(1e-4, gt=0, description="floor of the standard deviation "
                                                   "(input unit, e.g. µV)")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        stream = info["in"]
        self.channels = stream.n_channels
        self.nonfinite = 0
        self.reset()
        return {"out": stream.replace(units=())}

    def reset(self) -> None:
        self.state = ewm_state(self.channels)
        self.held: list[np.ndarray] = []  # raw chunks of the initial block
        self.held_times: tuple[int, float | None] = (0, None)  # the first's t_origin_ns, t_device
        self.to_hold = self.params.init_block_size or 0  # samples of the block still to come

    def standardize(self, x: np.ndarray) -> np.ndarray:
        """Take the next chunk (channels x n); return the samples released by it, float64:
        ``x`` standardized, or nothing while the initial block fills, or the whole block plus
        the rest of ``x`` when ``x`` completes it."""
        self.nonfinite += int(x.size - np.count_nonzero(np.isfinite(x)))
        y, self.state = ewm_standardize(x, self.state, self.params.factor_new, self.params.eps)
        if not self.to_hold:
            return y
        take = min(self.to_hold, x.shape[1])
        if take:
            self.held.append(np.asarray(x[:, :take], np.float64))
            self.to_hold -= take
        if self.to_hold:
            return y[:, :0]
        return np.concatenate([self._block(), y[:, take:]], axis=1)

    def _block(self) -> np.ndarray:
        """The held block standardized with its own mean and (population) std; empties it."""
        block = np.concatenate(self.held, axis=1)
        self.held = []
        std = np.maximum(self.params.eps, block.std(axis=1, keepdims=True))
        return (block - block.mean(axis=1, keepdims=True)) / std

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        x = frame.data
        check_channels(x, self.channels)
        holding = bool(self.to_hold)
        if holding and not self.held and x.shape[1]:
            self.held_times = (frame.t_origin_ns, frame.t_device)
        y = self.standardize(x).astype(np.float32)
        if not y.shape[1]:
            return
        if holding:
            t_origin_ns, t_device = self.held_times
            yield "out", Frame(FrameKind.SAMPLES, y, t_origin_ns, t_device=t_device,
                               meta=frame.meta)
        else:
            yield "out", frame.with_data(y)

    def close(self) -> Iterable[Output]:
        if self.held:
            t_origin_ns, t_device = self.held_times
            yield "out", Frame(FrameKind.SAMPLES, self._block().astype(np.float32), t_origin_ns,
                               t_device=t_device)

    def figures(self) -> dict[str, Figure]:
        held = (self.params.init_block_size or 0) - self.to_hold if self.to_hold else 0
        return {"nonfinite": self.nonfinite, "holding": held}
