"""Exponentially weighted moving standardization, streaming: braindecode's
``exponential_moving_standardize`` computed chunk by chunk with its state carried across chunks.

braindecode (``braindecode/preprocessing/preprocess.py``) computes, per channel, pandas'
``ewm(alpha=factor_new).mean()`` of the signal, then of the squared deviation from that mean.
pandas' default is ``adjust=True``: the mean at sample t is the *normalised* weighted average
``sum_i (1-a)^(t-i) x_i / sum_i (1-a)^(t-i)`` (only the docstring's recursion
``m_t = a x_t + (1-a) m_{t-1}`` is the adjust=False form, and the two agree only after
~5/a samples). Both sums obey ``y_t = x_t + (1-a) y_{t-1}``, a one-pole IIR filter, so SciPy's
compiled ``lfilter`` with explicit initial conditions runs them over a whole chunk at once.

Missing samples follow pandas (``ignore_na=False``): a non-finite sample adds nothing to either
sum while the older weights keep decaying; its output is non-finite and it never enters the
state (pandas would let an infinity in for ever; we treat it as missing too).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import signal


class EWMState(NamedTuple):
    """Per-channel running sums (float64, one value per channel), as of the last sample seen."""

    total: np.ndarray   # sum_i (1-a)^(t-i) x_i
    weight: np.ndarray  # sum_i (1-a)^(t-i) over finite samples
    square: np.ndarray  # sum_i (1-a)^(t-i) (x_i - m_i)^2


def ewm_state(channels: int) -> EWMState:
    """The state before any sample (a fresh stream)."""
    return EWMState(np.zeros(channels), np.zeros(channels), np.zeros(channels))


def _decayed_sum(x: np.ndarray, last: np.ndarray, keep: float) -> np.ndarray:
    """``y_t = x_t + keep * y_{t-1}`` along the last axis, from ``y_{-1} = last``."""
    zi = (keep * last)[:, None]
    return signal.lfilter([1.0], [1.0, -keep], x, axis=-1, zi=zi)[0]


def ewm_standardize(x: np.ndarray, state: EWMState, factor_new: float,
                    eps: float) -> tuple[np.ndarray, EWMState]:
    """Standardize the next chunk ``x`` (channels x n, any unit) against the running mean and
    variance: ``(x_t - m_t) / max(sqrt(v_t), eps)``.

    Parameters
    ----------
    x : numpy.ndarray
        The next samples, channels x n.
    state : EWMState
        Running sums after the previous chunk (`ewm_state` for a fresh stream).
    factor_new : float
        Weight ``a`` of the newest sample, in (0, 1]; the memory is ~1/a samples.
    eps : float
        Floor of the standard deviation (same unit as ``x``).

    Returns
    -------
    y : numpy.ndarray
        Standardized chunk, float64 (unitless); non-finite where ``x`` is.
    state : EWMState
        Running sums after the chunk's last sample.
    """
    x = np.asarray(x, np.float64)
    if x.shape[1] == 0:
        return x.copy(), state
    keep = 1.0 - factor_new
    seen = np.isfinite(x)
    total = _decayed_sum(np.where(seen, x, 0.0), state.total, keep)
    weight = _decayed_sum(seen.astype(np.float64), state.weight, keep)
    with np.errstate(invalid="ignore", divide="ignore"):
        dev = x - total / weight  # 0/0 = NaN before a channel's first finite sample, as pandas
        square = _decayed_sum(np.where(seen, dev * dev, 0.0), state.square, keep)
        y = dev / np.maximum(eps, np.sqrt(square / weight))
    return y, EWMState(total[:, -1], weight[:, -1], square[:, -1])
