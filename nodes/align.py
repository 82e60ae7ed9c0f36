"""Online Euclidean alignment of EEG windows (He & Wu 2019, "Transfer learning for
brain-computer interfaces: a Euclidean space data alignment approach", IEEE TBME 67(2)).

Why: a decoder trained on other sessions or subjects sees each new user's windows through that
user's own spatial covariance; whitening every window by the user's mean covariance
(``R^{-1/2} X``) makes the aligned windows' mean covariance the identity for everyone, which
is what lets one decoder transfer without labels. Online, the mean is taken over the windows
seen so far: window t is aligned with ``R_t``, the mean of the covariances of windows 0..t
(itself included, as batch EA includes every trial in its mean), so after t + 1 windows the
output for window t equals batch EA computed on those t + 1 windows (tested to 1e-10 on
EEGMMIDB). Causal: no window is ever aligned with statistics of a later one.

- Covariance ``X X^T / L`` (He & Wu use ``X X^T``: the outputs differ by the constant
  sqrt(L) only; per-sample scaling makes aligned signals unit-variance whatever the length).
- ``decay`` > 0 forgets: ``R_t`` is the mean with weights ``(1 - decay)^(t - i)`` (normalised,
  so the first windows are not shrunk towards zero).
- ``eps`` shrinks ``R`` towards ``trace(R)/C * I``: average-referenced EEG is rank C - 1 and its
  covariance has no inverse; the default 1e-6 makes the null direction harmless (its content is
  float32 round-off) and changes a full-rank alignment by ~1e-6 relative. ``eps: 0`` is plain EA
  and refuses a singular reference with an error that says so.
- During ``warmup`` windows the reference only accumulates: those windows are not emitted
  (aligning with a covariance from a few windows would hand the decoder a different scale).
- A window with a NaN or an infinity is neither used nor emitted (counted as ``nonfinite``):
  it would spoil the reference for ever. Large artifacts do spoil it for a while: put an
  ``artifact_guard`` with ``action: drop`` before this node.

Frames are float32; the reference and the arithmetic are float64.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
from pydantic import Field

from kernels.covariance import covariance, inv_sqrtm, shrink
from nodes.checks import check_window
from pipeline import Frame, FrameKind, Node, NodeParams, StreamInfo, StreamMismatch
from pipeline.node import Figure, Output


class Align(Node):
    """Whiten each (channels x samples) window by the mean covariance of the windows so far."""

    type_name = "align"
    accepts = {"in": (FrameKind.TENSOR,)}

    class Params(NodeParams):
        warmup: int = Field(10, ge=0, description="windows that only feed the reference before "
                                                  "the first one is aligned and emitted")
        decay: float = Field(0.0, ge=0, lt=1, description="weight lost per window by older "
                                                          "windows (0: plain running mean)")
        eps: float = Field(1e-6, ge=0, le=1, description="shrinkage of the reference towards "
                                                         "trace/C * I (needed for rank-deficient "
                                                         "data, e.g. average reference)")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        stream = info["in"]
        if len(stream.shape) != 2 or stream.shape[0] < 1:
            raise StreamMismatch(f"align needs (channels x samples) windows, e.g. from a window "
                                 f"node; the stream is {stream.describe()}")
        self.shape = stream.shape
        self.nonfinite = 0
        self.reset()
        return {"out": stream.replace(units=())}

    def reset(self) -> None:
        c = self.shape[0]
        self.total = np.zeros((c, c))   # decayed sum of window covariances
        self.weight = 0.0               # decayed number of windows
        self.seen = 0                   # windows in the reference since the last reset
        self.whitener: np.ndarray | None = None
        self.condition: float | None = None   # of the shrunk reference, when last inverted

    def update(self, x: np.ndarray) -> None:
        """Add window ``x`` (channels x samples) to the reference."""
        keep = 1.0 - self.params.decay
        self.total = keep * self.total + covariance(x)
        self.weight = keep * self.weight + 1.0
        self.seen += 1
        self.whitener = None

    def reference(self) -> np.ndarray:
        """The current reference covariance ``R`` (before shrinkage), float64."""
        return self.total / self.weight

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``R^{-1/2} x`` with the current reference (unchanged by this call); float64.

        Raises
        ------
        ValueError
            If the reference is singular (no window yet, or rank-deficient data with ``eps: 0``).
        """
        if self.whitener is None:
            if self.seen == 0:
                raise ValueError("no window in the reference yet")
            try:
                self.whitener, self.condition = inv_sqrtm(shrink(self.reference(),
                                                                 self.params.eps))
            except ValueError as e:
                raise ValueError(f"reference covariance after {self.seen} windows: {e}; data "
                                 f"of rank < channels (average reference, a dead channel) needs "
                                 f"eps > 0 (now {self.params.eps:g})") from None
        return self.whitener @ np.asarray(x, np.float64)

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        x = frame.data
        check_window(x, self.shape)
        if not np.isfinite(x).all():
            self.nonfinite += 1
            return
        self.update(x)
        if self.seen > self.params.warmup:
            yield "out", frame.with_data(self.transform(x).astype(np.float32))

    def figures(self) -> dict[str, Figure]:
        return {"windows": self.seen, "nonfinite": self.nonfinite,
                "condition": self.condition}
