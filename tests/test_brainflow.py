"""brainflow source: real BrainFlow boards only — the synthetic board, the playback board on a file
recorded here, and BrainFlow's real Cyton driver on a pseudo-terminal with a fake Cyton behind it
that is unplugged and plugged back."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from brainflow.board_shim import BoardIds, BoardShim, BrainFlowInputParams
from brainflow.data_filter import DataFilter

import fake_cyton
from devices.brainflow_board import BrainFlowBoard
from pipeline import Frame, FrameKind, ParamError, config, graph
from pipeline.config import ConfigError

SYNTHETIC = BoardIds.SYNTHETIC_BOARD.value
#: OpenBCI's scale for the Cyton's ADS1299 at gain 24: 4.5 V / 24 / (2^23 - 1) per count, in µV.
CYTON_UV_PER_COUNT = 4.5 / 24 / (2**23 - 1) * 1e6


def board(**params: Any) -> BrainFlowBoard:
    node = BrainFlowBoard(BrainFlowBoard.Params(**params), "eeg")
    node.setup({})
    return node


def read_until(node: BrainFlowBoard, done: Callable[[], bool], give_up_s: float = 30.0
               ) -> list[tuple[str, Frame]]:
    """Frames read until ``done()``; ``give_up_s`` is a safety net against a hang, not a timing
    check (every wait here is a few seconds at most)."""
    out: list[tuple[str, Frame]] = []
    end = time.monotonic() + give_up_s
    while not done() and time.monotonic() < end:
        got = node.read()
        if got is None:
            break
        out += got
    assert done(), f"gave up: {node.figures()}"
    return out


def samples(frames: list[tuple[str, Frame]]) -> list[Frame]:
    return [f for p, f in frames if p == "out"]


def test_synthetic_board_streams_named_microvolt_frames_on_the_unix_clock() -> None:
    node = board(chunk=5)
    info = node.setup({})["out"]
    names = BoardShim.get_eeg_names(SYNTHETIC)
    assert info.channel_names == tuple(names) and info.units == ("uV",) * len(names)
    assert info.srate == 250.0 and info.clock == "unix" and info.shape == (len(names),)
    node.open()
    try:
        frames = samples(read_until(node, lambda: node.samples >= 375))
    finally:
        node.close()
    for f in frames:
        assert f.kind is FrameKind.SAMPLES and f.data.dtype == np.float32
        assert f.data.flags.c_contiguous and f.data.shape[0] == len(names)
        assert 1 <= f.data.shape[1] <= 5 and np.isfinite(f.data).all()
    assert sum(f.data.shape[1] for f in frames) == node.samples
    t = np.array([f.t_device for f in frames])
    assert np.all(np.diff(t) > 0)
    assert abs(t[-1] - time.time()) < 60  # Unix seconds (sanity only: no timing judged)
    fig = node.figures()
    assert fig["gaps"] == 0 and fig["losses"] == 0 and fig["nominal_srate"] == 250.0
    # The synthetic board paces itself with sleeps on the host clock, so on a loaded 2-core
    # machine its rate can sag a little; 10 % is a generous bound that still catches a wrong
    # formula (a missed sample per poll, or seconds mistaken for ms, is off by far more).
    assert fig["srate_stamps"] == pytest.approx(250.0, rel=0.1)


def test_markers_inserted_on_the_board_arrive_in_order_at_their_sample() -> None:
    node = board(chunk=1)  # one sample per frame: frame k's t_device is sample k's timestamp
    node.open()
    frames: list[tuple[str, Frame]] = []
    inserted_after: list[int] = []
    try:
        for value in (1.0, 2.5, 3.0):
            frames += read_until(node, lambda: node.samples >= len(inserted_after) * 10 + 10)
            inserted_after.append(node.samples)
            assert node.board is not None
            node.board.insert_marker(value)
        frames += read_until(node, lambda: node.markers == 3 and node.samples >= 40)
    finally:
        node.close()
    stamps = [f.t_device for f in samples(frames)]
    marks = [(k, f) for k, (p, f) in enumerate(frames) if p == "markers"]
    assert [str(f.data[0]) for _, f in marks] == ["1", "2.5", "3"]
    for (k, f), after in zip(marks, inserted_after):
        i = f.meta["sample"]
        assert i >= after  # BrainFlow marks the next sample it receives
        assert f.t_device == stamps[i]
        assert frames[k - 1] == ("out", samples(frames)[i])  # right after its sample's frame
    assert node.figures()["markers"] == 3


def record_synthetic(path: Path, seconds: float, marker: float) -> np.ndarray:
    """``seconds`` of the synthetic board with one marker, written with DataFilter.write_file;
    returns the file as DataFilter reads it back (the reference)."""
    shim = BoardShim(SYNTHETIC, BrainFlowInputParams())
    shim.prepare_session()
    try:
        shim.start_stream()
        time.sleep(seconds / 2)
        shim.insert_marker(marker)
        time.sleep(seconds / 2)
        data = shim.get_board_data()
    finally:
        shim.release_session()
    DataFilter.write_file(data, str(path), "w")
    return DataFilter.read_file(str(path))


def test_playback_replays_a_recorded_file_sample_exact_with_its_markers(tmp_path: Path) -> None:
    path = tmp_path / "rec.csv"
    ref = record_synthetic(path, 0.8, marker=7.0)
    node = board(board="playback", master_board="synthetic", file=str(path), chunk=7)
    node.open()
    try:
        frames = read_until(node, lambda: node.state == "ended")
        assert node.read() is None  # end of file is end of stream
    finally:
        node.close()
    x = np.concatenate([f.data for f in samples(frames)], axis=1)
    eeg = ref[BoardShim.get_eeg_channels(SYNTHETIC)].astype(np.float32)
    np.testing.assert_array_equal(x, eeg)  # every line, in order, none lost
    marker_row = ref[BoardShim.get_marker_channel(SYNTHETIC)]
    want = [(int(i), f"{marker_row[i]:g}") for i in np.flatnonzero(marker_row)]
    got = [(f.meta["sample"], str(f.data[0])) for p, f in frames if p == "markers"]
    assert want == got == [(want[0][0], "7")]


class FakeCyton:
    """The fake board process (tests/fake_cyton.py) behind a udev-like symlink."""

    def __init__(self, link: Path, skip: int) -> None:
        self.link, self.skip = link, skip
        self.proc: subprocess.Popen[str] | None = None

    def plug(self) -> None:
        self.proc = subprocess.Popen([sys.executable, fake_cyton.__file__, str(self.link),
                                      "--skip", str(self.skip)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "ready\n"

    def unplug(self) -> None:
        """Kill the board: its end of the pty closes; the link goes, as udev removes it."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.link.unlink()


def retry_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    return [float(m) for r in caplog.records
            for m in re.findall(r"retrying in ([\d.]+) s", r.getMessage())]


def test_cyton_missing_then_unplugged_is_retried_with_backoff_and_streams_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="neuroflow.brainflow")
    link = tmp_path / "ttyOpenBCI"
    fake = FakeCyton(link, skip=64)  # drops 255: a gap across the byte wrap
    node = board(board="cyton", serial_port=str(link), stall=0.5, backoff=0.1, backoff_max=0.4)
    node.open()
    try:
        # switched on late: the missing port is retried, nothing raised
        assert read_until(node, lambda: node.errors >= 2) == []
        assert retry_delays(caplog) == [0.1, 0.2] and node.state in ("retrying", "connecting")
        fake.plug()
        first = read_until(node, lambda: node.samples >= 100)
        caplog.clear()
        fake.unplug()
        first += read_until(node, lambda: node.errors >= 5)  # + what was in flight: no raise
        assert node.losses == 1 and node.state != "streaming"
        # lost (no data for 0.5 s), then each failed attempt doubles the delay up to the cap
        assert retry_delays(caplog) == [0.1, 0.2, 0.4, 0.4]
        assert "no data for 0.5 s" in caplog.records[0].getMessage()
        fake.plug()
        again = read_until(node, lambda: node.samples >= 400)  # past a byte wrap
    finally:
        node.close()
        if fake.proc is not None and fake.proc.poll() is None:
            fake.unplug()
    assert node.reconnects == 1 and node.figures()["state"] == "ended"
    sessions = []
    for frames in (first, again):
        x = np.concatenate([f.data for f in samples(frames)], axis=1)
        index = np.rint(x[0] / CYTON_UV_PER_COUNT).astype(int)  # channel 1 holds the index
        want = np.array([fake_cyton.counts(i) for i in index]).T * CYTON_UV_PER_COUNT
        # BrainFlow scales in float64 with the same constant; the float32 rounding is all
        np.testing.assert_array_equal(x, want.astype(np.float32))
        sessions.append(index)
    # the fake drops every 64th sample; the gaps figure counts exactly the missing numbers
    missing = sum(int(idx[-1] - idx[0] + 1 - len(idx)) for idx in sessions)
    assert missing > 0 and node.gaps == missing
    assert all(i % 64 != 63 for idx in sessions for i in idx)


def test_unknown_board_and_fields_are_config_errors_with_suggestions(tmp_path: Path) -> None:
    with pytest.raises(ParamError) as e:
        board(board="cyto")
    assert e.value.field == "board" and "cyton" in str(e.value)
    with pytest.raises(ParamError) as e:
        board(board="playback", file=str(tmp_path / "x.csv"))
    assert e.value.field == "master_board"
    with pytest.raises(ParamError) as e:
        board(board="playback", master_board="synthetic", file=str(tmp_path / "none.csv"))
    assert e.value.field == "file" and "none.csv" in str(e.value)
    with pytest.raises(ParamError) as e:
        board(board="cyton", channels=["eeg", "ppg"])
    assert e.value.field == "channels" and "accel" in str(e.value)
    # no hardware needed to validate a Cyton graph: names and rate come from BrainFlow's tables
    node = board(board="CYTON_BOARD", serial_port="/dev/nonexistent", channels=["eeg", "accel"])
    info = node.setup({})["out"]
    assert info.channel_names == tuple(BoardShim.get_eeg_names(BoardIds.CYTON_BOARD.value)) + (
        "ACCEL1", "ACCEL2", "ACCEL3")
    assert info.units == ("uV",) * 8 + ("NA",) * 3
    assert board(board=-1).board_name == "synthetic_board"
    text = textwrap.dedent("""\
        name: t
        nodes:
          eeg: {type: "devices.brainflow_board:BrainFlowBoard", board: cyton,
                serial_prot: /dev/ttyUSB0}
          out: {type: "null"}
        edges: ["eeg -> out"]
        """)
    with pytest.raises(ConfigError) as ce:
        graph.build(config.loads(text, "g.yaml"))
    msg = str(ce.value)
    assert msg.startswith("g.yaml:4:") and "unknown field 'serial_prot'" in msg
    assert "serial_port" in msg and "mac_address" in msg


def test_parameters_brainflow_refuses_stop_the_node_with_its_reason() -> None:
    node = board(board="cyton")  # no serial_port: BrainFlow's INVALID_ARGUMENTS_ERROR
    node.open()
    try:
        with pytest.raises(RuntimeError, match="eeg.*cyton.*INVALID_ARGUMENTS_ERROR"):
            read_until(node, lambda: False, give_up_s=5)
    finally:
        node.close()
