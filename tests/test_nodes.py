"""The runtime's own nodes, driven with plain frames (no sockets, no processes)."""

from __future__ import annotations

import numpy as np
import pytest

from devices.recorder import Recorder, read_recording
from devices.synthetic import SyntheticEEG
from nodes.gain import Gain
from pipeline import Frame, FrameKind, StreamInfo, registry
from pipeline.registry import UnknownNodeType

EEG = StreamInfo(FrameKind.SAMPLES, 250.0, ("C3", "C4"), ("uV", "uV"), shape=(2,))


def read_all(src: SyntheticEEG, n: int) -> list[Frame]:
    frames: list[Frame] = []
    while len(frames) < n:
        out = src.read()
        assert out is not None
        frames += [f for _, f in out]
    return frames


def make_source(**params) -> SyntheticEEG:
    src = SyntheticEEG(SyntheticEEG.Params(**params), "eeg")
    src.setup({})
    return src


def test_synthetic_eeg_is_seeded_and_continuous_across_chunks() -> None:
    a = read_all(make_source(channels=3, srate=500, chunk=7, seed=3, speed="max"), 400)
    b = read_all(make_source(channels=3, srate=500, chunk=2800, seed=3, speed="max"), 1)
    assert all(f.data.shape == (3, 7) and f.data.dtype == np.float32 for f in a)
    # the signal does not depend on the chunking: 400 chunks of 7 are one chunk of 2800,
    # across several generation blocks
    np.testing.assert_array_equal(np.hstack([f.data for f in a]), b[0].data)
    # same seed, same noise; another seed differs
    again = read_all(make_source(channels=3, srate=500, chunk=7, seed=3, speed="max"), 400)
    assert all(np.array_equal(x.data, y.data) for x, y in zip(a, again))
    other = read_all(make_source(channels=3, srate=500, chunk=7, seed=4, speed="max"), 1)
    assert not np.array_equal(other[0].data, a[0].data)
    assert [f.t_device for f in a[:5]] == [i * 7 / 500 for i in range(5)]


def test_synthetic_eeg_sine_has_the_configured_frequency_and_amplitude() -> None:
    f = read_all(make_source(channels=1, srate=1000, chunk=1000, freq=12, amplitude=20,
                             noise=0, speed="max"), 1)[0]
    spectrum = np.abs(np.fft.rfft(f.data[0]))
    assert np.argmax(spectrum) == 12  # 1 s of signal: bin k is k Hz
    assert np.max(np.abs(f.data)) == pytest.approx(20, rel=1e-3)


def test_synthetic_eeg_ends_after_max_frames_and_reset_restarts_it() -> None:
    src = make_source(chunk=5, speed="max", max_frames=3)
    first = read_all(src, 3)
    assert src.read() is None
    src.reset()
    assert np.array_equal(read_all(src, 1)[0].data, first[0].data)


def test_realtime_source_returns_nothing_until_a_chunk_is_due() -> None:
    src = make_source(srate=1, chunk=10)  # one frame per 10 s: nothing on the first read
    assert src.read() == []


def test_gain_scales_and_passes_through_at_one() -> None:
    frame = Frame(FrameKind.SAMPLES, np.ones((2, 4), np.float32), 7, 3)
    g = Gain(Gain.Params(gain=-2.5), "g")
    assert g.setup({"in": EEG}) == {"out": EEG}
    [(port, out)] = list(g.process("in", frame))
    assert port == "out" and out.data.dtype == np.float32
    np.testing.assert_array_equal(out.data, -2.5)
    assert (out.t_origin_ns, out.kind) == (7, FrameKind.SAMPLES)
    [(_, same)] = list(Gain(Gain.Params(gain=1), "g").process("in", frame))
    assert same is frame


def test_recorder_round_trips_frames_and_reports_truncation(tmp_path) -> None:
    path = tmp_path / "r.nfr"
    rec = Recorder(Recorder.Params(path=str(path)), "rec")
    rec.setup({"in": EEG})
    rng = np.random.default_rng(0)
    frames = [Frame(FrameKind.SAMPLES, rng.standard_normal((2, 5)).astype(np.float32), 100 + i, i,
                    i * 0.02, {"i": i} if i % 2 else None) for i in range(20)]
    for f in frames:
        assert list(rec.process("in", f)) == []
    rec.close()
    back = read_recording(path)
    assert back.info == EEG and back.node == "rec" and not back.truncated
    assert len(back.frames) == 20 and all(a.same_as(b) for a, b in zip(frames, back.frames))
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # cut inside the last frame's payload
    cut = read_recording(path)
    assert cut.truncated and len(cut.frames) == 19
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a neuroflow recording"):
        read_recording(path)


def test_recorder_that_got_nothing_still_writes_a_valid_file(tmp_path) -> None:
    rec = Recorder(Recorder.Params(path=str(tmp_path / "e.nfr")), "rec")
    rec.setup({"in": EEG})
    rec.close()
    back = read_recording(tmp_path / "e.nfr")
    assert back.frames == [] and not back.truncated


def test_registry_finds_builtins_by_entry_point_and_plugins_by_path() -> None:
    names = registry.registered()
    assert {"synthetic_eeg", "gain", "console", "null", "recorder"} <= set(names)
    assert registry.resolve("gain") is Gain
    assert registry.resolve("nodes.gain:Gain") is Gain
    with pytest.raises(UnknownNodeType, match="not a neuroflow Node"):
        registry.resolve("numpy:ndarray")
    with pytest.raises(UnknownNodeType, match="registered types: .*gain"):
        registry.resolve("nope")


def test_console_prints_every_nth_frame_with_text_payloads(capsys) -> None:
    from devices.console import Console

    con = Console(Console.Params(every=2), "con")
    con.setup({"in": EEG})
    for seq in range(4):
        con.process("in", Frame(FrameKind.CONTROL, np.array(["left"]), 0, seq, meta={"p": 0.9}))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("con: control seq=1 shape=[1]")
    assert lines[0].endswith("['left'] {'p': 0.9}")
