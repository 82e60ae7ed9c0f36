"""Streaming filters: chunked output equals offline filtering of the whole real recording."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from scipy import signal

from nodes.filters import Bandpass, Highpass, Lowpass, Notch, StreamFilter
from pipeline import Frame, FrameKind, StreamInfo, StreamMismatch, config, graph
from pipeline.config import ConfigError
from conftest import edf_files, random_chunks, recording_uv

SRATE = 160.0


def make(cls: type[StreamFilter], channels: int, srate: float = SRATE, **params: object) -> StreamFilter:
    node = cls(cls.Params(**params), "f")
    info = StreamInfo(FrameKind.SAMPLES, srate, shape=(channels,))
    assert node.setup({"in": info}) == {"out": info}
    return node


def offline(node: StreamFilter, x: np.ndarray) -> np.ndarray:
    """The whole signal filtered at once by SciPy with the node's own coefficients."""
    x = x.astype(np.float64)
    if node.sos is not None:
        return signal.sosfilt(node.sos, x, axis=-1)
    for h in node.taps:
        x = signal.lfilter(h, 1.0, x, axis=-1)
    return x


def chunked(node: StreamFilter, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x`` through ``node.filter`` in chunks of random length 1..64 (float64 out)."""
    return np.concatenate([node.filter(x[:, a:b]) for a, b in random_chunks(x.shape[1], rng, 64)],
                          axis=1)


FILTERS = [
    (Bandpass, {"low": 8.0, "high": 30.0}),
    (Highpass, {"low": 1.0, "order": 2}),
    (Lowpass, {"high": 40.0, "ftype": "cheby1"}),
    (Notch, {"freqs": 60.0}),
    (Bandpass, {"low": 8.0, "high": 30.0, "method": "fir"}),
    (Notch, {"freqs": [20.0], "harmonics": True, "method": "fir", "trans_bandwidth": 0.5}),
]


def test_chunked_filtering_equals_offline_on_every_real_recording() -> None:
    """Every EDF of the shared EEGMMIDB set through every IIR filter, and the first three through
    the (slower) FIR ones, cut at random chunk boundaries: |chunked - offline| <= 1e-10 µV
    (float64; signals are ~10-100 µV, so ~1e-12 relative)."""
    rng = np.random.default_rng(0)
    worst = 0.0
    for i, path in enumerate(edf_files()):
        x = recording_uv(path)
        for cls, params in FILTERS if i < 3 else [f for f in FILTERS if "method" not in f[1]]:
            node = make(cls, x.shape[0], **params)
            ref = offline(node, x)
            got = chunked(node, x, rng)
            err = float(np.max(np.abs(got - ref)))
            assert err <= 1e-10, f"{path.name} {cls.type_name} {params}: {err}"
            worst = max(worst, err)


def test_reset_returns_to_the_state_after_setup() -> None:
    x = recording_uv(edf_files()[0])[:, :2000]
    node = make(Bandpass, x.shape[0])
    first = node.filter(x)
    node.filter(x)  # state now differs from the start
    node.reset()
    np.testing.assert_array_equal(node.filter(x), first)


@pytest.mark.parametrize(("cls", "params", "passes", "stops"), [
    (Bandpass, {"low": 8.0, "high": 30.0}, [12.0, 20.0], [2.0, 60.0]),
    (Highpass, {"low": 5.0}, [20.0, 60.0], [0.5]),
    (Lowpass, {"high": 20.0}, [2.0, 10.0], [50.0, 70.0]),
    (Notch, {"freqs": [60.0]}, [10.0, 40.0], [60.0]),
    (Bandpass, {"low": 8.0, "high": 30.0, "method": "fir"}, [15.0, 20.0], [1.0, 60.0]),
])
def test_the_designed_response_is_applied(cls: type[StreamFilter], params: dict, passes: list[float],
                                          stops: list[float]) -> None:
    """Steady-state gain of sines: ~1 in the pass band (|gain - 1| < 0.1, the ripple and edge
    roll-off of a 4th-order design), < 0.1 (-20 dB) in the stop band."""
    t = np.arange(int(20 * SRATE)) / SRATE
    for freq, want_pass in [(f, True) for f in passes] + [(f, False) for f in stops]:
        node = make(cls, 1, **params)
        y = chunked(node, np.sin(2 * np.pi * freq * t)[None, :], np.random.default_rng(0))
        gain = np.sqrt(2 * np.mean(y[0, -int(5 * SRATE):] ** 2))  # last 5 s: transient gone
        if want_pass:
            assert abs(gain - 1) < 0.1, f"{cls.type_name} {freq} Hz: gain {gain:.3f}"
        else:
            assert gain < 0.1, f"{cls.type_name} {freq} Hz: gain {gain:.3f}"


def test_frames_in_frames_out_float32_with_the_same_header() -> None:
    x = recording_uv(edf_files()[0])[:, :160]
    node = make(Bandpass, x.shape[0])
    frame = Frame(FrameKind.SAMPLES, x, 123, seq=4, t_device=1.5)
    [(port, out)] = list(node.process("in", frame))
    assert port == "out" and out.data.dtype == np.float32 and out.data.shape == x.shape
    assert (out.t_origin_ns, out.t_device) == (123, 1.5)
    np.testing.assert_array_equal(out.data, offline(node, x).astype(np.float32))


def test_a_nan_burst_spoils_its_chunk_only() -> None:
    """NaN in, NaN out for that chunk; then the channel restarts from zero state instead of
    staying NaN for ever, so it equals a fresh filter started on the next chunk."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 800))
    node = make(Bandpass, 4)
    node.filter(x[:, :400])
    burst = x[:, 400:416].copy()
    burst[1, 5] = np.nan
    y = node.filter(burst)
    assert np.isnan(y[1, 5:]).all() and np.isfinite(y[[0, 2, 3]]).all()
    assert node.nan_resets == 1
    after = node.filter(x[:, 416:])
    fresh = make(Bandpass, 1)
    np.testing.assert_allclose(after[1], fresh.filter(x[1:2, 416:])[0], rtol=0, atol=1e-12)
    assert np.isfinite(after).all()


def test_a_frame_with_the_wrong_channel_count_is_refused_and_the_state_kept() -> None:
    node = make(Lowpass, 4)
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    ref = make(Lowpass, 4)
    with pytest.raises(ValueError, match="frame has 3 channels, the stream has 4"):
        list(node.process("in", Frame(FrameKind.SAMPLES, x[:3], 0)))
    np.testing.assert_array_equal(node.filter(x), ref.filter(x))


def test_a_stream_without_a_rate_is_refused_naming_the_filter() -> None:
    with pytest.raises(StreamMismatch, match="notch needs a regular sampling rate; the stream "
                                             "has none"):
        Notch(Notch.Params(), "f").setup({"in": StreamInfo(FrameKind.SAMPLES, 0.0, shape=(4,))})


def test_initial_first_starts_without_a_step() -> None:
    """A constant signal through a low-pass started from its first sample's steady state comes out
    constant (DC gain 1) from the first sample; from zero state it rises like a step response."""
    x = np.full((2, 200), 50.0)
    steady = make(Lowpass, 2, high=10.0, initial="first").filter(x)
    np.testing.assert_allclose(steady, x, rtol=1e-9)
    assert abs(make(Lowpass, 2, high=10.0).filter(x)[0, 0]) < 5.0
    fir = make(Lowpass, 2, high=10.0, method="fir", initial="first").filter(x)
    np.testing.assert_allclose(fir, x * make(Lowpass, 2, high=10.0, method="fir").taps[0].sum(),
                               rtol=1e-9)


@pytest.mark.parametrize(("node", "line", "field", "message"), [
    ("{type: bandpass, low: 8,\n        high: 90}", 5, "high", "90 Hz must be between 0 and Nyquist (80 Hz"),
    ("{type: bandpass, low: 30, high: 8}", 4, "high", "high (8 Hz) must be above low (30 Hz)"),
    ("{type: notch,\n        freqs: [79.5]}", 5, "freqs", "80.5 Hz must be between 0 and Nyquist"),
    ("{type: highpass, low: 0}", 4, "low", "greater than 0"),
])
def test_impossible_frequencies_name_the_line_node_and_field(node: str, line: int, field: str,
                                                             message: str) -> None:
    text = textwrap.dedent(f"""\
        name: t
        nodes:
          eeg: {{type: synthetic_eeg, channels: 4, srate: 160}}
          f: {node}
          out: {{type: "null"}}
        edges: ["eeg -> f -> out"]
        """)
    with pytest.raises(ConfigError) as e:
        graph.build(config.loads(text, "g.yaml"))
    assert str(e.value).startswith(f"g.yaml:{line}: node 'f'"), str(e.value)
    assert f"field '{field}'" in str(e.value) and message in str(e.value), str(e.value)
