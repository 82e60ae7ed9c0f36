"""align: online Euclidean alignment equals batch EA (He & Wu 2019) on the windows seen so far,
on real EEGMMIDB windows cut by the window node."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import linalg

from nodes.align import Align
from nodes.window import Window
from pipeline import Frame, FrameKind, StreamInfo, StreamMismatch
from conftest import edf_files, recording_uv

SRATE = 160.0
LAST = slice(-1, None)
#: Frames are float32: a float64 value rounds by at most half a float32 ulp, 2**-24 (6e-8)
#: relative; 1e-7 leaves room. atol: batch EA and ours agree to 1e-10 in float64 (first test).
FLOAT32 = {"rtol": 1e-7, "atol": 1e-10}


def windows(names: list[str], length: float = 2.0, step: float = 2.0) -> list[np.ndarray]:
    """Windows of the named real recordings (one after the other), cut by the window node from
    64-sample chunks: what ``align`` receives in a graph."""
    out: list[np.ndarray] = []
    for path in [p for p in edf_files() if p.stem in names]:
        x = recording_uv(path)
        node = Window(Window.Params(length=length, step=step), "win")
        node.setup({"in": StreamInfo(FrameKind.SAMPLES, SRATE, shape=(x.shape[0],))})
        for a in range(0, x.shape[1], 64):
            chunk = Frame(FrameKind.SAMPLES, x[:, a:a + 64], 0)
            out += [f.data for _, f in node.process("in", chunk)]
    assert len(out) > 10, names
    return out


def batch_ea(trials: list[np.ndarray], weights: np.ndarray | None = None,
             which: slice = slice(None)) -> list[np.ndarray]:
    """Euclidean alignment of ``trials`` as a batch, written plainly: R = (weighted) mean of
    X X^T / L; the trials (``which`` of them) multiplied by the inverse of scipy's matrix square
    root of R."""
    covs = [t.astype(np.float64) @ t.astype(np.float64).T / t.shape[1] for t in trials]
    root = linalg.sqrtm(np.average(covs, axis=0, weights=weights))
    return [np.linalg.solve(root, t.astype(np.float64)) for t in trials[which]]


def make(channels: int = 64, length: int = 320, **params: object) -> Align:
    node = Align(Align.Params(**params), "align")
    info = StreamInfo(FrameKind.TENSOR, SRATE / length, shape=(channels, length),
                      units=("uV",) * channels, channel_names=[f"c{i}" for i in range(channels)])
    assert node.setup({"in": info})["out"] == info.replace(units=())
    return node


def test_window_t_aligned_online_equals_batch_ea_on_windows_0_to_t() -> None:
    """Two runs of subject 1 (124 windows of 2 s): after window t, its online alignment equals
    batch EA on windows 0..t, to 1e-10 (aligned values are ~1; the reference's sqrtm + solve and
    our eigh differ by ~cond(R^1/2) * 1e-16 ~ 1e-13 .. 1e-11 here). Plain EA: eps 0."""
    trials = windows(["S001R04", "S001R08"])
    node = make(eps=0.0)
    worst = 0.0
    for t, x in enumerate(trials):
        node.update(x)
        got = node.transform(x)
        worst = max(worst, float(np.max(np.abs(got - batch_ea(trials[:t + 1], which=LAST)[0]))))
    assert worst <= 1e-10, worst
    assert node.seen == len(trials)


def test_all_windows_aligned_with_the_final_reference_have_identity_mean_covariance() -> None:
    """The batch property that motivates EA: with R from every window, the aligned windows' mean
    covariance is I (to 1e-10: round-off of 64 x 64 products), and equals batch EA's output."""
    trials = windows(["S002R04"])
    node = make(eps=0.0)
    for x in trials:
        node.update(x)
    aligned = [node.transform(x) for x in trials]
    mean = np.mean([a @ a.T / a.shape[1] for a in aligned], axis=0)
    np.testing.assert_allclose(mean, np.eye(64), rtol=0, atol=1e-10)
    for got, ref in zip(aligned, batch_ea(trials)):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)


def test_decay_weights_older_windows_geometrically() -> None:
    """With decay d, R_t is the mean with weights (1-d)^(t-i): batch EA with those weights."""
    trials = windows(["S003R04"], step=1.0)[:40]
    node = make(eps=0.0, decay=0.1)
    for t, x in enumerate(trials):
        node.update(x)
        weights = 0.9 ** np.arange(t, -1, -1)
        np.testing.assert_allclose(node.transform(x), batch_ea(trials[:t + 1], weights, LAST)[0],
                                   rtol=0, atol=1e-10)


def test_frames_warm_up_then_come_out_float32_with_their_header() -> None:
    """The first `warmup` windows only feed the reference; later ones are emitted with the input
    frame's header, float32 of batch EA on the windows so far."""
    trials = windows(["S001R04"])[:12]
    node = make(warmup=5, eps=0.0)
    for t, x in enumerate(trials):
        out = list(node.process("in", Frame(FrameKind.TENSOR, x, 1000 + t, t_device=2.0 * t)))
        if t < 5:
            assert out == []
        else:
            [(port, frame)] = out
            assert port == "out" and frame.data.dtype == np.float32
            assert (frame.t_origin_ns, frame.t_device) == (1000 + t, 2.0 * t)
            np.testing.assert_allclose(frame.data, batch_ea(trials[:t + 1], which=LAST)[0],
                                       **FLOAT32)
    figures = node.figures()
    assert figures["windows"] == 12 and figures["nonfinite"] == 0
    assert 1 < figures["condition"] < 1e6


def test_average_referenced_data_needs_shrinkage_and_then_whitens_its_63_dimensions() -> None:
    """64 average-referenced channels are rank 63. Plain EA (eps 0) refuses the singular
    reference with an error that names eps; the default shrinkage (1e-6) aligns: the aligned mean
    covariance has one eigenvalue ~0 (the null direction, float32 round-off) and 63 within 1e-3
    of 1 (shrinkage lowers eigenvalue k by ~eps * mean / lambda_k: 3.5e-4 here, where the smallest
    non-zero eigenvalue of R is 1/350 of the mean)."""
    trials = [(x - x.mean(axis=0)).astype(np.float32) for x in windows(["S001R04"])]
    plain = make(eps=0.0, warmup=0)
    with pytest.raises(ValueError, match=r"singular.*average reference.*eps > 0 \(now 0\)"):
        list(plain.process("in", Frame(FrameKind.TENSOR, trials[0], 0)))
    node = make(warmup=0)
    for x in trials:
        [(_, frame)] = list(node.process("in", Frame(FrameKind.TENSOR, x, 0)))
        assert np.isfinite(frame.data).all()
    aligned = [node.transform(x) for x in trials]
    eig = np.linalg.eigvalsh(np.mean([a @ a.T / a.shape[1] for a in aligned], axis=0))
    assert eig[0] < 1e-6, eig[:3]
    np.testing.assert_allclose(eig[1:], 1.0, rtol=0, atol=1e-3)


def test_a_window_with_nan_is_neither_used_nor_emitted() -> None:
    trials = windows(["S001R04"])[:6]
    node = make(warmup=0, eps=0.0)
    for x in trials[:3]:
        list(node.process("in", Frame(FrameKind.TENSOR, x, 0)))
    bad = trials[3].copy()
    bad[7, 100:110] = np.nan
    assert list(node.process("in", Frame(FrameKind.TENSOR, bad, 0))) == []
    assert node.figures()["nonfinite"] == 1 and node.seen == 3
    [(_, frame)] = list(node.process("in", Frame(FrameKind.TENSOR, trials[4], 0)))
    np.testing.assert_allclose(frame.data, batch_ea(trials[:3] + [trials[4]], which=LAST)[0],
                               **FLOAT32)


def test_bad_shapes_are_refused_with_the_shapes_named() -> None:
    node = Align(Align.Params(), "align")
    with pytest.raises(StreamMismatch, match=r"\(channels x samples\) windows.*samples 64 ch"):
        node.setup({"in": StreamInfo(FrameKind.SAMPLES, SRATE, shape=(64,))})
    node = make(channels=4, length=32)
    x = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    for wrong in (x[:3], x[:, :31], x[None]):
        with pytest.raises(ValueError, match=re.escape(f"frame has shape {list(wrong.shape)}, "
                                                       f"the stream [4, 32] (channels x samples)")):
            list(node.process("in", Frame(FrameKind.TENSOR, wrong, 0)))
    assert node.seen == 0


def test_reset_forgets_the_reference() -> None:
    trials = windows(["S001R04"])[:8]
    node = make(warmup=0)
    for x in trials[:5]:
        node.update(x)
    node.reset()
    assert node.figures()["windows"] == 0
    with pytest.raises(ValueError, match="no window"):
        node.transform(trials[0])
    fresh = make(warmup=0)
    for x in trials[5:]:
        node.update(x)
        fresh.update(x)
    np.testing.assert_array_equal(node.transform(trials[7]), fresh.transform(trials[7]))
