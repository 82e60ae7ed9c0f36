"""resample: chunked streaming output equals SciPy's offline upfirdn / resample_poly of the whole
real recording, however it is cut."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from scipy import signal

from conftest import edf_files, random_chunks, recording_uv
from nodes.resample import Resample
from pipeline import Frame, FrameKind, StreamInfo, StreamMismatch, config, graph
from pipeline.config import ConfigError

SRATE = 160.0
#: 160 Hz to these rates: (up, down) as the reduced fraction.
TARGETS = {100.0: (5, 8), 250.0: (25, 16), 128.0: (4, 5)}
#: Frames are float32: a float64 value rounds by at most half a float32 ulp, 2**-24 (6e-8)
#: relative; 1e-7 leaves room. atol: the float64 paths' own 1e-10 µV (next tests).
FLOAT32 = {"rtol": 1e-7, "atol": 1e-10}


def make(srate: float, channels: int = 64, **params: object) -> tuple[Resample, StreamInfo]:
    node = Resample(Resample.Params(srate=srate, **params), "rs")
    names = tuple(f"ch{i}" for i in range(channels))
    info = node.setup({"in": StreamInfo(FrameKind.SAMPLES, SRATE, names, shape=(channels,),
                                        clock="file")})["out"]
    return node, info


def reference_taps(up: int, down: int) -> np.ndarray:
    """resample_poly's anti-aliasing FIR, written out from SciPy's documentation: firwin with a
    Kaiser window (beta 5), 2 * 10 * max(up, down) + 1 taps, cut-off 1 / max(up, down), gain up."""
    return signal.firwin(20 * max(up, down) + 1, 1.0 / max(up, down), window=("kaiser", 5.0)) * up


def chunked(node: Resample, x: np.ndarray, rng: np.random.Generator, most: int) -> np.ndarray:
    """``x`` through ``node.resample`` in random chunks of 0 .. ``most`` samples (empty ones
    included); float64 out."""
    chunks = random_chunks(x.shape[1], rng, most, least=0)
    return np.concatenate([node.resample(x[:, a:b]) for a, b in chunks], axis=1)


def frames_of(node: Resample, x: np.ndarray, size: int = 16) -> list[tuple[int | None, Frame]]:
    """``x`` through ``process`` in frames of ``size`` samples (the one from sample a stamped
    t_origin_ns 1000 + a, t_device 5 + a / 160 s), then ``close``: each output frame with the
    first sample of the input frame that produced it (None: close)."""
    out: list[tuple[int | None, Frame]] = []
    for a in range(0, x.shape[1], size):
        frame = Frame(FrameKind.SAMPLES, x[:, a:a + size], 1000 + a, t_device=5.0 + a / SRATE)
        out += [(a, f) for _, f in node.process("in", frame)]
    return out + [(None, f) for _, f in node.close()]


def test_chunked_equals_causal_upfirdn_of_the_whole_real_recording() -> None:
    """Three recordings to 100, 250 and 128 Hz in random chunks of 0..40 samples (many shorter
    than ``down``): |chunked - upfirdn| <= 1e-10 µV in float64 (signals are ~10-100 µV and both
    sum the same ~20-33 products, so they differ by rounding only, ~1e-13), and exactly
    ceil(n * up / down) samples come out."""
    rng = np.random.default_rng(0)
    for path in edf_files()[:3]:
        x = recording_uv(path)
        n = x.shape[1]
        for target, (up, down) in TARGETS.items():
            node, info = make(target)
            assert (info.extra["up"], info.extra["down"]) == (up, down)
            got = chunked(node, x, rng, 40)
            ref = signal.upfirdn(reference_taps(up, down), x.astype(np.float64), up, down, axis=1)
            assert got.dtype == np.float64 and got.shape == (64, -(-n * up // down))
            np.testing.assert_allclose(got, ref[:, :got.shape[1]], rtol=0, atol=1e-10,
                                       err_msg=f"{path.name} -> {target:g} Hz")
            assert node.flush().shape == (64, 0)  # causal: nothing owed at the end


def test_compensated_equals_resample_poly_with_the_tail_at_the_end() -> None:
    """compensate_delay: the chunked output, then what flush() owes, is SciPy's resample_poly of
    the whole recording (its own filter design: an independent check of ours), to 1e-10 µV."""
    x = recording_uv(edf_files()[0])
    rng = np.random.default_rng(1)
    for target, (up, down) in TARGETS.items():
        node, info = make(target, compensate_delay=True)
        got = np.concatenate([chunked(node, x, rng, 40), node.flush()], axis=1)
        ref = signal.resample_poly(x.astype(np.float64), up, down, axis=1)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)
        assert node.flush().shape == (64, 0)  # owed once only
        assert info.extra["group_delay_s"] == 0 and info.extra["latency_s"] > 0


def test_stream_info_reports_the_new_rate_and_the_delay() -> None:
    _, info = make(100.0)
    assert info.srate == 100.0 and info.kind is FrameKind.SAMPLES and info.shape == (64,)
    assert info.channel_names[:2] == ("ch0", "ch1") and info.clock == "file"
    # the FIR has 2 * 80 + 1 taps at 800 Hz: half of it is 80 / 800 s = 10 output samples
    assert info.extra["taps"] == 161 and info.extra["group_delay_s"] == pytest.approx(0.1)
    assert info.extra["group_delay_samples"] == pytest.approx(10.0) and info.extra["latency_s"] == 0


@pytest.mark.parametrize("compensate", [False, True])
def test_frames_are_float32_stamped_with_their_first_output_sample(compensate: bool) -> None:
    """Frames of 16 samples at t_device = 5 + a / 160: each output frame's t_device is the time
    of its first sample on the output grid (5 + k / 250 for output k), close() emits the tail of
    a compensated stream, and the data is SciPy's (upfirdn causal, resample_poly compensated)
    rounded to float32."""
    x = recording_uv(edf_files()[0])[:, :3000]
    node, _ = make(250.0, compensate_delay=compensate)
    frames = frames_of(node, x)
    assert [a for a, _ in frames].count(None) == compensate  # the tail, at close
    k = 0
    for _, f in frames:
        assert f.kind is FrameKind.SAMPLES and f.data.dtype == np.float32 and f.data.shape[1] > 0
        assert f.t_device == pytest.approx(5.0 + k / 250.0, abs=1e-9)
        k += f.data.shape[1]
    x64 = x.astype(np.float64)
    if compensate:
        ref = signal.resample_poly(x64, 25, 16, axis=1)
    else:
        ref = signal.upfirdn(reference_taps(25, 16), x64, 25, 16, axis=1)[:, :-(-3000 * 25 // 16)]
    assert k == ref.shape[1] == -(-3000 * 25 // 16)
    np.testing.assert_allclose(np.concatenate([f.data for _, f in frames], axis=1), ref,
                               **FLOAT32)


@pytest.mark.parametrize("compensate", [False, True])
def test_frames_carry_the_origin_of_the_input_they_show(compensate: bool) -> None:
    """An output frame's t_origin_ns is that of the input frame holding the input sample its
    first output k shows, floor(k * 16 / 25) at 160 -> 250 Hz. Causal, that is the frame that
    produced it (no wait added); compensated, the one latency_s (0.064 s, 10.24 input samples)
    before it, so the latency measured downstream includes the wait."""
    x = recording_uv(edf_files()[0])[:4, :3000]
    node, info = make(250.0, channels=4, compensate_delay=compensate)
    k = older = 0
    for a, f in frames_of(node, x):
        j = k * 16 // 25
        assert f.t_origin_ns == 1000 + j - j % 16, (a, k)
        if a is not None:
            assert f.t_origin_ns <= 1000 + a  # never younger than the input that produced it
            older += f.t_origin_ns < 1000 + a
        k += f.data.shape[1]
    assert (older > 0) == compensate
    assert info.extra["latency_s"] == (0.064 if compensate else 0)


def test_reset_repeats_the_same_output() -> None:
    x = recording_uv(edf_files()[0])[:, :2000]
    node, _ = make(128.0)
    first = node.resample(x)
    node.resample(x[:, :37])  # the phase and history now differ from the start
    node.reset()
    np.testing.assert_array_equal(node.resample(x), first)


def test_the_anti_aliasing_filter_keeps_the_band_and_removes_what_would_alias() -> None:
    """160 -> 100 Hz: a 10 Hz sine keeps its amplitude (|gain - 1| < 0.01), a 70 Hz one (which
    would fold onto 30 Hz) is gone (< 0.01: the Kaiser-5 design's stop band is below -40 dB)."""
    t = np.arange(int(20 * SRATE)) / SRATE
    for freq, passes in ((10.0, True), (70.0, False)):
        node, _ = make(100.0, channels=1)
        y = node.resample(np.sin(2 * np.pi * freq * t)[None, :])
        gain = np.sqrt(2 * np.mean(y[0, 200:] ** 2))  # after the 161-tap start-up
        assert (abs(gain - 1) < 0.01) if passes else (gain < 0.01), f"{freq} Hz: gain {gain:.4f}"


def test_a_nan_spoils_only_the_outputs_whose_window_holds_it() -> None:
    """One NaN input sample: the outputs whose FIR window covers it are NaN, on that channel
    only, and the ones after are finite again and equal to a NaN-free run with that sample at 0
    (the filter has no feedback)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 600))
    clean = x.copy()
    clean[1, 300] = 0.0
    x[1, 300] = np.nan
    node, _ = make(100.0, channels=2)
    y = chunked(node, x, rng, 16)
    ref = signal.upfirdn(reference_taps(5, 8), clean, 5, 8, axis=1)[:, :y.shape[1]]
    bad = ~np.isfinite(y)
    assert not bad[0].any() and bad[1].any()
    # output m sees inputs up to (m * 8) // 5 and back 33 of them
    hit = [m for m in range(y.shape[1]) if 0 <= (m * 8) // 5 - 300 < 33]
    assert np.flatnonzero(bad[1]).tolist() == hit
    finite = ~bad
    np.testing.assert_allclose(y[finite], ref[finite], rtol=0, atol=1e-12)


def test_a_frame_with_the_wrong_channel_count_is_refused() -> None:
    node, _ = make(100.0, channels=4)
    with pytest.raises(ValueError, match="frame has 3 channels, the stream has 4"):
        list(node.process("in", Frame(FrameKind.SAMPLES, np.zeros((3, 16), np.float32), 0)))


@pytest.mark.parametrize(("srate", "message"), [
    (127.3, "160 Hz -> 127.3 Hz needs up/down factors above 1000; the nearest rate"),
    (1e6, "up and down factors are limited to 1..1000"),
])
def test_rates_needing_huge_factors_are_refused_on_the_srate_line(srate: float,
                                                                  message: str) -> None:
    text = textwrap.dedent(f"""\
        name: t
        nodes:
          eeg: {{type: synthetic_eeg, channels: 4, srate: 160}}
          rs: {{type: "nodes.resample:Resample",
               srate: {srate}}}
          out: {{type: "null"}}
        edges: ["eeg -> rs -> out"]
        """)
    with pytest.raises(ConfigError) as e:
        graph.build(config.loads(text, "g.yaml"))
    assert str(e.value).startswith("g.yaml:5: node 'rs'") and "field 'srate'" in str(e.value)
    assert message in str(e.value), str(e.value)


def test_a_stream_without_a_rate_is_refused() -> None:
    node = Resample(Resample.Params(srate=100.0), "rs")
    with pytest.raises(StreamMismatch, match="resample needs a regular sampling rate; the "
                                             "stream has none"):
        node.setup({"in": StreamInfo(FrameKind.SAMPLES, 0.0, shape=(4,))})
