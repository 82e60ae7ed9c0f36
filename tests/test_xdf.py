"""XDF: real recordings written with our writer are read by pyxdf (the reference reader) and
replayed by eeg_file sample-exact with their markers; the recorder writes XDF that pyxdf reads."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest
import pyxdf

from conftest import edf_files, recording_uv
from devices.recorder import Recorder
from devices.xdf import XDFWriter, stream_header
from pipeline import Frame, FrameKind, ParamError, StreamInfo
from test_eeg_file import annotations_at_samples, replay, source

T0 = 5000.0  # an LSL clock reading: XDF stamps are LSL times, not seconds from the start


def write_as_xdf(edf: Path, out: Path, marker_jitter: float = 0.0, cut: int = 0) -> Path:
    """``edf`` as LabRecorder would have recorded it: a 64-channel EEG stream in µV, a 3-axis
    50 Hz stream beside it, and the annotations as a string stream (stamped ``marker_jitter``
    periods after their sample). ``cut`` bytes are then removed from the end of the file."""
    raw = mne.io.read_raw_edf(edf, verbose="error")
    x, srate = recording_uv(edf), raw.info["sfreq"]
    w = XDFWriter(out)
    w.add_stream(1, stream_header("accel", "Accel", "float32", 50.0, ["x", "y", "z"]))
    w.add_stream(7, stream_header("amp", "EEG", "float32", srate, raw.ch_names,
                                  ["microvolts"] * len(raw.ch_names)))
    w.add_stream(9, stream_header("cues", "Markers", "string", 0.0, channel_count=1))
    stamps = T0 + np.arange(x.shape[1]) / srate
    for a in range(0, x.shape[1], 512):  # chunks as a recorder gets them
        w.write(7, x[:, a:a + 512].T, stamps[a:a + 512])
    w.write(1, np.zeros((100, 3), np.float32), T0 + np.arange(100) / 50.0)
    for sample, text in annotations_at_samples(edf):
        w.write(9, [[text]], np.array([stamps[sample] + marker_jitter / srate]))
    w.close()
    if cut:
        data = out.read_bytes()
        out.write_bytes(data[:len(data) - cut])
    return out


def test_real_recordings_as_xdf_replay_sample_exact_with_markers_at_their_sample(
        tmp_path: Path) -> None:
    for edf in edf_files()[::10]:  # 6 recordings: each file is written, then parsed by pyxdf
        xdf = write_as_xdf(edf, tmp_path / f"{edf.stem}.xdf", marker_jitter=0.3)
        node, info = source(xdf, chunk=13)
        frames = replay(node)
        x = np.concatenate([f.data for p, f in frames if p == "out"], axis=1)
        np.testing.assert_array_equal(x, recording_uv(edf))  # bit-exact, in µV
        assert info["out"].units == ("uV",) * 64 and info["out"].srate == 160.0
        assert info["out"].channel_names == tuple(mne.io.read_raw_edf(edf, verbose="error").ch_names)
        # markers stamped 0.3 periods late still land on their sample (the nearest one)
        markers = [(f.meta["sample"], str(f.data[0])) for p, f in frames if p == "markers"]
        assert markers == annotations_at_samples(edf), edf.name


def test_the_stream_to_replay_is_chosen_by_name_or_type(tmp_path: Path) -> None:
    xdf = write_as_xdf(edf_files()[0], tmp_path / "two.xdf")
    _, info = source(xdf, stream="Accel")
    assert info["out"].channel_names == ("x", "y", "z") and info["out"].srate == 50.0
    assert info["out"].units == ("NA",) * 3  # no unit declared: not volts, kept as they are
    with pytest.raises(ParamError) as e:
        source(xdf, stream="Gaze")
    assert e.value.field == "stream"
    assert "two.xdf: no stream named or typed 'Gaze' with samples; the file holds:" in str(e.value)
    assert "'amp' (type 'EEG', float32, 20000 samples)" in str(e.value)
    assert "'cues' (type 'Markers', string, 30 samples)" in str(e.value)


def test_a_truncated_xdf_is_refused_unless_allowed_and_then_replays_what_it_holds(
        tmp_path: Path) -> None:
    edf = edf_files()[0]
    xdf = write_as_xdf(edf, tmp_path / "cut.xdf", cut=20_000)  # the footers and the last samples
    with pytest.raises(ParamError, match="truncated or corrupt") as e:
        source(xdf)
    assert e.value.field == "path" and "cut.xdf" in str(e.value)
    node, _ = source(xdf, allow_truncated=True)
    x = np.concatenate([f.data for p, f in replay(node) if p == "out"], axis=1)
    assert 0 < x.shape[1] < 20_000
    np.testing.assert_array_equal(x, recording_uv(edf)[:, :x.shape[1]])


def test_a_file_that_is_not_xdf_names_the_file_and_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "noise.xdf"
    bad.write_bytes(b"XDF:" + bytes(range(256)) * 4)
    with pytest.raises(ParamError, match="noise.xdf: no stream could be read") as e:
        source(bad)
    assert e.value.field == "path"
    bad.write_bytes(b"EDF+" + bytes(100))  # not even XDF's magic
    with pytest.raises(ParamError, match="noise.xdf: cannot be read as XDF"):
        source(bad)


def test_the_recorder_writes_xdf_that_pyxdf_reads_back_exactly(tmp_path: Path) -> None:
    edf = edf_files()[1]
    node, info = source(edf, chunk=16)
    rec = Recorder(Recorder.Params(path=str(tmp_path / "rec.xdf")), "rec")
    rec.setup({"in": info["out"], "markers": info["markers"]})
    for port, frame in replay(node):
        rec.process("in" if port == "out" else "markers", frame)
    rec.close()
    streams, _ = pyxdf.load_xdf(str(tmp_path / "rec.xdf"), verbose=False)
    eeg = next(s for s in streams if s["info"]["type"][0] == "EEG")
    cues = next(s for s in streams if s["info"]["type"][0] == "Markers")
    np.testing.assert_array_equal(np.asarray(eeg["time_series"]).T, recording_uv(edf))
    assert eeg["info"]["desc"][0]["channels"][0]["channel"][0]["unit"] == ["microvolts"]
    # stamps are the file's own clock (seconds from its first sample): markers at their sample
    expected = annotations_at_samples(edf)
    assert [v[0] for v in cues["time_series"]] == [d for _, d in expected]
    np.testing.assert_allclose(cues["time_stamps"], [s / 160.0 for s, _ in expected], atol=1e-9)
    assert rec.figures() == {"samples": 20000, "markers": 30, "gaps": 0}
    # and the file replays as it was recorded
    back, _ = source(tmp_path / "rec.xdf")
    frames = replay(back)
    np.testing.assert_array_equal(
        np.concatenate([f.data for p, f in frames if p == "out"], axis=1), recording_uv(edf))
    assert [(f.meta["sample"], str(f.data[0])) for p, f in frames if p == "markers"] == expected


def test_an_xdf_recorder_counts_dropped_frames(tmp_path: Path) -> None:
    rec = Recorder(Recorder.Params(path=str(tmp_path / "gap.xdf")), "rec")
    rec.setup({"in": StreamInfo(FrameKind.SAMPLES, 100.0, ("a",), ("uV",), shape=(1,),
                                clock="lsl")})
    for seq in (0, 1, 3):  # frame 2 was lost on a realtime edge
        rec.process("in", Frame(FrameKind.SAMPLES, np.full((1, 10), seq, np.float32), 0,
                                seq=seq, t_device=T0 + seq * 0.1))
    rec.close()
    assert rec.figures()["gaps"] == 1
    (s,), _ = pyxdf.load_xdf(str(tmp_path / "gap.xdf"), verbose=False, dejitter_timestamps=False)
    assert s["time_stamps"][20] == pytest.approx(T0 + 0.3)  # the stamps keep the hole
