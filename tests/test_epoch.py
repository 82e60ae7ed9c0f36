"""epoch: real recordings replayed by eeg_file, cut around their annotations, equal MNE's Epochs —
with markers in order, late, early, shuffled, without their sample number, or on a jittery clock."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest
from scipy import signal

from conftest import edf_files
from devices.eeg_file import EEGFile
from devices.recorder import read_recording
from nodes.epoch import ChunkClock, Epoch
from nodes.resample import Resample
from pipeline import Frame, FrameKind, ParamError, StreamInfo, StreamMismatch

SRATE = 160.0
MI = {"T1": "left", "T2": "right"}


def replay(path: Path, chunk: int = 16) -> tuple[dict[str, StreamInfo], list[tuple[str, Frame]]]:
    """The recording through a real eeg_file source at full speed, ports renamed to epoch's."""
    src = EEGFile(EEGFile.Params(path=str(path), speed="max", chunk=chunk), "eeg")
    info = src.setup({})
    frames = []
    while (got := src.read()) is not None:
        frames += [("in" if port == "out" else "markers", f) for port, f in got]
    return {"in": info["out"], "markers": info["markers"]}, frames


def make(info: dict[str, StreamInfo], **params: object) -> tuple[Epoch, StreamInfo]:
    node = Epoch(Epoch.Params(**params), "ep")
    return node, node.setup(info)["out"]


def drive(node: Epoch, frames: list[tuple[str, Frame]]) -> list[Frame]:
    out = []
    for port, frame in frames:
        for out_port, f in node.process(port, frame):
            assert out_port == "out"
            out.append(f)
    assert list(node.close()) == []
    return out


class Reference:
    """MNE's epochs of a recording: ``mne.Epochs`` on its annotations (the independent truth)."""

    def __init__(self, path: Path, tmin: float, tmax: float, baseline: tuple | None,
                 events: dict[str, str] | None) -> None:
        raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
        found, ids = mne.events_from_annotations(raw, verbose="error")
        wanted = {k: v for k, v in ids.items() if events is None or k in events}
        kept = found[np.isin(found[:, 2], list(wanted.values()))]
        epochs = mne.Epochs(raw, kept, wanted, tmin, tmax, baseline=baseline, preload=True,
                            verbose="error")
        names = {v: k for k, v in wanted.items()}
        self.data = epochs.get_data() * 1e6  # µV, float64
        self.samples = epochs.events[:, 0].tolist()
        self.markers = [names[c] for c in epochs.events[:, 2]]
        self.labels = [m if events is None else events[m] for m in self.markers]
        self.dropped = len(kept) - len(self.samples)
        self.n_times = len(epochs.times)
        self.first = int(round(epochs.times[0] * SRATE))
        self.raw_uv = raw.get_data() * 1e6

    def without(self, sample: int) -> None:
        """Forget the epoch at ``sample``."""
        i = self.samples.index(sample)
        self.data = np.delete(self.data, i, axis=0)
        del self.samples[i], self.markers[i], self.labels[i]

    def check(self, got: list[Frame], name: str) -> None:
        """Same epochs (by marker sample), labels, times and data. Tolerance: our epochs come
        from float32 samples (eeg_file rounds the µV values: <= 1/2 ulp of the epoch's largest
        magnitude M), their baseline mean inherits that error (<= 1/2 ulp(M)) and the result is
        rounded to float32 (<= 1/2 ulp(2M)): at most 2 ulp(M) from MNE's float64 epochs."""
        got = sorted(got, key=lambda f: f.meta["sample"])
        assert [f.meta["sample"] for f in got] == self.samples, name
        assert [f.meta["marker"] for f in got] == self.markers, name
        assert [f.meta["label"] for f in got] == self.labels, name
        for f, s, ref in zip(got, self.samples, self.data):
            start = s + self.first
            assert f.kind is FrameKind.TENSOR and f.data.dtype == np.float32
            assert f.data.shape == (64, self.n_times)
            assert f.t_device == pytest.approx(start / SRATE, abs=1e-9)
            assert f.meta["t_marker"] == pytest.approx(s / SRATE, abs=1e-9)
            biggest = np.abs(self.raw_uv[:, start:start + self.n_times]).max()
            np.testing.assert_allclose(f.data, ref, rtol=0,
                                       atol=2 * np.spacing(np.float32(biggest)),
                                       err_msg=f"{name} epoch at sample {s}")


#: (tmin, tmax, baseline, events): MNE's default window and baseline, a motor-imagery trial,
#: whole 4 s trials of every cue, and bounds that fall between samples (-52.8, 203.2 samples).
CONFIGS = [
    (-0.2, 0.5, (None, 0), None),
    (-0.5, 2.0, (-0.5, 0.0), MI),
    (0.0, 4.0, None, None),
    (-0.33, 1.27, (-0.1, 0.2), MI),
]


@pytest.mark.parametrize(("tmin", "tmax", "baseline", "events"), CONFIGS)
def test_every_epoch_equals_mne_epochs_on_real_recordings(tmin, tmax, baseline, events) -> None:
    """Six recordings (subjects spread over the set) replayed in 16-sample chunks with their
    annotations as eeg_file sends them; what MNE drops (epochs outside the data) is counted."""
    files = edf_files()
    for path in files[::max(1, len(files) // 6)][:6]:
        info, frames = replay(path)
        node, out = make(info, tmin=tmin, tmax=tmax, baseline=baseline, events=events)
        got = drive(node, frames)
        ref = Reference(path, tmin, tmax, baseline, events)
        ref.check(got, path.name)
        assert out.shape == (64, ref.n_times) and out.kind is FrameKind.TENSOR
        assert out.class_names == (("left", "right") if events else ("T0", "T1", "T2"))
        fig = node.figures()
        assert fig["epochs"] == len(got) and fig["pending"] == 0
        assert fig["out_of_range"] + fig["incomplete"] == ref.dropped
        assert fig["ignored"] == (30 - len(got) - ref.dropped) and fig["too_late"] == 0
        # emitted by completion: as soon as the last sample arrived, so in order of it
        last = [f.meta["sample"] + ref.first + ref.n_times - 1 for f in got]
        assert last == sorted(last)


def test_the_first_cue_at_sample_0_is_out_of_range_before_the_stream() -> None:
    """Every EEGMMIDB run starts with a T0 at sample 0: with tmin = -0.2 s its epoch would start
    before the first sample (MNE drops it too)."""
    info, frames = replay(edf_files()[0])
    node, _ = make(info, tmin=-0.2, tmax=0.5)
    drive(node, frames)
    assert node.figures()["out_of_range"] == 1


def held_back(frames: list[tuple[str, Frame]], rng: np.random.Generator, early: int, late: int,
              keep_sample: bool) -> list[tuple[str, Frame]]:
    """Each marker moved between ``early`` chunks before and ``late`` chunks after its place
    (markers then arrive out of order), optionally without ``meta["sample"]``."""
    samples = [f for p, f in frames if p == "in"]
    slots: list[list[Frame]] = [[] for _ in range(len(samples) + 1)]
    k = 0
    for port, f in frames:
        if port == "in":
            k += 1
            continue
        if not keep_sample:
            f = Frame(f.kind, f.data, f.t_origin_ns, t_device=f.t_device)
        slots[int(np.clip(k + rng.integers(-early, late + 1), 0, len(samples)))].append(f)
    out: list[tuple[str, Frame]] = []
    for k, marks in enumerate(slots):
        rng.shuffle(marks)
        out += [("markers", f) for f in marks]
        if k < len(samples):
            out.append(("in", samples[k]))
    return out


@pytest.mark.parametrize("keep_sample", [True, False])
def test_late_early_and_shuffled_markers_give_the_same_epochs(keep_sample: bool) -> None:
    """Markers up to 4 chunks early or 40 chunks (3.25 s at 13 samples) late, shuffled, with or
    without their sample number: the same epochs as MNE's, none lost (max_wait 5 s)."""
    rng = np.random.default_rng(0)
    for path in edf_files()[:3]:
        info, frames = replay(path, chunk=13)
        moved = held_back(frames, rng, early=4, late=40, keep_sample=keep_sample)
        node, _ = make(info, tmin=-0.5, tmax=2.0, baseline=(None, 0), events=MI, max_wait=5.0)
        got = drive(node, moved)
        Reference(path, -0.5, 2.0, (None, 0), MI).check(got, path.name)
        assert node.figures()["too_late"] == 0


def test_markers_on_a_jittery_clock_are_placed_at_the_nearest_sample() -> None:
    """As from LSL: samples and markers on one clock ('lsl', offset 1234.5 s), each chunk
    stamped with up to 0.3 sample of jitter, markers without a sample number, their time that
    of their sample: every marker lands on its own sample, the epochs are MNE's."""
    rng = np.random.default_rng(1)
    path = edf_files()[0]
    info, frames = replay(path, chunk=16)
    info = {port: i.replace(clock="lsl") for port, i in info.items()}
    moved = []
    for port, f in frames:
        jitter = rng.uniform(-0.3, 0.3) / SRATE if port == "in" else 0.0
        moved.append((port, Frame(f.kind, f.data, f.t_origin_ns, t_device=1234.5 + f.t_device
                                  + jitter)))
    node, _ = make(info, tmin=-0.5, tmax=2.0, events=MI)
    got = drive(node, moved)
    for f in got:  # the reference's times are from 0: take the offset back out
        f.t_device -= 1234.5
        f.meta = {**f.meta, "t_marker": f.meta["t_marker"] - 1234.5}
    ref = Reference(path, -0.5, 2.0, None, MI)
    for f in got:  # first-sample times follow the jittered chunk stamps: within 0.3 sample
        assert f.t_device == pytest.approx((f.meta["sample"] + ref.first) / SRATE,
                                           abs=0.31 / SRATE)
        f.t_device = (f.meta["sample"] + ref.first) / SRATE
    ref.check(got, path.name)


def test_chunks_longer_than_the_buffer_still_give_every_epoch() -> None:
    """1000-sample chunks through a 113-sample buffer (max_wait 0), markers sent before the chunk
    holding their sample: each epoch is cut inside the chunk, before the rest overwrites it."""
    path = edf_files()[0]
    info, frames = replay(path, chunk=1000)
    early = held_back(frames, np.random.default_rng(2), early=1, late=-1, keep_sample=True)
    node, out = make(info, tmin=-0.2, tmax=0.5, events=MI, max_wait=0.0)
    assert out.extra["buffer_s"] == 113 / SRATE
    got = drive(node, early)
    Reference(path, -0.2, 0.5, None, MI).check(got, path.name)


def test_epochs_before_the_marker_are_cut_when_it_arrives() -> None:
    """tmax < 0: the epoch has ended when its marker comes (after its chunk, up to 15 samples
    late); max_wait 0.1 s counts from then, so every epoch is still in the buffer."""
    path = edf_files()[0]
    info, frames = replay(path)
    node, _ = make(info, tmin=-1.0, tmax=-0.1, baseline=(None, None), events=MI, max_wait=0.1)
    got = drive(node, frames)
    Reference(path, -1.0, -0.1, (None, None), MI).check(got, path.name)
    assert node.figures()["too_late"] == 0


def test_the_chunk_clock_finds_the_nearest_sample_across_gaps_and_jitter() -> None:
    """10 Hz; chunk 0 (samples 0..9) stamped 0.0 s, chunk 1 (10..19) 2.0 s after a gap, chunk 2
    (20..) stamped 0.02 s early: times map to the nearest sample by a plain reading of those
    stamps."""
    clock = ChunkClock(10.0)
    for start, t in ((0, 0.0), (10, 2.0), (20, 2.98)):
        clock.add(start, t)
    cases = {0.44: 4, 0.96: 9, 1.2: 9, 1.8: 10, 2.31: 13, 2.95: 20, 2.92: 19, 3.5: 25, -0.3: -3}
    assert {t: clock.index_of(t, end=30) for t in cases} == cases
    assert clock.time_of(13) == pytest.approx(2.3) and clock.time_of(25) == pytest.approx(3.48)
    clock.forget(12)  # chunk 0 ends before sample 12: gone; chunk 1 kept
    assert clock.starts == [10, 20] and clock.index_of(2.31, end=30) == 13


def test_a_marker_too_late_for_the_buffer_is_counted_and_one_just_in_time_is_cut() -> None:
    """max_wait 0.5 s: a marker held back 5 s after its own sample (3 s after its epoch's end)
    finds its samples gone: counted too_late, nothing raised. One held back 3 to 4 chunks after
    its epoch's end is cut at once, stamped with the marker's arrival (its t_origin_ns)."""
    path = edf_files()[0]
    info, frames = replay(path)
    marks = [i for i, (p, f) in enumerate(frames) if p == "markers" and str(f.data[0]) in MI]
    lost, kept = frames[marks[2]][1], frames[marks[5]][1]
    late = Frame(kept.kind, kept.data, 777, t_device=kept.t_device, meta=kept.meta)
    rest = [fr for i, fr in enumerate(frames) if i not in (marks[2], marks[5])]
    chunk_at = [i for i, (p, _) in enumerate(rest) if p == "in"]  # position of chunk k in rest
    insert = {chunk_at[lost.meta["sample"] // 16 + 50]: lost,      # 50 chunks = 5 s
              chunk_at[(kept.meta["sample"] + 320) // 16 + 3]: late}
    moved = []
    for i, fr in enumerate(rest):
        moved.append(fr)
        if i in insert:
            moved.append(("markers", insert[i]))
    node, _ = make(info, tmin=-0.5, tmax=2.0, events=MI, max_wait=0.5)
    got = drive(node, moved)
    assert node.figures()["too_late"] == 1 and node.figures()["epochs"] == 14
    [just] = [f for f in got if f.meta["sample"] == kept.meta["sample"]]
    assert just.t_origin_ns == 777
    ref = Reference(path, -0.5, 2.0, None, MI)
    ref.without(lost.meta["sample"])
    ref.check(got, path.name)


def test_markers_before_the_stream_are_out_of_range_and_unfinished_epochs_incomplete() -> None:
    path = edf_files()[0]
    info, frames = replay(path)
    samples = [fr for fr in frames if fr[0] == "in"]
    n = sum(f.data.shape[1] for _, f in samples)
    early = Frame(FrameKind.MARKERS, np.array(["T1"]), 0, t_device=-3.0)
    near_end = Frame(FrameKind.MARKERS, np.array(["T2"]), 0, t_device=(n - 100) / SRATE)
    node, _ = make(info, tmin=-0.5, tmax=2.0, events=MI)
    drive(node, [samples[0], ("markers", early), ("markers", near_end)] + samples[1:-1])
    fig = node.figures()
    assert fig["out_of_range"] == 1 and fig["incomplete"] == 1 and fig["epochs"] == 0
    assert fig["pending"] == 0


def test_markers_without_a_time_or_a_label_are_counted() -> None:
    info, frames = replay(edf_files()[0])
    node, _ = make(info, events=["T1"])
    list(node.process("markers", Frame(FrameKind.MARKERS, np.array(["T1"]), 0)))
    list(node.process("markers", Frame(FrameKind.MARKERS, np.array(["T2", "T0"]), 0, t_device=1.0)))
    fig = node.figures()
    assert fig["unlocated"] == 1 and fig["ignored"] == 2 and fig["pending"] == 0


def test_a_stream_resampled_on_the_way_is_cut_by_time_not_by_the_files_sample_numbers() -> None:
    """eeg_file -> resample (100 Hz, time-aligned) -> epoch, markers straight from the file: their
    meta["sample"] counts 160 Hz samples. Both streams leave the file with one sample_clock
    token (set here too, so that the test does not lean on eeg_file's); resample renumbers the
    samples and drops it, so the numbers are checked against the times, disagree and are not
    used (sample_mismatch); each epoch is cut at round(t * 100) from resample_poly of the
    recording."""
    path = edf_files()[0]
    info, frames = replay(path)
    info = {port: i.replace(extra={**i.extra, "sample_clock": "eeg@160"})
            for port, i in info.items()}
    rs = Resample(Resample.Params(srate=100.0, compensate_delay=True), "rs")
    info = {"in": rs.setup({"in": info["in"]})["out"], "markers": info["markers"]}
    assert "sample_clock" not in info["in"].extra
    node, out = make(info, tmin=-0.5, tmax=2.0, events=MI)
    resampled = []
    for port, f in frames:
        if port == "in":
            resampled += [("in", g) for _, g in rs.process("in", f)]
        else:
            resampled.append((port, f))
    resampled += [("in", g) for _, g in rs.close()]
    got = drive(node, resampled)
    assert out.shape == (64, 251) and node.figures()["sample_mismatch"] == 15 == len(got)
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    x = signal.resample_poly((raw.get_data() * 1e6).astype(np.float32).astype(np.float64), 5, 8,
                             axis=1)
    for f in got:
        s = round(f.meta["t_marker"] * 100)
        assert f.meta["sample"] == s and f.t_device == pytest.approx((s - 50) / 100, abs=1e-9)
        # float32 frames of the resampled signal: 1/2 ulp of the epoch's largest value
        ref = x[:, s - 50:s + 201]
        np.testing.assert_allclose(f.data, ref, rtol=0,
                                   atol=np.spacing(np.float32(np.abs(ref).max())))


def test_a_frame_with_the_wrong_channel_count_is_refused_and_nothing_lost() -> None:
    path = edf_files()[0]
    info, frames = replay(path)
    node, _ = make(info, tmin=-0.5, tmax=2.0, events=MI)
    bad = Frame(FrameKind.SAMPLES, np.zeros((63, 16), np.float32), 0, t_device=0.0)
    got = []
    for k, (port, f) in enumerate(frames):
        if k == 500:
            with pytest.raises(ValueError, match="63 channels, the stream has 64"):
                list(node.process("in", bad))
        got += [g for _, g in node.process(port, f)]
    Reference(path, -0.5, 2.0, None, MI).check(got, path.name)


def test_reset_starts_over() -> None:
    path = edf_files()[0]
    info, frames = replay(path)
    node, _ = make(info, tmin=-0.5, tmax=2.0, events=MI)
    first = drive(node, frames)
    node.reset()
    for port, f in frames[:len(frames) // 3]:  # leave epochs pending
        list(node.process(port, f))
    node.reset()
    again = drive(node, frames)
    assert [f.meta for f in again] == [f.meta for f in first]
    for a, b in zip(again, first):
        np.testing.assert_array_equal(a.data, b.data)


BURST_SRATE = 250.0
#: Eight samples stamped as BrainFlow stamps a Cyton behind its USB dongle: on arrival, four at a
#: time every 16 ms (10 µs apart within a burst).
BURSTS = 100.0 + np.repeat([0.0, 0.016], 4) + np.tile([0.0, 1e-5, 2e-5, 3e-5], 2)


@pytest.mark.parametrize(("tokens", "sample", "mismatch"), [
    (("eeg@250", "eeg@250"), 5, 0),   # one source numbered both: its number is the sample
    ((None, None), 4, 1),             # no token: the number is checked against the time
    (("eeg@250", "rs@250"), 4, 1),    # samples renumbered on the way
    (("eeg@250", None), 4, 1),
])
def test_a_board_that_stamps_in_bursts_gets_the_sample_it_marked_when_tokens_match(
        tokens: tuple[str | None, str | None], sample: int, mismatch: int) -> None:
    """BrainFlow marks sample 5, stamped 100.01601 s. By time (first chunk at 100.0 s, 250 Hz)
    that is sample 4: the number disagrees with the time by 1 sample. With the same sample_clock
    token on both streams the number is used; without, the time (sample_mismatch counted)."""
    marks_token, samples_token = tokens
    info = {"in": StreamInfo(FrameKind.SAMPLES, BURST_SRATE, shape=(1,), clock="unix",
                             extra={} if samples_token is None
                             else {"sample_clock": samples_token}),
            "markers": StreamInfo(FrameKind.MARKERS, dtype="unicode", clock="unix",
                                  extra={} if marks_token is None
                                  else {"sample_clock": marks_token})}
    node, _ = make(info, tmin=0.0, tmax=0.02)
    x = np.arange(40, dtype=np.float32)[None]  # each sample holds its index
    got = drive(node, [
        ("in", Frame(FrameKind.SAMPLES, x[:, :8], 0, t_device=BURSTS[0])),
        ("markers", Frame(FrameKind.MARKERS, np.array(["1"]), 0, t_device=BURSTS[5],
                          meta={"sample": 5})),
        ("in", Frame(FrameKind.SAMPLES, x[:, 8:], 0, t_device=BURSTS[-1] + 0.004))])
    [epoch] = got
    assert epoch.meta["sample"] == sample and node.figures()["sample_mismatch"] == mismatch
    np.testing.assert_array_equal(epoch.data, x[:, sample:sample + 6])  # 0 .. 0.02 s: 6 samples
    assert epoch.meta["t_marker"] == BURSTS[5]  # the marker's own stamp either way


def samples_info(clock: str = "file") -> dict[str, StreamInfo]:
    return {"in": StreamInfo(FrameKind.SAMPLES, SRATE, shape=(4,), clock=clock),
            "markers": StreamInfo(FrameKind.MARKERS, dtype="unicode", clock="file")}


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"tmin": 1.0, "tmax": 0.5}, "tmax", "tmax (0.5 s) must not be before tmin (1 s)"),
    ({"baseline": (-1.0, 0.0)}, "baseline", "(-1, 0) s must be an interval inside the epoch"),
    ({"baseline": (0.2, 0.1)}, "baseline", "must be an interval"),
    ({"events": []}, "events", "no marker to cut epochs at"),
])
def test_impossible_params_name_their_field(params: dict, field: str, message: str) -> None:
    with pytest.raises(ParamError) as e:
        make(samples_info(), **params)
    assert e.value.field == field and message in str(e.value)


def test_markers_on_another_clock_are_refused() -> None:
    with pytest.raises(StreamMismatch, match="clock 'file', the samples' on 'unix'"):
        make(samples_info("unix"))


def test_samples_without_a_regular_rate_are_refused() -> None:
    info = {**samples_info(), "in": samples_info()["in"].replace(srate=0.0)}
    with pytest.raises(StreamMismatch, match="epoch needs a regular sampling rate"):
        make(info)


def test_the_stream_info_lists_the_labels_and_the_epoch_shape() -> None:
    _, out = make(samples_info(), tmin=-0.33, tmax=1.27, events={"T1": "left", "T2": "right",
                                                                  "T3": "left"})
    assert out.shape == (4, 53 + 203 + 1) and out.class_names == ("left", "right")
    assert out.extra["tmin"] == -53 / SRATE and out.extra["tmax"] == 203 / SRATE
    assert out.srate == 0 and out.clock == "file"


@pytest.mark.slow
def test_epochs_through_real_processes_equal_mne_epochs(run_graph) -> None:
    """eeg_file, epoch and a recorder in three worker processes: samples and markers reach the
    epoch node over two ZeroMQ edges, in whatever interleaving; the recorded epochs are MNE's."""
    path = edf_files()[0]
    g = run_graph(f"""\
        name: epochs
        nodes:
          eeg: {{type: eeg_file, path: "{path}", speed: max, chunk: 16}}
          ep: {{type: "nodes.epoch:Epoch", tmin: -0.5, tmax: 2.0, baseline: [null, 0],
               events: {{T1: left, T2: right}}}}
          rec: {{type: recorder, path: epochs.nfr}}
        edges:
          - {{chain: eeg -> ep -> rec, policy: lossless}}
          - {{chain: eeg.markers -> ep.markers, policy: lossless}}
        """)
    assert g.finish() == 0, g.stderr
    recording = read_recording(g.graph.parent / "epochs.nfr")
    assert recording.info.shape == (64, 401) and recording.info.class_names == ("left", "right")
    Reference(path, -0.5, 2.0, (None, 0), MI).check(recording.frames, path.name)
