"""Streaming linear filters: per-channel state carried across chunks, so that filtering a signal
chunk by chunk gives exactly what filtering it whole gives (the same recursion, in float64).

The coefficients come from MNE (`nodes.filters`); the recursions are SciPy's compiled
``sosfilt`` / ``lfilter`` with explicit initial conditions, which is all the hot loop needs.
"""

from __future__ import annotations

import numpy as np
from scipy import signal


class StreamingSOS:
    """Causal IIR filter in second-order sections over ``channels`` channels."""

    def __init__(self, sos: np.ndarray, channels: int) -> None:
        self.sos = np.asarray(sos, dtype=np.float64)
        if self.sos.ndim != 2 or self.sos.shape[1] != 6:
            raise ValueError(f"sos must be (n_sections, 6), got {self.sos.shape}")
        self.channels = channels
        self.reset()

    def reset(self, first: np.ndarray | None = None) -> None:
        """Zero state (as an offline ``sosfilt`` starts), or the steady state for a signal that
        has been at ``first`` (one value per channel) forever: no step transient at start."""
        if first is None:
            self.zi = np.zeros((self.sos.shape[0], self.channels, 2))
        else:
            self.zi = signal.sosfilt_zi(self.sos)[:, None, :] * np.asarray(first, np.float64)[None, :, None]

    def dc_gain(self) -> float:
        """Gain at 0 Hz: what a constant input becomes."""
        return float(np.prod(self.sos[:, :3].sum(axis=1) / self.sos[:, 3:].sum(axis=1)))

    def recover(self) -> int:
        """Zero the state of channels whose state went non-finite (a NaN input would otherwise
        stay in the recursion for ever); return how many."""
        bad = ~np.isfinite(self.zi).all(axis=(0, 2))
        self.zi[:, bad, :] = 0.0
        return int(bad.sum())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Filter the next chunk ``x`` (channels x n); float64 out."""
        y, self.zi = signal.sosfilt(self.sos, np.asarray(x, np.float64), axis=-1, zi=self.zi)
        return y


class StreamingFIR:
    """Causal FIR filter ``h`` over ``channels`` channels (direct form, state = last taps)."""

    def __init__(self, h: np.ndarray, channels: int) -> None:
        self.h = np.asarray(h, dtype=np.float64)
        if self.h.ndim != 1 or self.h.size < 1:
            raise ValueError(f"h must be a 1-D array of taps, got shape {self.h.shape}")
        self.channels = channels
        self.reset()

    def reset(self, first: np.ndarray | None = None) -> None:
        """Zero state, or that of a signal constant at ``first`` (one value per channel)."""
        n = self.h.size - 1
        self.zi = np.zeros((self.channels, n))
        if first is not None and n:
            # lfilter_zi for b = h, a = 1: the tail sums of the taps
            tail = np.cumsum(self.h[::-1])[::-1][1:]
            self.zi = tail[None, :] * np.asarray(first, np.float64)[:, None]

    def dc_gain(self) -> float:
        """Gain at 0 Hz: what a constant input becomes."""
        return float(self.h.sum())

    def recover(self) -> int:
        """Zero the state of channels whose state went non-finite; return how many."""
        bad = ~np.isfinite(self.zi).all(axis=1)
        self.zi[bad, :] = 0.0
        return int(bad.sum())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Filter the next chunk ``x`` (channels x n); float64 out."""
        if self.h.size == 1:
            return np.asarray(x, np.float64) * self.h[0]
        y, self.zi = signal.lfilter(self.h, 1.0, np.asarray(x, np.float64), axis=-1, zi=self.zi)
        return y
