"""brainflow source: real BrainFlow boards only — the synthetic board, the playback board on files
recorded or written here, and BrainFlow's real Cyton driver on a pseudo-terminal with a fake Cyton
behind it that is unplugged and plugged back, or slow to answer."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from itertools import groupby
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from brainflow.board_shim import BoardIds, BoardShim, BrainFlowInputParams
from brainflow.data_filter import DataFilter

import fake_cyton
from devices.brainflow_board import RELEASE_WAIT_S, BrainFlowBoard
from pipeline import Frame, FrameKind, ParamError, config, graph
from pipeline.config import ConfigError

SYNTHETIC = BoardIds.SYNTHETIC_BOARD.value
#: OpenBCI's scale for the Cyton's ADS1299 at gain 24: 4.5 V / 24 / (2^23 - 1) per count, in µV.
CYTON_UV_PER_COUNT = 4.5 / 24 / (2**23 - 1) * 1e6
#: A safety net against a hang (every wait here is a few seconds at most), not a timing check.
GIVE_UP_S = 30.0


def board(**params: Any) -> BrainFlowBoard:
    node = BrainFlowBoard(BrainFlowBoard.Params(**params), "eeg")
    node.setup({})
    return node


def read_until(node: BrainFlowBoard, done: Callable[[], bool], give_up_s: float = GIVE_UP_S
               ) -> list[tuple[str, Frame]]:
    """Frames read until ``done()`` (``give_up_s``: see GIVE_UP_S)."""
    out: list[tuple[str, Frame]] = []
    end = time.monotonic() + give_up_s
    while not done() and time.monotonic() < end:
        got = node.read()
        if got is None:
            break
        out += got
    assert done(), f"gave up: {node.figures()}"
    return out


def wait_until(done: Callable[[], bool], what: str) -> None:
    """Poll ``done()`` every 5 ms until it holds (``what``: for the message; see GIVE_UP_S)."""
    end = time.monotonic() + GIVE_UP_S
    while not done():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.005)


def samples(frames: list[tuple[str, Frame]]) -> list[Frame]:
    return [f for p, f in frames if p == "out"]


def markers(frames: list[tuple[str, Frame]]) -> list[tuple[int, str]]:
    """(meta["sample"], text) of each marker frame."""
    return [(f.meta["sample"], str(f.data[0])) for p, f in frames if p == "markers"]


def test_synthetic_board_streams_named_microvolt_frames_on_the_unix_clock() -> None:
    node = board(chunk=1)  # one sample per frame: every sample's stamp is seen
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
        assert f.data.flags.c_contiguous and f.data.shape == (len(names), 1)
        assert np.isfinite(f.data).all()
    assert len(frames) == node.samples
    t = np.array([f.t_device for f in frames])
    assert np.all(np.diff(t) > 0)
    assert abs(t[-1] - time.time()) < 60  # Unix seconds (sanity only: no timing judged)
    fig = node.figures()
    assert fig["gaps"] == 0 and fig["losses"] == 0 and fig["nominal_srate"] == 250.0
    # srate_stamps is what the stamps claim: the samples after the first block drained (its
    # frames share the read's t_origin_ns) over the stamps' span from its last sample to the
    # last one. Not judged against 250 Hz: the synthetic board paces itself with host sleeps.
    i = sum(1 for f in frames if f.t_origin_ns == frames[0].t_origin_ns) - 1
    assert i < len(t) - 1 and fig["srate_stamps"] == round((len(t) - 1 - i) / (t[-1] - t[i]), 4)


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
    assert want == markers(frames) == [(want[0][0], "7")]
    # each drained block (its frames share the read's t_origin_ns) cut in chunks of 7, the last
    # one the rest
    for _, block in groupby(samples(frames), key=lambda f: f.t_origin_ns):
        sizes = [f.data.shape[1] for f in block]
        assert set(sizes[:-1]) <= {7} and 1 <= sizes[-1] <= 7


SRATE = 250.0  # the synthetic board's, which the playback files below are recorded as
#: Lines BrainFlow's playback board cannot parse (not one value per row of the board): it logs
#: and skips them.
UNREADABLE = ("a note, not a sample\n", "\n", "\t".join(["1.0"] * 31) + "\n")


def write_playback(path: Path, n: int, marks: dict[int, float], pause_before: int | None = None,
                   pause_s: float = 0.0, unreadable_before: tuple[int, ...] = ()) -> None:
    """A file of ``n`` samples of the synthetic board (DataFilter.write_file) whose first EEG row
    holds each sample's index in the file, with the markers ``marks`` (sample -> value): stamps at
    SRATE from 1000 s, ``pause_s`` more before sample ``pause_before``; one UNREADABLE line (in
    turn) before each sample of ``unreadable_before``."""
    descr = BoardShim.get_board_descr(SYNTHETIC)
    assert descr["num_rows"] == 32  # UNREADABLE's last line is one value short
    data = np.zeros((descr["num_rows"], n))
    data[descr["eeg_channels"][0]] = np.arange(n)
    stamps = 1000.0 + np.arange(n) / SRATE
    if pause_before is not None:
        stamps[pause_before:] += pause_s
    data[descr["timestamp_channel"]] = stamps
    for i, value in marks.items():
        data[descr["marker_channel"], i] = value
    DataFilter.write_file(data, str(path), "w")
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == n
    for k, i in sorted(enumerate(unreadable_before), key=lambda e: -e[1]):
        lines.insert(i, UNREADABLE[k % len(UNREADABLE)])
    path.write_text("".join(lines))


def on_their_samples(frames: list[tuple[str, Frame]], marks: dict[int, float]) -> None:
    """Every sample sent whose file index (first EEG row) has a marker is followed by that marker,
    numbered with its place in the stream; no other marker is sent."""
    index = np.concatenate([f.data[0] for f in samples(frames)]).astype(int)
    want = [(s, f"{marks[int(i)]:g}") for s, i in enumerate(index) if int(i) in marks]
    assert markers(frames) == want


def test_looping_playback_counts_the_file_as_brainflow_parses_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """60 samples and 3 lines BrainFlow skips, looped 2.5 times: the markers (one on the last
    sample) land on their samples in every pass, not shifted by the skipped lines."""
    caplog.set_level("WARNING", logger="neuroflow.brainflow")
    path = tmp_path / "loop.csv"
    marks = {2: 1.0, 25: 2.0, 59: 3.0}
    write_playback(path, 60, marks, unreadable_before=(0, 3, 20))
    node = board(board="playback", master_board="synthetic", file=str(path),
                 config=["loopback_true"])
    node.open()
    try:
        frames = read_until(node, lambda: node.samples >= 150)
    finally:
        node.close()
    index = np.concatenate([f.data[0] for f in samples(frames)])
    np.testing.assert_array_equal(index, np.arange(len(index)) % 60)  # what BrainFlow played
    on_their_samples(frames, marks)
    assert node.figures()["skipped_lines"] == 3 and node.reconnects == 0
    assert "3 lines of the file do not hold one value per row (32), the first on line 1" \
        in caplog.text


def test_looping_playback_after_a_stall_starts_the_file_again_with_its_markers(
        tmp_path: Path) -> None:
    """A recording with a 1 s pause before sample 40: BrainFlow's playback board waits it out,
    longer than ``stall`` (0.3 s), so the node reconnects, and the new session plays the file
    from its first sample. The markers of every session land on their samples (and the stream
    numbers them on, across sessions)."""
    path = tmp_path / "pause.csv"
    marks = {10: 1.0, 30: 2.0, 50: 3.0}
    write_playback(path, 60, marks, pause_before=40, pause_s=1.0, unreadable_before=(5,))
    node = board(board="playback", master_board="synthetic", file=str(path),
                 config=["loopback_true"], stall=0.3, backoff=0.1)
    node.open()
    try:
        frames = read_until(node, lambda: node.reconnects >= 1 and node.markers >= 4)
    finally:
        node.close()
    on_their_samples(frames, marks)
    index = np.concatenate([f.data[0] for f in samples(frames)])
    assert index[0] == 0 and (np.diff(index) != 1).sum() >= 1  # a session started again


class FakeCyton:
    """The fake board process (tests/fake_cyton.py, with its ``options``) behind a udev-like
    symlink."""

    def __init__(self, link: Path, *options: str) -> None:
        self.link, self.options = link, options
        self.proc: subprocess.Popen[str] | None = None

    def plug(self) -> None:
        self.proc = subprocess.Popen([sys.executable, fake_cyton.__file__, str(self.link),
                                      *self.options], stdout=subprocess.PIPE, text=True)
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
    fake = FakeCyton(link, "--skip", "64")  # drops 255: a gap across the byte wrap
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


def test_close_leaves_a_slow_connection_attempt_to_the_helper_thread_that_releases_the_board(
        tmp_path: Path) -> None:
    """A Cyton that answers BrainFlow's reset 3 s late: close() during that attempt does not wait
    for it (a stopping worker has 3 s in all to flush its sinks); the attempt goes on, connects,
    and the helper thread releases the board after it."""
    link = tmp_path / "ttyOpenBCI"
    fake = FakeCyton(link, "--reply-delay", "3")
    fake.plug()
    try:
        node = board(board="cyton", serial_port=str(link))
        node.open()
        read_until(node, lambda: node.job is not None)  # the attempt is under way
        attempt, shim = node.job, node.board
        assert attempt is not None and shim is not None
        node.close()
        # the attempt needs the 3 s reply and 1 s more (BrainFlow reads the reply to "d" until
        # its 1 s serial timeout); close waits RELEASE_WAIT_S at most, for the release alone
        assert RELEASE_WAIT_S < 3 and not attempt.done()
        assert node.board is None and node.figures()["state"] == "ended" and node.read() is None
        assert attempt.result(timeout=GIVE_UP_S) is None  # connected: the fake answered
        wait_until(lambda: not shim.is_prepared(), "the release after the attempt")
    finally:
        fake.unplug()


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
