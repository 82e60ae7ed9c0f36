"""Spatial covariance of EEG windows and the inverse square root that whitens with it.

Euclidean alignment (`nodes.align`) needs three small things: a window's covariance, shrinkage
for a reference that is rank-deficient (64 average-referenced channels span 63 dimensions), and
``R^{-1/2}`` of a symmetric positive-definite matrix. ``eigh`` gives the last exactly symmetric
and cheaply (a 64 x 64 matrix takes ~0.1 ms); a general ``sqrtm`` would not. All float64.
"""

from __future__ import annotations

import numpy as np

#: Smallest eigenvalue / largest below which a matrix is treated as singular (float64 round-off
#: of a rank-deficient covariance lands around 1e-14 .. 1e-16 of its largest eigenvalue).
SINGULAR = 1e-12


def covariance(x: np.ndarray) -> np.ndarray:
    """Spatial covariance ``X X^T / L`` of a window (channels x L samples), float64.

    Not demeaned, as in Euclidean alignment: band-passed EEG has no DC to remove.
    """
    x = np.asarray(x, np.float64)
    return x @ x.T / x.shape[1]


def shrink(r: np.ndarray, eps: float) -> np.ndarray:
    """``(1 - eps) R + eps * trace(R) / C * I``: pull ``R`` towards the identity scaled to its
    mean eigenvalue (trace kept). ``eps`` in [0, 1]; 0 returns ``R`` itself."""
    if eps == 0:
        return r
    c = r.shape[0]
    return (1.0 - eps) * r + (eps * np.trace(r) / c) * np.eye(c)


def inv_sqrtm(r: np.ndarray) -> tuple[np.ndarray, float]:
    """``R^{-1/2}`` of a symmetric positive-definite matrix, and ``R``'s condition number.

    Raises
    ------
    ValueError
        If ``R`` is singular: its smallest eigenvalue is at most `SINGULAR` times its largest.
    """
    w, v = np.linalg.eigh(r)
    if not w[-1] > 0 or w[0] <= SINGULAR * w[-1]:
        raise ValueError(f"the matrix is singular (eigenvalues {w[0]:.3g} .. {w[-1]:.3g})")
    return (v / np.sqrt(w)) @ v.T, float(w[-1] / w[0])
