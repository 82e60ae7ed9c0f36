"""event_file: real recordings replayed batch by batch equal an independent decoder's output;
batches cut by time or count; loop; .npy recordings written by the recorder read back identically.

References: AEDAT4 through ``aedat`` (MIT, a Rust decoder independent of the dv-processing reader
the node uses); Prophesee RAW through expelliarmus (GPL-2.0, test-time cross-check only), whose
EVT 3.0 times drift (tests/test_event_decode.py shows how): there, times are checked against our
decoder run on the whole file, the rest against expelliarmus.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import event_recording
from devices.event_file import EventFile
from devices.event_formats import open_reader
from devices.event_npy import NpyEventReader, NpyEventWriter, sidecar
from devices.recorder import Recorder
from pipeline import Frame, FrameKind, ParamError, StreamInfo
from pipeline.frame import EVENT_DTYPE


def replay(**params) -> tuple[EventFile, dict[str, StreamInfo], list[np.ndarray]]:
    """Every batch ``event_file`` sends with ``params`` (speed max), in order."""
    node = EventFile(EventFile.Params(speed="max", **params), "ev")
    info = node.setup({})
    node.open()
    batches = []
    while (out := node.read()) is not None:
        for port, frame in out:
            assert port == "out" and frame.kind is FrameKind.EVENTS
            assert frame.t_device == frame.data["t"][0] / 1e6
            batches.append(frame.data)
    node.close()
    return node, info, batches


def aedat_reference(path: Path) -> np.ndarray:
    """Every polarity event of an AEDAT4 file, decoded by ``aedat`` (bool polarity -> 0/1)."""
    import aedat

    parts = [packet["events"] for packet in aedat.Decoder(str(path)) if "events" in packet]
    ev = np.concatenate(parts)  # aedat's own dtype: fields read below
    out = np.empty(len(ev), EVENT_DTYPE)
    out["t"], out["x"], out["y"] = ev["t"], ev["x"], ev["y"]
    out["p"] = ev["on"].astype(np.int8)
    return out


def expelliarmus_reference(path: Path, encoding: str) -> np.ndarray:
    import expelliarmus

    ev = expelliarmus.Wizard(encoding=encoding).read(str(path))
    out = np.empty(len(ev), EVENT_DTYPE)
    for name in ("t", "x", "y", "p"):
        out[name] = ev[name]
    return out


@pytest.mark.parametrize("name, size", [("sample.aedat4", (320, 240)),
                                        ("davis.aedat4", (346, 260))])
def test_aedat4_replay_equals_an_independent_decoder(name: str, size: tuple[int, int]) -> None:
    path = event_recording(name)
    _, info, batches = replay(path=str(path), window_us=5000)
    assert info["out"].sensor_size == (*size, 2) and info["out"].dtype == "events"
    ref = aedat_reference(path)
    got = np.concatenate(batches, dtype=EVENT_DTYPE)
    assert got.dtype == EVENT_DTYPE and len(got) == len(ref)
    for field in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(got[field], ref[field], err_msg=field)


def whole_file(path: Path) -> np.ndarray:
    """Our decoder's output for the whole file in one read."""
    with open_reader(path) as reader:
        return reader.read(10**8)


@pytest.mark.parametrize("name, encoding", [("evt3_sample.raw", "evt3"), ("evt2_sample.raw", "evt2")])
def test_raw_replay_equals_expelliarmus(name: str, encoding: str) -> None:
    path = event_recording(name)
    _, info, batches = replay(path=str(path), count=10_000)
    ref = expelliarmus_reference(path, encoding)
    got = np.concatenate(batches, dtype=EVENT_DTYPE)
    assert len(got) == len(ref)
    for field in ("x", "y", "p") if encoding == "evt3" else ("t", "x", "y", "p"):
        np.testing.assert_array_equal(got[field], ref[field], err_msg=field)
    np.testing.assert_array_equal(got, whole_file(path))


def test_time_windows_hold_exactly_their_span_of_the_recording() -> None:
    path = event_recording("sample.aedat4")
    window = 2000
    _, _, batches = replay(path=str(path), window_us=window)
    ref = aedat_reference(path)
    t0 = int(ref["t"][0])
    # the reference cut: every event goes to window (t - t0) // window; empty windows send nothing
    k = (ref["t"] - t0) // window
    cuts = np.flatnonzero(np.diff(k)) + 1
    expected = np.split(ref, cuts)
    assert len(batches) == len(expected)
    for got, exp in zip(batches, expected):
        np.testing.assert_array_equal(got, exp)


def test_count_batches_and_loop_keep_time_increasing() -> None:
    path = event_recording("sample_nmnist.bin")
    node, _, batches = replay(path=str(path), count=1000)
    once = np.concatenate(batches, dtype=EVENT_DTYPE)
    assert [len(b) for b in batches[:-1]] == [1000] * (len(batches) - 1) and len(once) == 4325
    looped = EventFile(EventFile.Params(path=str(path), speed="max", count=1000, loop=True), "ev")
    looped.setup({})
    looped.open()
    got = []
    while sum(map(len, got)) < 3 * len(once):
        got.extend(f.data for _, f in looped.read())
    twice = np.concatenate(got, dtype=EVENT_DTYPE)[:3 * len(once)]
    span = int(once["t"][-1]) - int(once["t"][0]) + 1  # each pass starts 1 µs after the last
    for lap in range(3):
        part = twice[lap * len(once):(lap + 1) * len(once)]
        np.testing.assert_array_equal(part["t"], once["t"] + lap * span)
        np.testing.assert_array_equal(part[["x", "y", "p"]], once[["x", "y", "p"]])
    assert looped.figures()["laps"] >= 2


def random_events(n: int, seed: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.empty(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 1_000_000, n))
    ev["x"] = rng.integers(0, size[0], n)
    ev["y"] = rng.integers(0, size[1], n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


def test_recorder_npy_reads_back_identically(tmp_path: Path) -> None:
    ev = random_events(20_000, seed=1)
    info = StreamInfo(FrameKind.EVENTS, dtype="events", sensor_size=(64, 48, 2), clock="file")
    rec = Recorder(Recorder.Params(path=str(tmp_path / "ev.npy")), "rec")
    rec.setup({"in": info})
    for seq, part in enumerate(np.array_split(ev, 37)):
        rec.process("in", Frame(FrameKind.EVENTS, part, 0, seq))
    list(rec.close())
    assert rec.figures() == {"events": len(ev), "gaps": 0}
    np.testing.assert_array_equal(np.load(tmp_path / "ev.npy"), ev)  # plain NumPy opens it
    _, out, batches = replay(path=str(tmp_path / "ev.npy"), count=999)
    assert out["out"].sensor_size == (64, 48, 2)  # from the sidecar
    np.testing.assert_array_equal(np.concatenate(batches, dtype=EVENT_DTYPE), ev)


def test_npy_cut_short_reads_what_was_flushed(tmp_path: Path) -> None:
    ev = random_events(5000, seed=2)
    w = NpyEventWriter(tmp_path / "cut.npy", (64, 48, 2), "file")
    w.write(ev[:3000])
    w.flush()
    w.write(ev[3000:])
    w.file.close()  # a crash: no final header rewrite
    np.testing.assert_array_equal(np.load(tmp_path / "cut.npy"), ev[:3000])


def test_npy_with_other_field_order_and_no_sidecar(tmp_path: Path) -> None:
    ev = random_events(1000, seed=3)
    tonic_like = np.empty(len(ev), [("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    for name in ("t", "x", "y", "p"):
        tonic_like[name] = ev[name]
    np.save(tmp_path / "t.npy", tonic_like)
    with pytest.raises(ParamError) as e:
        replay(path=str(tmp_path / "t.npy"), count=100)
    assert e.value.field == "sensor_size"
    _, info, batches = replay(path=str(tmp_path / "t.npy"), count=100, sensor_size=(64, 48))
    assert info["out"].sensor_size == (64, 48, 2)
    np.testing.assert_array_equal(np.concatenate(batches, dtype=EVENT_DTYPE), ev)
    assert not sidecar(tmp_path / "t.npy").exists()


@pytest.mark.parametrize("content, suffix, says", [
    (None, ".raw", "no such file"),
    (b"\x00" * 100, ".aedat4", "AEDAT4"),
    (b"not numpy", ".npy", ".npy"),
])
def test_unreadable_files_are_config_errors_naming_the_file(tmp_path: Path, content: bytes | None,
                                                            suffix: str, says: str) -> None:
    path = tmp_path / f"bad{suffix}"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ParamError) as e:
        EventFile(EventFile.Params(path=str(path)), "ev").setup({})
    assert e.value.field == "path" and str(path) in str(e.value) and says in str(e.value)


def test_wrong_npy_fields_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "w.npy", np.zeros((10, 4), np.int64))
    with pytest.raises(ValueError, match="fields t, x, y, p"):
        NpyEventReader(tmp_path / "w.npy")


@pytest.mark.slow
def test_replay_through_real_processes_records_every_event(run_graph, tmp_path: Path) -> None:
    path = event_recording("evt3_sample.raw")
    g = run_graph(f"""\
        name: events
        nodes:
          cam: {{type: event_file, path: "{path}", speed: max, window_us: 1000}}
          rec: {{type: recorder, path: events.npy}}
        edges:
          - {{chain: cam -> rec, policy: lossless}}
        """)
    assert g.finish() == 0, g.stderr
    got = np.load(tmp_path / "events.npy")
    np.testing.assert_array_equal(got, whole_file(path))


def test_a_looped_file_shorter_than_a_window_fills_it_over_several_calls(tmp_path: Path) -> None:
    ev = random_events(1000, seed=4)
    ev["t"] = np.arange(1000) // 250  # 4 µs of recording: 250 passes fill a 1000 µs window
    np.save(tmp_path / "short.npy", ev)
    node = EventFile(EventFile.Params(path=str(tmp_path / "short.npy"), speed="max",
                                      window_us=1000, loop=True, sensor_size=(64, 48)), "ev")
    node.setup({})
    node.open()
    calls, out = 0, []
    while not out:
        out = node.read()  # each call reads a bounded amount (a stop request gets through)
        calls += 1
    batch = out[0][1].data
    assert calls > 1 and len(batch) == 250 * 1000 and node.figures()["laps"] >= 249
    np.testing.assert_array_equal(batch["t"], np.arange(250 * 1000) // 250)


@pytest.mark.slow
def test_events_config_runs_every_node(run_graph) -> None:
    """configs/events.yaml (the README's event graph on a simulated camera) runs, and every node,
    in every process, gets frames."""
    config = Path(__file__).resolve().parents[1] / "configs" / "events.yaml"
    g = run_graph(config.read_text(), "--duration", "3")
    assert g.finish() == 0, g.stderr
    fig = g.figures()
    for node in ("hot", "den", "vox", "ts", "sink", "surface", "labels"):
        assert fig[node]["frames_in"] > 0, node
    assert 0 < fig["hot"]["node"]["events_in"] <= fig["cam"]["node"]["events"]  # realtime edge
    assert fig["vox"]["node"]["out_of_range"] == fig["vox"]["node"]["non_monotonic"] == 0
