"""recorder to FIF: real EEGMMIDB recordings replayed into it read back with MNE bit for bit, with
their annotations; markers placed by device or host time; dropped frames marked; clear errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import mne
import numpy as np
import pytest

from conftest import edf_files
from devices.eeg_file import EEGFile
from devices.recorder import GAP, Recorder
from pipeline import Frame, FrameKind, ParamError, StreamInfo, StreamMismatch, config, graph
from pipeline.config import ConfigError

SAMPLES = StreamInfo(FrameKind.SAMPLES, 100.0, ("Cz", "Pz"), ("uV", "uV"), shape=(2,),
                     clock="file")
MARKERS = StreamInfo(FrameKind.MARKERS, 0.0, dtype="unicode", clock="file")


def recorder(path: Path, **params: object) -> Recorder:
    return Recorder(Recorder.Params(path=str(path), **params), "rec")


def read_fif(path: Path) -> mne.io.BaseRaw:
    return mne.io.read_raw_fif(path, preload=True, verbose="error")


def assert_same_annotations(back: mne.Annotations, onset_s: np.ndarray, descriptions: list[str],
                            durations: np.ndarray, srate: float) -> None:
    """Same description, onset at the same sample, same duration. FIF stores onset and
    onset + duration as float32, so a duration read back is off by at most one float32 spacing
    at its end time."""
    assert list(back.description) == descriptions
    np.testing.assert_array_equal(np.rint(back.onset * srate), np.rint(onset_s * srate))
    end = np.float32(np.max(onset_s + durations, initial=0.0))
    np.testing.assert_allclose(back.duration, durations, rtol=0, atol=np.spacing(end))


def test_real_recordings_replayed_into_fif_read_back_bit_exact_with_their_annotations(
        tmp_path: Path) -> None:
    for path in edf_files():
        src = EEGFile(EEGFile.Params(path=str(path), speed="max", chunk=13), "eeg")
        info = src.setup({})
        rec = recorder(tmp_path / f"{path.stem}_raw.fif")
        rec.setup({"in": info["out"], "markers": info["markers"]})
        sent = []
        while (frames := src.read()) is not None:
            for port, frame in frames:
                sent += [frame.data] if port == "out" else []
                assert list(rec.process("in" if port == "out" else "markers", frame)) == []
        rec.close()
        back = read_fif(tmp_path / f"{path.stem}_raw.fif")
        edf = mne.io.read_raw_edf(path, preload=True, verbose="error")
        carried = np.concatenate(sent, axis=1)
        np.testing.assert_array_equal(carried, (edf.get_data() * 1e6).astype(np.float32))
        got = back.get_data(units="uV").astype(np.float32)
        assert got.tobytes() == carried.tobytes(), path.name  # bit for bit, -0.0 included
        assert back.ch_names == edf.ch_names and back.info["sfreq"] == 160.0
        assert set(back.get_channel_types()) == {"eeg"}
        ann = edf.annotations
        assert_same_annotations(back.annotations, ann.onset, list(ann.description), ann.duration,
                                160.0)
        assert rec.figures() == {"samples": edf.n_times, "dropped_samples": 0, "gaps": 0,
                                 "markers": len(ann), "markers_outside": 0}


def samples(k: int, n: int, t_origin_ns: int = 0) -> Frame:
    """The k-th chunk of n samples of a 2-channel 100 Hz stream, seq k, t_device k * n / 100."""
    data = np.arange(k * n, (k + 1) * n, dtype=np.float32) * np.array([[1.0], [-0.5]], np.float32)
    return Frame(FrameKind.SAMPLES, data, t_origin_ns, k, t_device=k * n / 100.0)


def marker(text: str, t_device: float | None, t_origin_ns: int = 0, **meta: object) -> Frame:
    return Frame(FrameKind.MARKERS, np.array([text]), t_origin_ns, t_device=t_device,
                 meta=meta or None)


def test_dropped_frames_are_counted_marked_and_later_markers_stay_on_their_sample(
        tmp_path: Path) -> None:
    rec = recorder(tmp_path / "gap_raw.fif")
    rec.setup({"in": SAMPLES, "markers": MARKERS})
    for k in (0, 1, 3, 4):  # chunk 2 (samples 20..29) was dropped on the way in
        rec.process("in", samples(k, 10))
    rec.process("markers", marker("before", 0.15, duration=0.1))
    rec.process("markers", marker("after", 0.42))   # file sample 42 -> recorded sample 32
    rec.process("markers", marker("late", 0.70))    # recorded sample 60 of 40: counted
    rec.close()
    back = read_fif(tmp_path / "gap_raw.fif")
    expected = np.concatenate([samples(k, 10).data for k in (0, 1, 3, 4)], axis=1)
    assert back.get_data(units="uV").astype(np.float32).tobytes() == expected.tobytes()
    assert_same_annotations(back.annotations, np.array([0.15, 0.20, 0.32]),  # MNE sorts by onset
                            ["before", GAP, "after"], np.array([0.1, 0.0, 0.0]), 100.0)
    figures = rec.figures()
    assert (figures["gaps"], figures["markers"], figures["markers_outside"]) == (1, 3, 1)


def test_markers_on_another_clock_are_placed_by_host_time(tmp_path: Path) -> None:
    rec = recorder(tmp_path / "host_raw.fif")
    rec.setup({"in": SAMPLES, "markers": MARKERS.replace(clock="lsl")})
    t0 = 5_000_000_000
    for k in range(5):
        rec.process("in", samples(k, 10, t0 + k * 100_000_000))
    # its t_device (another clock) is ignored. A chunk's t_origin_ns is when its newest sample
    # was read: chunk 2 (samples 20..29) at t0 + 200 ms, so a cue 50 ms later is sample 34
    rec.process("markers", marker("cue", 1234.5, t0 + 250_000_000))
    rec.close()
    ann = read_fif(tmp_path / "host_raw.fif").annotations
    assert_same_annotations(ann, np.array([0.34]), ["cue"], np.array([0.0]), 100.0)


def test_markers_stay_on_their_sample_when_the_device_runs_off_its_nominal_rate(
        tmp_path: Path) -> None:
    # the device says 100 Hz but runs at 99 Hz: its chunks' t_device advance 10/99 s each. A
    # marker at sample 500's device time must land on sample 500, not on 500 * 100/99 = 505
    rec = recorder(tmp_path / "drift_raw.fif")
    rec.setup({"in": SAMPLES, "markers": MARKERS})
    for k in range(60):
        chunk = samples(k, 10)
        rec.process("in", Frame(FrameKind.SAMPLES, chunk.data, 0, k, t_device=k * 10 / 99.0))
    rec.process("markers", marker("cue", 50 * 10 / 99.0))
    rec.close()
    ann = read_fif(tmp_path / "drift_raw.fif").annotations
    assert_same_annotations(ann, np.array([5.00]), ["cue"], np.array([0.0]), 100.0)


def test_samples_past_max_duration_are_counted_not_written(tmp_path: Path) -> None:
    rec = recorder(tmp_path / "cap_raw.fif.gz", max_duration=0.25)
    rec.setup({"in": SAMPLES})
    for k in range(4):
        rec.process("in", samples(k, 10))
    rec.close()
    back = read_fif(tmp_path / "cap_raw.fif.gz")
    assert back.n_times == 25 and rec.figures()["dropped_samples"] == 15
    expected = np.concatenate([samples(k, 10).data for k in range(4)], axis=1)[:, :25]
    assert back.get_data(units="uV").astype(np.float32).tobytes() == expected.tobytes()


def test_channels_in_other_units_are_misc_and_keep_their_values(tmp_path: Path) -> None:
    rec = recorder(tmp_path / "units_raw.fif")
    rec.setup({"in": SAMPLES.replace(units=("mV", "K"))})
    rec.process("in", samples(0, 10))
    rec.close()
    back = read_fif(tmp_path / "units_raw.fif")
    assert back.get_channel_types() == ["eeg", "misc"]
    # volts / cal gives back the stream's numbers whatever the unit (units="mV" would multiply by
    # 1e3, and float32(1e-3) is 4.7e-8 off, relative: more than half a float32 spacing)
    cal = np.array([[ch["cal"]] for ch in back.info["chs"]])
    assert back.info["chs"][0]["cal"] == np.float32(1e-3) and back.info["chs"][1]["cal"] == 1.0
    x = samples(0, 10).data
    assert (back.get_data() / cal).astype(np.float32).tobytes() == x.tobytes()


def test_a_fif_recorder_that_got_no_samples_says_so_naming_the_file(tmp_path: Path) -> None:
    rec = recorder(tmp_path / "none_raw.fif")
    rec.setup({"in": SAMPLES})
    with pytest.raises(RuntimeError, match="none_raw.fif: no samples arrived"):
        rec.close()


def test_unknown_extension_is_a_param_error_on_path(tmp_path: Path) -> None:
    with pytest.raises(ParamError) as e:
        recorder(tmp_path / "out.edf").setup({"in": SAMPLES})
    assert e.value.field == "path" and "out.edf" in str(e.value) and ".fif" in str(e.value)
    text = textwrap.dedent("""\
        name: t
        nodes:
          eeg: {type: synthetic_eeg}
          rec: {type: recorder,
                path: out.csv}
        edges: ["eeg -> rec"]
        """)
    with pytest.raises(ConfigError, match=r"^g.yaml:5: node 'rec' \(recorder\): field 'path'"):
        graph.build(config.loads(text, "g.yaml"))


def test_a_fif_recorder_refuses_streams_that_are_not_samples(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        name: t
        nodes:
          eeg: {type: synthetic_eeg, srate: 100}
          win: {type: window, length: 0.5, step: 0.5}
          rec: {type: recorder, path: out.fif}
        edges: ["eeg -> win -> rec"]
        """)
    with pytest.raises(ConfigError) as e:
        graph.build(config.loads(text, "g.yaml"))
    msg = str(e.value)
    assert msg.startswith("g.yaml:5: node 'rec' (recorder) cannot take win.out -> rec.in")
    assert "holds a samples stream on 'in', not tensor; record it as .nfr" in msg
    rec = recorder(tmp_path / "out.fif")
    with pytest.raises(StreamMismatch, match="'markers' takes a markers stream, not samples"):
        rec.setup({"in": SAMPLES, "markers": SAMPLES})
    with pytest.raises(StreamMismatch, match="regular sampling rate"):
        rec.setup({"in": SAMPLES.replace(srate=0.0)})
    with pytest.raises(StreamMismatch, match="one stream"):
        recorder(tmp_path / "out.nfr").setup({"in": SAMPLES, "markers": MARKERS})


@pytest.mark.slow
def test_replay_through_real_processes_into_fif_keeps_samples_and_annotations(run_graph) -> None:
    path = edf_files()[0]
    g = run_graph(f"""\
        name: to-fif
        nodes:
          eeg: {{type: eeg_file, path: "{path}", speed: max, chunk: 16}}
          rec: {{type: recorder, path: rec_raw.fif}}
        edges:
          - {{chain: eeg -> rec, policy: lossless}}
          - {{chain: eeg.markers -> rec.markers, policy: lossless}}
        """)
    assert g.finish() == 0, g.stderr
    back = read_fif(g.graph.parent / "rec_raw.fif")
    edf = mne.io.read_raw_edf(path, preload=True, verbose="error")
    expected = (edf.get_data() * 1e6).astype(np.float32)
    assert back.get_data(units="uV").astype(np.float32).tobytes() == expected.tobytes()
    ann = edf.annotations
    assert_same_annotations(back.annotations, ann.onset, list(ann.description), ann.duration,
                            160.0)
