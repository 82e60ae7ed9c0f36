"""standardize: the streamed output equals braindecode's exponential_moving_standardize of the
whole real recording, however the stream is cut, initial block and missing samples included."""

from __future__ import annotations

import numpy as np
import pytest

from nodes.standardize import Standardize
from pipeline import Frame, FrameKind, StreamInfo
from conftest import edf_files, random_chunks, recording_uv

SRATE = 160.0
#: Frames are float32: rounding is <= 2**-24 relative (1e-6 leaves room for a rounding flip);
#: atol covers a constant channel, where float64 round-off of its mean (~1e-15 µV) is divided by
#: eps (1e-4).
FLOAT32 = {"rtol": 1e-6, "atol": 1e-9}


def pandas_ewm_mean(d: np.ndarray, alpha: float) -> np.ndarray:
    """pandas' ``DataFrame.ewm(alpha=alpha).mean()`` (defaults adjust=True, ignore_na=False,
    min_periods=0) of ``d`` (time x channels), as pandas documents and computes it: a running
    weighted average whose old weight decays by 1 - alpha per sample, also across missing
    samples, and is 1 + that at each observed one; missing samples keep the previous mean, and
    the mean is NaN until the first observation. Missing = NaN, and here also +-inf."""
    out = np.empty_like(d)
    mean = d[0].copy()
    mean[~np.isfinite(mean)] = np.nan
    old = np.ones(d.shape[1])
    out[0] = mean
    for t in range(1, d.shape[0]):
        has, obs = ~np.isnan(mean), np.isfinite(d[t])
        old = np.where(has, old * (1 - alpha), old)
        mean = np.where(has & obs, (old * mean + d[t]) / (old + 1), np.where(obs, d[t], mean))
        old = np.where(has & obs, old + 1, old)
        out[t] = mean
    return out


def test_the_reference_is_pandas_own_ewm_mean() -> None:
    # braindecode calls pandas; the reference above is a port of it, checked here against pandas
    # itself (a test-time dependency only) on real EEG with a NaN gap, to float64 round-off
    pandas = pytest.importorskip("pandas", reason="pandas is in the [dev] extra")
    d = recording_uv(edf_files()[0])[:8, :3000].T.astype(np.float64)
    d[1000:1040, 2] = np.nan
    for alpha in (1e-3, 0.05):
        expected = pandas.DataFrame(d).ewm(alpha=alpha).mean().to_numpy()
        np.testing.assert_allclose(pandas_ewm_mean(d, alpha), expected, rtol=1e-12, atol=1e-9)


def braindecode_reference(x: np.ndarray, factor_new: float = 1e-3,
                          init_block_size: int | None = None, eps: float = 1e-4) -> np.ndarray:
    """braindecode.preprocessing.exponential_moving_standardize (braindecode/preprocessing/
    preprocess.py) on ``x`` (channels x n), written from its source: demeaned = x - ewm mean,
    standardized = demeaned / max(eps, sqrt(ewm mean of demeaned**2)); the first
    ``init_block_size`` samples replaced by (x - block mean) / max(eps, block std)."""
    d = x.T.astype(np.float64)
    demeaned = d - pandas_ewm_mean(d, factor_new)
    with np.errstate(invalid="ignore"):  # inf - inf in the inf test
        out = demeaned / np.maximum(eps, np.sqrt(pandas_ewm_mean(demeaned * demeaned, factor_new)))
    if init_block_size is not None:
        block = d[:init_block_size]
        out[:init_block_size] = (block - block.mean(axis=0)) / np.maximum(eps, block.std(axis=0))
    return out.T


def make(channels: int = 64, **params: object) -> Standardize:
    node = Standardize(Standardize.Params(**params), "std")
    info = StreamInfo(FrameKind.SAMPLES, SRATE, shape=(channels,), units=("uV",) * channels,
                      channel_names=[f"c{i}" for i in range(channels)])
    assert node.setup({"in": info})["out"] == info.replace(units=())
    return node


def streamed(node: Standardize, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x`` through ``node.standardize`` in chunks of random length 1..64 (float64 out)."""
    chunks = random_chunks(x.shape[1], rng, 64)
    return np.concatenate([node.standardize(x[:, a:b]) for a, b in chunks], axis=1)


@pytest.mark.parametrize(("name", "params"), [
    ("S001R04", {}), ("S017R08", {}),
    ("S001R04", {"factor_new": 1e-2, "init_block_size": 1000}),
    ("S017R08", {"init_block_size": 333, "eps": 1.0}),
])
def test_streamed_output_equals_braindecode_on_a_real_recording(name: str, params: dict) -> None:
    """Whole 125-s recordings (S017R08: among the largest amplitudes of the set), random chunk cuts:
    |streamed - reference| <= 1e-9 (standardized values are <~ 10; both sides are float64
    recursions that contract by 1 - factor_new per sample, so round-off stays ~1e-13)."""
    [path] = [p for p in edf_files() if p.stem == name]
    x = recording_uv(path)
    got = streamed(make(**params), x, np.random.default_rng(0))
    assert got.shape == x.shape
    np.testing.assert_allclose(got, braindecode_reference(x, **params), rtol=0, atol=1e-9)


def test_the_initial_block_is_held_then_emitted_in_one_frame_with_its_first_times() -> None:
    x = recording_uv(edf_files()[0])[:, :3000]
    node = make(init_block_size=1000)
    out = []
    for k, a in enumerate(range(0, 3000, 64)):
        frame = Frame(FrameKind.SAMPLES, x[:, a:a + 64], 500 + k, t_device=a / SRATE)
        got = list(node.process("in", frame))
        if a + 64 < 1000:
            assert got == [] and node.figures()["holding"] == a + 64
        out += [f for _, f in got]
    first = out[0]
    assert first.data.shape == (64, 1024) and first.data.dtype == np.float32
    assert (first.t_origin_ns, first.t_device) == (500, 0.0)  # the oldest sample's times
    assert all(f.data.shape[1] == 64 for f in out[1:-1])
    assert (out[1].t_origin_ns, out[1].t_device) == (516, 1024 / SRATE)
    assert node.figures()["holding"] == 0 and list(node.close()) == []
    np.testing.assert_allclose(np.concatenate([f.data for f in out], axis=1),
                               braindecode_reference(x, init_block_size=1000), **FLOAT32)


def test_a_stream_shorter_than_the_block_is_flushed_at_close_with_its_own_statistics() -> None:
    x = recording_uv(edf_files()[0])[:, :500]
    node = make(init_block_size=1000)
    assert list(node.process("in", Frame(FrameKind.SAMPLES, x, 7, t_device=0.0))) == []
    [(port, frame)] = list(node.close())
    assert port == "out" and (frame.t_origin_ns, frame.t_device) == (7, 0.0)
    ref = braindecode_reference(x, init_block_size=1000)
    np.testing.assert_allclose(frame.data, ref, **FLOAT32)


def test_missing_samples_are_counted_come_out_nan_and_do_not_spoil_the_rest() -> None:
    """A NaN burst (2 channels), a channel that starts with NaN and one infinity: the output is
    non-finite exactly there and equals the reference everywhere (pandas skips missing samples
    while decaying the older weights); after them everything is finite again."""
    x = recording_uv(edf_files()[1])[:8, :4000].copy()
    x[[2, 5], 1000:1040] = np.nan
    x[3, :10] = np.nan
    x[6, 2000] = np.inf
    node = make(channels=8)
    got = streamed(node, x, np.random.default_rng(1))
    ref = braindecode_reference(x)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)  # NaN where NaN, as pandas'
    np.testing.assert_array_equal(~np.isfinite(got), ~np.isfinite(x))
    assert node.figures()["nonfinite"] == 2 * 40 + 10 + 1


def test_frames_out_are_float32_with_the_same_header_and_a_constant_channel_is_zero() -> None:
    x = recording_uv(edf_files()[0])[:4, :320].copy()
    x[1] = 12.0  # a flat channel: variance 0, floored by eps
    node = make(channels=4)
    frame = Frame(FrameKind.SAMPLES, x, 123, seq=4, t_device=1.5)
    [(port, frame)] = list(node.process("in", frame))
    assert port == "out" and frame.data.dtype == np.float32 and frame.data.shape == x.shape
    assert (frame.t_origin_ns, frame.t_device) == (123, 1.5)
    np.testing.assert_allclose(frame.data, braindecode_reference(x), **FLOAT32)
    assert np.abs(frame.data[1]).max() < 1e-6


def test_reset_and_a_wrong_channel_count() -> None:
    x = recording_uv(edf_files()[0])[:4, :2000]
    node = make(channels=4, init_block_size=100)
    first = node.standardize(x)
    node.standardize(x)
    node.reset()
    np.testing.assert_array_equal(node.standardize(x), first)
    with pytest.raises(ValueError, match="frame has 3 channels, the stream has 4"):
        list(node.process("in", Frame(FrameKind.SAMPLES, x[:3], 0)))
