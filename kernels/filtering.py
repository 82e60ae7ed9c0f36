"""Streaming linear filters: per-channel state carried across chunks, so that filtering a signal
chunk by chunk gives exactly what filtering it whole gives (the same recursion, in float64).

The coefficients come from MNE (`nodes.filters`). The IIR recursion is `sosfilt_chunk`, a Numba
kernel with SciPy's ``sosfilt`` arithmetic (direct form II transposed, the same operations in the
same order): SciPy's own call costs ~30 µs of argument handling per 64 x 16 chunk, several times
the arithmetic, and far more right after a worker wakes up. Long FIR filters stay on SciPy's
``lfilter``, whose cost is the convolution itself.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import signal


@numba.njit(cache=True, nogil=True)
def sosfilt_chunk(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> np.ndarray:
    """Filter ``x`` (channels x n, any float) through second-order sections ``sos``
    (n_sections x 6, ``a0 == 1``) from state ``zi`` (n_sections x channels x 2, float64, updated
    in place); float64 out. Pure but for the state it carries, as ``scipy.signal.sosfilt``."""
    sections = sos.shape[0]
    channels, n = x.shape
    y = np.empty((channels, n))
    for c in range(channels):
        for t in range(n):
            v = np.float64(x[c, t])
            for s in range(sections):
                out = sos[s, 0] * v + zi[s, c, 0]
                zi[s, c, 0] = sos[s, 1] * v - sos[s, 4] * out + zi[s, c, 1]
                zi[s, c, 1] = sos[s, 2] * v - sos[s, 5] * out
                v = out
            y[c, t] = v
    return y


class StreamingSOS:
    """Causal IIR filter in second-order sections over ``channels`` channels."""

    def __init__(self, sos: np.ndarray, channels: int) -> None:
        sos = np.asarray(sos, dtype=np.float64)
        if sos.ndim != 2 or sos.shape[1] != 6:
            raise ValueError(f"sos must be (n_sections, 6), got {sos.shape}")
        self.sos = np.ascontiguousarray(sos / sos[:, 3:4])  # a0 == 1, as the kernel assumes
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
        if np.isfinite(self.zi.sum()):  # the usual case, in one pass
            return 0
        bad = ~np.isfinite(self.zi).all(axis=(0, 2))
        self.zi[:, bad, :] = 0.0
        return int(bad.sum())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Filter the next chunk ``x`` (channels x n); float64 out."""
        return sosfilt_chunk(self.sos, x, self.zi)

    def warm_up(self) -> None:
        """Compile (or load from Numba's cache) the kernel for float32 and float64 chunks, so
        the first frame does not pay for it; the state is left as it was."""
        zi = self.zi.copy()
        for dtype in (np.float32, np.float64):
            sosfilt_chunk(self.sos, np.zeros((self.channels, 1), dtype), zi)


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
        if np.isfinite(self.zi.sum()):
            return 0
        bad = ~np.isfinite(self.zi).all(axis=1)
        self.zi[bad, :] = 0.0
        return int(bad.sum())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Filter the next chunk ``x`` (channels x n); float64 out."""
        if self.h.size == 1:
            return np.asarray(x, np.float64) * self.h[0]
        y, self.zi = signal.lfilter(self.h, 1.0, np.asarray(x, np.float64), axis=-1, zi=self.zi)
        return y
