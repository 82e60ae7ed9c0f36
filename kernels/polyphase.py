"""Streaming polyphase resampling by a rational factor ``up / down``: a pure step function.

Why polyphase: resampling by ``up / down`` is "insert ``up - 1`` zeros between samples, low-pass
with an FIR ``h``, keep every ``down``-th sample" (SciPy's ``upfirdn``), but almost every product
of that recipe is with an inserted zero. Output sample ``m`` sits at position ``t = m * down`` of
the upsampled signal; writing ``t = j * up + p`` (``0 <= p < up``), only the taps
``h[p], h[p + up], h[p + 2 up], ...`` meet real samples ``x[j], x[j - 1], ...``. So each output is
one dot product of ``Q = ceil(len(h) / up)`` taps (phase ``p``'s sub-filter) with the last ``Q``
input samples: ``y[m] = sum_q h[p + q * up] * x[j - q]``.

Streaming: the state is the last ``Q - 1`` input samples and the position of the next output
relative to the start of the next chunk (in upsampled samples), so a signal resampled chunk by
chunk, in chunks of any size (even shorter than ``down``), gives ``upfirdn(h, x, up,
down)[:ceil(n * up / down)]`` of the whole signal (to float64 rounding): each output is emitted as soon as the input
sample at its position has arrived (causal; no look-ahead). Following Norse's functional style,
`polyphase_step` is a pure function of (input, state, params) returning (output, state).

The cost per chunk is a small matrix product ``(channels x window) @ (window x outputs)`` in
float64 (BLAS; the matrix places each output's sub-filter at its input window), one per block of
outputs on long chunks: no Python loop over samples or channels.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

#: Most outputs computed by one matrix product (bounds its size on long chunks).
MAX_BLOCK = 256
#: ... and at least this many (a block of 1 would cost a product per output).
MIN_BLOCK = 16
#: resample_poly's anti-aliasing window: Kaiser, beta 5.
WINDOW = ("kaiser", 5.0)


def antialias_taps(up: int, down: int) -> np.ndarray:
    """The FIR SciPy's ``resample_poly`` designs for ``up / down``, with the gain ``up``.

    Parameters
    ----------
    up, down : int
        Coprime up- and down-sampling factors (>= 1).

    Returns
    -------
    h : ndarray, shape (20 * max(up, down) + 1,)
        Linear-phase low-pass (``firwin``, Kaiser window beta 5) cutting at the lower of the two
        Nyquist frequencies (``1 / max(up, down)`` of the upsampled Nyquist), times ``up``; its
        group delay is ``10 * max(up, down)`` upsampled samples. ``[1.0]`` when ``up == down == 1``.
    """
    if up == down == 1:
        return np.ones(1)
    half_len = 10 * max(up, down)
    return signal.firwin(2 * half_len + 1, 1.0 / max(up, down), window=WINDOW) * up


class PolyphaseParams(NamedTuple):
    """Fixed part of a resampler: ``taps[p, Q - 1 - q] = h[p + q * up]`` (zero past ``h``'s end),
    i.e. phase ``p``'s sub-filter in the order of the input window it multiplies."""

    taps: np.ndarray  # (up, Q) float64
    up: int
    down: int


class PolyphaseState(NamedTuple):
    """Carried part: the last ``Q - 1`` input samples and where the next output falls."""

    history: np.ndarray  # (channels, Q - 1) float64, oldest first
    phase: int           # upsampled position of the next output from the next chunk's first sample


def polyphase_params(h: np.ndarray, up: int, down: int) -> PolyphaseParams:
    """Split the FIR ``h`` (at the upsampled rate) into its ``up`` polyphase sub-filters."""
    h = np.asarray(h, np.float64)
    if h.ndim != 1 or h.size < 1:
        raise ValueError(f"h must be a 1-D array of taps, got shape {h.shape}")
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got {up} and {down}")
    q = -(-h.size // up)
    padded = np.zeros(q * up)
    padded[:h.size] = h
    return PolyphaseParams(np.ascontiguousarray(padded.reshape(q, up).T[:, ::-1]), up, down)


def polyphase_state(params: PolyphaseParams, channels: int) -> PolyphaseState:
    """The state before the first sample: zero history (as ``upfirdn`` starts), first output at
    the first sample."""
    return PolyphaseState(np.zeros((channels, params.taps.shape[1] - 1)), 0)


def output_count(n: int, phase: int, params: PolyphaseParams) -> int:
    """How many outputs a chunk of ``n`` samples completes, the next output being ``phase``
    upsampled samples from its start: those at positions ``phase, phase + down, ... < n * up``."""
    return max(0, -(-(n * params.up - phase) // params.down))


def polyphase_step(x: np.ndarray, state: PolyphaseState,
                   params: PolyphaseParams) -> tuple[np.ndarray, PolyphaseState]:
    """Resample the next chunk.

    Parameters
    ----------
    x : ndarray, shape (channels, n)
        The next ``n`` input samples (any real dtype; computed in float64).
    state : PolyphaseState
        From `polyphase_state` or the previous step.
    params : PolyphaseParams
        From `polyphase_params`.

    Returns
    -------
    y : ndarray, shape (channels, output_count(n, state.phase, params)), float64
        The outputs whose upsampled position falls inside this chunk (possibly none).
    state : PolyphaseState
        For the next chunk.
    """
    taps, up, down = params
    n = x.shape[1]
    width = taps.shape[1]
    buf = np.concatenate([state.history, np.asarray(x, np.float64)], axis=1)
    t = state.phase + down * np.arange(output_count(n, state.phase, params))
    j, p = np.divmod(t, up)
    # Each block of outputs is one BLAS product buf[:, lo:hi] @ W, where column m of W holds
    # output m's sub-filter at the rows of its input window (inputs j[m] - (Q - 1) .. j[m] of
    # the chunk are rows j[m] .. j[m] + Q - 1 of buf). Blocks of about Q * up / down outputs
    # keep W about half non-zero, so the cost stays linear in the chunk length.
    y = np.empty((buf.shape[0], t.size))
    block = min(MAX_BLOCK, max(MIN_BLOCK, width * up // down))
    for a in range(0, t.size, block):
        jb, pb = j[a:a + block], p[a:a + block]
        lo, hi = jb[0], jb[-1] + width
        window = buf[:, lo:hi]
        if np.isfinite(window).all():
            weights = np.zeros((hi - lo, jb.size))
            weights[(jb - lo)[:, None] + np.arange(width), np.arange(jb.size)[:, None]] = taps[pb]
            y[:, a:a + jb.size] = window @ weights
        else:  # 0 * NaN is NaN: only the outputs whose own window holds it may be spoilt
            own = sliding_window_view(window, width, axis=1)[:, jb - lo]  # (channels, M, Q)
            y[:, a:a + jb.size] = np.einsum("cmq,mq->cm", own, taps[pb])
    history = buf[:, buf.shape[1] - (width - 1):].copy()
    return y, PolyphaseState(history, state.phase + down * t.size - n * up)
