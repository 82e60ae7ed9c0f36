"""eeg_file: real recordings replayed sample-exact, annotations as markers at their sample, and
a clear error for files that are missing, unreadable or cut short."""

from __future__ import annotations

import textwrap
from pathlib import Path

import mne
import numpy as np
import pytest
from scipy import signal

from conftest import edf_files
from devices.eeg_file import EEGFile
from devices.recorder import read_recording
from nodes.filters import Bandpass, Notch
from pipeline import Frame, FrameKind, ParamError, StreamInfo, config, graph
from pipeline.config import ConfigError




def source(path: Path | str, **params: object) -> tuple[EEGFile, dict[str, StreamInfo]]:
    node = EEGFile(EEGFile.Params(path=str(path), speed="max", **params), "eeg")
    return node, node.setup({})


def replay(node: EEGFile, max_reads: int = 1_000_000) -> list[tuple[str, Frame]]:
    out: list[tuple[str, Frame]] = []
    for _ in range(max_reads):
        got = node.read()
        if got is None:
            break
        out += got
    return out


def annotations_at_samples(path: Path) -> list[tuple[int, str]]:
    """The file's annotations as (sample, description), straight from MNE."""
    raw = mne.io.read_raw_edf(path, verbose="error")
    events, ids = mne.events_from_annotations(raw, event_id=lambda d: hash(d) % 1000 + 1,
                                              verbose="error")
    names = {v: k for k, v in ids.items()}
    return [(int(s), names[c]) for s, _, c in events]


def test_every_real_edf_replays_sample_exact_with_every_annotation_at_its_sample() -> None:
    for path in edf_files():
        node, info = source(path, chunk=13)  # a chunk that divides nothing: markers fall inside
        frames = replay(node)
        samples = [f for p, f in frames if p == "out"]
        x = np.concatenate([f.data for f in samples], axis=1)
        raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
        np.testing.assert_array_equal(x, (raw.get_data() * 1e6).astype(np.float32))
        assert info["out"].channel_names == tuple(raw.ch_names) and info["out"].srate == 160.0
        assert [f.t_device for f in samples] == [k * 13 / 160.0 for k in range(len(samples))]
        markers = [(f.meta["sample"], str(f.data[0])) for p, f in frames if p == "markers"]
        assert markers == annotations_at_samples(path), path.name
        assert len(markers) == 30  # the dataset's README: 30 cues per run
        # each marker comes right after the chunk that holds its sample, with its own time
        last_chunk_end = 0
        for p, f in frames:
            if p == "out":
                last_chunk_end = round(f.t_device * 160) + f.data.shape[1]
            else:
                assert last_chunk_end - 13 <= f.meta["sample"] < last_chunk_end
                assert f.t_device == f.meta["sample"] / 160.0


def test_a_fif_copy_replays_like_the_edf_it_was_made_from(tmp_path: Path) -> None:
    # the reader is MNE's, chosen by extension: the same samples and cues from another format
    edf = edf_files()[3]
    raw = mne.io.read_raw_edf(edf, preload=True, verbose="error")
    raw.save(tmp_path / "copy_raw.fif", fmt="double", verbose="error")
    frames = replay(source(tmp_path / "copy_raw.fif", chunk=16)[0])
    x = np.concatenate([f.data for p, f in frames if p == "out"], axis=1)
    np.testing.assert_array_equal(x, (raw.get_data() * 1e6).astype(np.float32))
    markers = [(f.meta["sample"], str(f.data[0])) for p, f in frames if p == "markers"]
    assert markers == annotations_at_samples(edf)


def test_a_session_of_several_runs_replays_back_to_back_as_mne_joins_them(tmp_path: Path) -> None:
    runs = [p for p in edf_files() if p.name.startswith("S002")]
    assert len(runs) == 3
    node = EEGFile(EEGFile.Params(path=[str(p) for p in runs], speed="max", chunk=50), "eeg")
    node.setup({})
    frames = replay(node)
    x = np.concatenate([f.data for p, f in frames if p == "out"], axis=1)
    raws = [mne.io.read_raw_edf(p, preload=True, verbose="error") for p in runs]
    np.testing.assert_array_equal(x, np.concatenate([(r.get_data() * 1e6).astype(np.float32)
                                                     for r in raws], axis=1))
    # every run's cues, shifted by the runs before it; MNE marks each join (two boundaries)
    expected, offset = [], 0
    for p, r in zip(runs, raws):
        expected += [(s + offset, d) for s, d in annotations_at_samples(p)]
        offset += r.n_times
    markers = [(f.meta["sample"], str(f.data[0])) for p, f in frames if p == "markers"]
    assert [m for m in markers if "boundary" not in m[1]] == expected
    joins = [raws[0].n_times, raws[0].n_times + raws[1].n_times]
    assert sorted(s for s, d in markers if d == "BAD boundary") == joins
    # runs that cannot be joined, and XDF, are config errors
    other = tmp_path / "fewer_raw.fif"
    raws[0].copy().pick(["C3..", "C4.."]).save(other, verbose="error")
    for paths, words in (([str(runs[0]), str(other)], "cannot be joined"),
                         ([str(runs[0]), "x.xdf"], "one at a time"), ([], "empty")):
        with pytest.raises(ParamError) as e:
            EEGFile(EEGFile.Params(path=paths, speed="max"), "eeg").setup({})
        assert e.value.field == "path" and words in str(e.value)


def test_loop_starts_again_with_times_still_increasing() -> None:
    path = edf_files()[0]
    node, _ = source(path, chunk=1000, loop=True)
    n = mne.io.read_raw_edf(path, verbose="error").n_times
    frames = replay(node, max_reads=2 * (n // 1000 + 1) + 2)
    t = [f.t_device for p, f in frames if p == "out"]
    assert np.all(np.diff(t) > 0) and t[-1] > n / 160.0
    samples = [f.meta["sample"] for p, f in frames if p == "markers"]
    assert len(samples) > 30 and samples[30] == n + samples[0]


def test_picks_by_name_and_type_with_a_clear_error_listing_the_channels() -> None:
    path = edf_files()[0]
    _, info = source(path, picks=["C3..", "Cz..", "C4.."])
    assert info["out"].channel_names == ("C3..", "Cz..", "C4..") and info["out"].shape == (3,)
    _, info = source(path, picks=["C3", "Cz"], standardize=True)
    assert info["out"].channel_names == ("C3", "Cz")
    with pytest.raises(ParamError) as e:
        source(path, picks=["C3"])
    assert e.value.field == "picks" and str(path) in str(e.value) and "C3.." in str(e.value)


def test_a_truncated_file_is_refused_naming_the_file_unless_allowed(tmp_path: Path) -> None:
    path = edf_files()[0]
    cut = tmp_path / "cut.edf"
    cut.write_bytes(path.read_bytes()[:1_500_000])
    with pytest.raises(ParamError) as e:
        source(cut)
    assert e.value.field == "path" and str(cut) in str(e.value) and "truncated" in str(e.value)
    node, _ = source(cut, allow_truncated=True)
    x = np.concatenate([f.data for p, f in replay(node) if p == "out"], axis=1)
    assert 0 < x.shape[1] < 20000 and np.isfinite(x).all()


@pytest.mark.parametrize("content", [b"", b"0       garbage that is not an EDF header" * 3])
def test_unreadable_and_missing_files_are_config_errors_naming_the_file(tmp_path: Path,
                                                                        content: bytes) -> None:
    bad = tmp_path / "bad.edf"
    bad.write_bytes(content)
    for path, problem in ((bad, "cannot be read as EEG"), (tmp_path / "none.edf", "no such file")):
        text = textwrap.dedent(f"""\
            name: t
            nodes:
              eeg: {{type: eeg_file,
                    path: "{path}"}}
              out: {{type: "null"}}
            edges: ["eeg -> out"]
            """)
        with pytest.raises(ConfigError) as e:
            graph.build(config.loads(text, "g.yaml"))
        msg = str(e.value)
        assert msg.startswith("g.yaml:4: node 'eeg' (eeg_file): field 'path'") and str(path) in msg
        assert problem in msg, msg


def filtered_offline(x: np.ndarray, *nodes: Bandpass | Notch) -> np.ndarray:
    """Offline reference of a filter chain: each stage SciPy's sosfilt of the whole signal in
    float64, rounded to float32 between stages as the frames are."""
    for node in nodes:
        x = signal.sosfilt(node.sos, x.astype(np.float64), axis=-1).astype(np.float32)
    return x


def test_every_real_edf_through_bandpass_and_notch_equals_offline_filtering() -> None:
    """The acceptance chain, driven in-process over all 51 recordings (the process version is
    below on one file): float32 frames equal the offline float64 result rounded to float32."""
    for path in edf_files():
        src, info = source(path, chunk=16)
        band = Bandpass(Bandpass.Params(low=8, high=30), "band")
        notch = Notch(Notch.Params(freqs=[60]), "notch")
        notch.setup({"in": band.setup({"in": info["out"]})["out"]})
        out = []
        for port, frame in replay(src):
            if port == "out":
                [(_, f1)] = band.process("in", frame)
                [(_, f2)] = notch.process("in", f1)
                out.append(f2.data)
        raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
        ref = filtered_offline((raw.get_data() * 1e6).astype(np.float32), band, notch)
        np.testing.assert_array_max_ulp(np.concatenate(out, axis=1), ref, maxulp=1)


@pytest.mark.slow
def test_replay_through_real_processes_records_the_filtered_signal_and_markers(run_graph) -> None:
    path = edf_files()[0]
    g = run_graph(f"""\
        name: replay
        nodes:
          eeg: {{type: eeg_file, path: "{path}", speed: max, chunk: 16}}
          band: {{type: bandpass, low: 8, high: 30}}
          notch: {{type: notch, freqs: 60}}
          rec: {{type: recorder, path: filtered.nfr}}
          marks: {{type: recorder, path: markers.nfr}}
        edges:
          - {{chain: eeg -> band -> notch -> rec, policy: lossless}}
          - {{chain: eeg.markers -> marks, policy: lossless}}
        """)
    assert g.finish() == 0, g.stderr
    folder = g.graph.parent
    frames = read_recording(folder / "filtered.nfr").frames
    assert [f.seq for f in frames] == list(range(len(frames)))
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    band, notch = Bandpass(Bandpass.Params(low=8, high=30)), Notch(Notch.Params(freqs=[60]))
    info = StreamInfo(FrameKind.SAMPLES, 160.0, shape=(64,))
    band.setup({"in": info}), notch.setup({"in": info})
    ref = filtered_offline((raw.get_data() * 1e6).astype(np.float32), band, notch)
    np.testing.assert_array_max_ulp(np.concatenate([f.data for f in frames], axis=1), ref, maxulp=1)
    marks = read_recording(folder / "markers.nfr").frames
    assert [(f.meta["sample"], str(f.data[0])) for f in marks] == annotations_at_samples(path)
