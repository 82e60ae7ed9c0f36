"""artifact_guard: artifacts crafted into real EEG are found in the right frames and channels,
counted per reason; clean real recordings raise nothing at the defaults."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from nodes.artifact_guard import ArtifactGuard, repeat_runs
from nodes.filters import Bandpass
from pipeline import Frame, FrameKind, ParamError, StreamInfo, StreamMismatch
from pipeline.codec import decode, encode
from conftest import data_path, edf_files, random_chunks, recording_uv

SRATE = 160.0
WINDOW = 320  # 2 s


def recording(stem: str) -> tuple[np.ndarray, list[str]]:
    """A real recording in µV (float32, as the eeg_file source emits it) and its channel names."""
    [path] = [p for p in edf_files() if p.stem == stem]
    return recording_uv(path), mne.io.read_raw_edf(path, verbose="error").ch_names


def samples_info(names: list[str], units: str = "uV") -> StreamInfo:
    return StreamInfo(FrameKind.SAMPLES, SRATE, names, (units,) * len(names), shape=(len(names),))


def window_info(names: list[str]) -> StreamInfo:
    return StreamInfo(FrameKind.TENSOR, SRATE / 80, names, ("uV",) * len(names),
                      shape=(len(names), WINDOW))


def make(info: StreamInfo, **params: object) -> ArtifactGuard:
    node = ArtifactGuard(ArtifactGuard.Params(**params), "guard")
    assert node.setup({"in": info}) == {"out": info}
    return node


def cut(x: np.ndarray, step: int = 80) -> list[np.ndarray]:
    """2-s windows every ``step`` samples (plain slices: the window node's own test shows it
    cuts exactly these)."""
    return [x[:, a:a + WINDOW] for a in range(0, x.shape[1] - WINDOW + 1, step)]


def run(node: ArtifactGuard, frames: list[np.ndarray], kind: FrameKind) -> list[Frame | None]:
    """Each frame through the guard: what came out for it (None: dropped)."""
    out: list[Frame | None] = []
    for k, x in enumerate(frames):
        got = list(node.process("in", Frame(kind, x, k)))
        assert len(got) <= 1
        out.append(got[0][1] if got else None)
    return out


def clipped(x: np.ndarray, rail: float) -> np.ndarray:
    """``x`` plus a +400 µV half-sine (a movement) over samples 100..200, clipped at ``rail`` µV
    as an amplifier at its limit would: 75 consecutive samples sit exactly at 150 µV in the
    window used below."""
    y = x.astype(np.float64)
    y[100:200] += 400 * np.sin(np.pi * np.arange(100) / 100)
    return np.minimum(y, rail).astype(np.float32)


@pytest.mark.parametrize(("artifact", "params", "reason"), [
    ("nan", {}, "nonfinite"),
    ("flat", {}, "flat"),
    ("spike", {}, "amplitude"),
    ("clip", {}, "saturation"),                                  # 75 repeats of the rail value
    ("clip", {"repeats": None, "saturation": 150.0}, "saturation"),  # the rail itself
])
def test_a_crafted_artifact_in_a_real_window_is_flagged_with_its_channel(
        artifact: str, params: dict, reason: str) -> None:
    x, names = recording("S020R04")
    windows = [w.copy() for w in cut(x[:, 1600:4000], step=WINDOW)]
    ch = {"nan": "C3..", "flat": "Cz..", "spike": "Fp1.", "clip": "O1.."}[artifact]
    i = names.index(ch)
    w = windows[3]
    if artifact == "nan":
        w[i, 100:116] = np.nan
    elif artifact == "flat":  # a disconnected electrode: 3 µV offset, 0.8 µV of noise
        w[i] = 3.0 + np.random.default_rng(0).uniform(-0.4, 0.4, WINDOW)
    elif artifact == "spike":
        w[i, 150] += 800.0
    else:
        w[i] = clipped(w[i], 150.0)
    node = make(window_info(names), **params)
    out = run(node, windows, FrameKind.TENSOR)
    assert all(f is not None and f.meta is None for k, f in enumerate(out) if k != 3)
    assert out[3].meta == {"artifact": [reason], "bad_channels": [ch]}
    np.testing.assert_array_equal(out[3].data, w)
    figures = node.figures()
    assert figures["frames"] == len(windows) and figures["artifact_frames"] == 1
    assert figures[reason] == 1 and figures[f"{reason}_channels"] == f"{ch}:1"
    assert sum(figures[r] for r in ("nonfinite", "flat", "amplitude", "saturation")) == 1


def test_a_sample_stream_is_flagged_in_exactly_the_chunks_the_rules_name() -> None:
    """A real recording streamed in random chunks (1..64 samples) with four artifacts at known
    samples; the flagged chunks per reason are exactly those the documented rules give: NaN in
    the chunk; peak-to-peak over the last span (80 samples, or the chunk if longer) ending at the
    chunk's end; a run of 32 identical samples reached inside the chunk (across chunk cuts)."""
    x, names = recording("S020R08")
    x = x.copy()
    a, b, c, d = (names.index(n) for n in ("C3..", "Fp1.", "O1..", "Cz.."))
    x[a, 3000:3010] = np.nan
    x[b, 6000] += 800.0
    assert x[c, 8999] != 77.0 and x[c, 9060] != 77.0
    x[c, 9000:9060] = 77.0  # stuck for 60 samples: the 32nd is sample 9031
    x[d, 12000:12400] = 3.0 + np.random.default_rng(1).uniform(-0.4, 0.4, 400)
    cuts = random_chunks(x.shape[1], np.random.default_rng(2), 64)
    node = make(samples_info(names))
    out = run(node, [x[:, s:e] for s, e in cuts], FrameKind.SAMPLES)

    def spans(s: int, e: int) -> tuple[int, int]:
        return e - max(80, e - s), e

    expected = {
        "nonfinite": {k for k, (s, e) in enumerate(cuts) if s < 3010 and e > 3000},
        "amplitude": {k for k, (s, e) in enumerate(cuts) if spans(s, e)[0] <= 6000 < e},
        "saturation": {k for k, (s, e) in enumerate(cuts) if s < 9060 and e > 9031},
        "flat": {k for k, (s, e) in enumerate(cuts)
                 if spans(s, e)[0] >= 12000 and e <= 12400},
    }
    channel = {"nonfinite": "C3..", "amplitude": "Fp1.", "saturation": "O1..", "flat": "Cz.."}
    for reason, ks in expected.items():
        got = {k for k, f in enumerate(out) if f.meta and reason in f.meta["artifact"]}
        assert got == ks and ks, reason
        assert all(out[k].meta["bad_channels"] == [channel[reason]] for k in ks), reason
        assert node.figures()[reason] == len(ks)
        assert node.figures()[f"{reason}_channels"] == f"{channel[reason]}:{len(ks)}"
    flagged = set().union(*expected.values())
    assert all(f.meta is None for k, f in enumerate(out) if k not in flagged)


def test_the_zero_padding_at_the_end_of_real_recordings_is_caught() -> None:
    """S001R04 ends with 80 samples of 0 on every channel (EDF record padding): the last 2-s
    window holds 80 repeats on all 64 channels; streamed in 16-sample chunks, the chunk that
    completes 80 zeros is flat everywhere, and those from the 32nd zero on are saturated."""
    x, names = recording("S001R04")
    assert not x[:, -80:].any() and x[:, -81].any()
    out = run(make(window_info(names)), cut(x)[-1:], FrameKind.TENSOR)  # samples 19680..20000
    assert out[0].meta["artifact"][-1] == "saturation"
    assert len(out[0].meta["bad_channels"]) == 64
    node = make(samples_info(names))
    out = run(node, [x[:, s:s + 16] for s in range(0, x.shape[1], 16)], FrameKind.SAMPLES)
    tail = [f.meta for f in out[-5:]]  # chunks of zeros 1-16, ..., 65-80
    assert tail[0] is None or "saturation" not in tail[0]["artifact"]
    assert all("saturation" in m["artifact"] and len(m["bad_channels"]) == 64 for m in tail[1:])
    assert "flat" in tail[-1]["artifact"] and node.figures()["flat"] == 1


def test_clean_real_recordings_raise_nothing_at_the_defaults() -> None:
    """Subjects 18 and 20 (runs 4, 8 and 12 of each, unfiltered): no 2-s window (every 0.5 s)
    and no chunk is flagged. Across all 51 files the defaults flag 36% of unfiltered 2-s
    windows (eye movements below 2 Hz on frontal channels, one channel of line noise: real
    artifacts for a decoder) and 3.6% after an 8-30 Hz band-pass (next test)."""
    rng = np.random.default_rng(3)
    files = [p for p in edf_files() if p.stem[:4] in ("S018", "S020")]
    assert len(files) == 6, f"runs 4, 8 and 12 of S018 and S020 missing from {data_path()}"
    for path in files:
        x, names = recording(path.stem)
        windows = make(window_info(names))
        run(windows, cut(x), FrameKind.TENSOR)
        stream = make(samples_info(names))
        run(stream, [x[:, s:e] for s, e in random_chunks(x.shape[1], rng, 64)], FrameKind.SAMPLES)
        for node in (windows, stream):
            assert node.figures()["artifact_frames"] == 0, (path.name, node.figures())


def test_after_a_band_pass_the_defaults_flag_few_windows_of_the_whole_dataset() -> None:
    """Every real recording through the causal 8-30 Hz band-pass node (first 5 s of transient
    left out), 2-s windows every 1 s: under 5% flagged (measured 3.6%, 218 of 5985, most from
    subject 13's frontal channels)."""
    frames = flagged = 0
    for path in edf_files():
        x, names = recording(path.stem)
        band = Bandpass(Bandpass.Params(low=8.0, high=30.0), "band")
        band.setup({"in": samples_info(names)})
        y = band.filter(x).astype(np.float32)[:, 800:]
        node = make(window_info(names))
        run(node, cut(y, step=160), FrameKind.TENSOR)
        frames += node.figures()["frames"]
        flagged += node.figures()["artifact_frames"]
    assert flagged / frames < 0.05, (flagged, frames)


def test_drop_emits_only_clean_frames_and_counts_the_rest() -> None:
    x, names = recording("S020R04")
    windows = [w.copy() for w in cut(x[:, :3200], step=WINDOW)]
    windows[2][5, 10] = np.inf
    windows[6][7, :] = 0.0
    node = make(window_info(names), action="drop")
    out = run(node, windows, FrameKind.TENSOR)
    assert [k for k, f in enumerate(out) if f is None] == [2, 6]
    assert all(f.data is w for f, w in zip(out, windows) if f is not None)  # untouched
    figures = node.figures()
    assert (figures["artifact_frames"], figures["nonfinite"]) == (2, 1)
    assert figures["flat"] == figures["saturation"] == 1
    assert figures["flat_channels"] == f"{names[7]}:1"


def test_flagged_meta_survives_the_wire_codec_and_keeps_what_was_there() -> None:
    x, names = recording("S020R04")
    w = cut(x)[0].copy()
    w[0, 3] = np.nan
    node = make(window_info(names))
    [(_, frame)] = list(node.process("in", Frame(FrameKind.TENSOR, w, 9, seq=2, t_device=1.0,
                                                 meta={"sample": 42})))
    assert frame.meta == {"sample": 42, "artifact": ["nonfinite"], "bad_channels": [names[0]]}
    back = decode([bytes(memoryview(p)) for p in encode(frame, b"t")])
    assert back.same_as(frame)


def test_repeat_runs_carry_across_chunks() -> None:
    """The run kernel against a plain per-sample count."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, size=(3, 400)).astype(np.float32)
    x[1, 50:120] = 1.0
    last, run_, longest = np.full(3, np.nan, np.float32), np.zeros(3, np.int64), []
    for s, e in random_chunks(400, rng, 30):
        got, run_ = repeat_runs(x[:, s:e], last, run_)
        last = x[:, e - 1]
        longest.append(got)
    plain = np.zeros((3, 400), int)
    for t in range(400):
        plain[:, t] = np.where(t and x[:, t] == x[:, t - 1], plain[:, t - 1] + 1, 1) if t else 1
    np.testing.assert_array_equal(np.max(longest, axis=0), plain.max(axis=1))
    np.testing.assert_array_equal(run_, plain[:, -1])


def test_reset_forgets_the_stream_history() -> None:
    """After reset a samples stream needs a full span again before 'flat' is judged, and a run
    of repeats starts again."""
    names = ["a", "b"]
    node = make(samples_info(names))
    flat = np.zeros((2, 100), np.float32)
    [(_, f)] = list(node.process("in", Frame(FrameKind.SAMPLES, flat, 0)))
    assert f.meta["artifact"] == ["flat", "saturation"]
    node.reset()
    [(_, f)] = list(node.process("in", Frame(FrameKind.SAMPLES, flat[:, :20], 0)))
    assert f.meta is None


def test_bad_streams_and_frames_are_refused_with_a_reason() -> None:
    with pytest.raises(ParamError) as e:
        ArtifactGuard(ArtifactGuard.Params(), "g").setup({"in": samples_info(["a", "b"], "V")})
    assert e.value.field == "flat" and "a (V), b (V) are not" in str(e.value)
    make(samples_info(["a"], "V"), flat=None, amplitude=None)  # only NaN and repeats: unit-free
    with pytest.raises(StreamMismatch, match="channels x samples"):
        ArtifactGuard(ArtifactGuard.Params(), "g").setup(
            {"in": StreamInfo(FrameKind.TENSOR, 1.0, shape=(64,))})
    with pytest.raises(StreamMismatch, match="artifact_guard needs a regular sampling rate; "
                                             "the stream has none"):
        ArtifactGuard(ArtifactGuard.Params(), "g").setup(
            {"in": StreamInfo(FrameKind.SAMPLES, 0.0, shape=(2,))})
    node = make(window_info(["a", "b"]))
    with pytest.raises(ValueError, match=r"frame has shape \[2, 100\], the stream \[2, 320\] "
                                         r"\(channels x samples\)"):
        list(node.process("in", Frame(FrameKind.TENSOR, np.zeros((2, 100), np.float32), 0)))
    node = make(samples_info(["a", "b"]))
    with pytest.raises(ValueError, match="frame has 3 channels, the stream has 2"):
        list(node.process("in", Frame(FrameKind.SAMPLES, np.zeros((3, 5), np.float32), 0)))
    assert node.figures()["frames"] == 0
