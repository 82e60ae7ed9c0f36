"""epoch fed by real marker sources: an LSL string stream from an independent producer process, and
the marker row of BrainFlow's synthetic board — markers arriving late, early (before the samples
they point at) or as sent, and on a clock 10 s ahead. Each epoch must be exactly the samples
around its marker's sample, which both sources make checkable: the LSL producer's channel 0 is the
sample index, the board's samples are the frames it sent. (File annotations, and markers shuffled
out of order, are tests/test_epoch.py's.)

The sources run as a worker runs them (pipeline/worker.py): each in its own thread, every node
call under one lock. Which frames arrive first is made certain where a test claims it — a source
held back until the other has delivered everything, or the board's marker frames moved on the edge
— and is recorded and checked, never assumed from timing.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import pytest

from devices.brainflow_board import BrainFlowBoard
from devices.lsl import LSLInlet
from devices.recorder import read_recording
from lsl_producer import data
from nodes.epoch import Epoch
from pipeline import Frame, FrameKind, StreamInfo
from test_brainflow import GIVE_UP_S, wait_until
from test_lsl import inlet, producer, unique


class Group:
    """The epoch node as a worker's process group holds it: every call made under one lock, the
    frames fed recorded in order with, for a marker frame, how many samples had been fed before."""

    def __init__(self, node: Epoch) -> None:
        self.node = node
        self.lock = threading.Lock()
        self.fed = 0                                # samples fed so far
        self.samples: list[Frame] = []              # sample frames, in the order fed
        self.markers: list[tuple[Frame, int]] = []  # (marker frame, samples fed before it)
        self.epochs: list[Frame] = []

    def feed(self, port: str, frame: Frame) -> None:
        with self.lock:
            if port == "in":
                self.samples.append(frame)
            else:
                self.markers.append((frame, self.fed))
            for out_port, f in self.node.process(port, frame):
                assert out_port == "out"
                self.epochs.append(f)
            if port == "in":
                self.fed += frame.data.shape[1]

    def close(self) -> None:
        with self.lock:
            assert list(self.node.close()) == []


def epoch(info: dict[str, StreamInfo], **params: object) -> Epoch:
    node = Epoch(Epoch.Params(**params), "ep")
    node.setup(info)
    return node


# -- LSL: an independent producer process, a sample inlet and a marker inlet -------------------

SRATE, N, EVERY, SEED = 500.0, 1000, 50, 4
TMIN, TMAX = -0.1, 0.3
FIRST, LAST = round(TMIN * SRATE), round(TMAX * SRATE)   # -50, 150 samples from the marker
MARKS = range(0, N, EVERY)
#: The markers that get an epoch: m0's would start before the first sample, m850 .. m950's end
#: after the last (counted out_of_range and incomplete).
CUT = [k for k in MARKS if k + FIRST >= 0 and k + LAST < N]
PRODUCER = ("--srate", str(SRATE), "--samples", str(N), "--chunk", "5", "--seed", str(SEED),
            "--markers-every", str(EVERY))


def check_lsl_epochs(epochs: list[Frame], fig: dict) -> None:
    """Exactly one epoch per marker in CUT, holding the producer's samples around sample k (its
    channel 0 says which), and the epoch node's counts for the others."""
    x = data(SEED, N, 4)
    got = sorted(epochs, key=lambda f: f.meta["sample"])
    assert [f.meta["sample"] for f in got] == CUT
    for k, f in zip(CUT, got):
        assert f.meta["marker"] == f.meta["label"] == f"m{k}"
        assert f.data.shape == (4, LAST - FIRST + 1)
        np.testing.assert_array_equal(f.data[0], k + np.arange(FIRST, LAST + 1))
        np.testing.assert_array_equal(f.data, x[:, k + FIRST:k + LAST + 1])  # float32 unchanged
        # the epoch's first sample is tmin before the marker's stamp, on the same (+10 s) clock:
        # within half a sample (the two inlets' time corrections differ by microseconds)
        assert abs(f.t_device - f.meta["t_marker"] - FIRST / SRATE) < 0.5 / SRATE
    assert fig["epochs"] == len(CUT) and fig["out_of_range"] == 1
    assert fig["incomplete"] == len(MARKS) - len(CUT) - 1
    assert fig["too_late"] == fig["unlocated"] == fig["ignored"] == fig["pending"] == 0


def pump(src: LSLInlet, port: str, group: Group, done: Callable[[], bool],
         after: threading.Event | None, finished: threading.Event) -> None:
    """One source thread: read ``src`` into ``group`` until ``done()``; start reading only once
    ``after`` is set (the inlet is open meanwhile: liblsl keeps what arrives)."""
    try:
        if after is not None:
            assert after.wait(GIVE_UP_S), "the other source never finished"
        end = time.monotonic() + GIVE_UP_S
        while not done():
            assert time.monotonic() < end, f"{port}: gave up with {group.fed} samples fed"
            for _, frame in src.read():
                group.feed(port, frame)
    finally:
        finished.set()


@pytest.mark.slow
@pytest.mark.parametrize(("order", "producer_args"), [
    # the stimulus program pushes each marker 0.5 s after its sample (its epoch ends 0.3 s after)
    ("lagging", ["--marker-delay", "0.5"]),
    # a producer host 10 s ahead; the marker inlet read only once every sample is in
    ("late", ["--offset", "10", "--marker-offset", "10", "--marker-delay", "0.5"]),
    # the same host; markers sent 0.5 s ahead of their samples, the sample inlet read only once
    # every marker is in
    ("early", ["--offset", "10", "--marker-offset", "10", "--marker-delay", "-0.5"]),
])
def test_lsl_markers_late_or_early_get_exactly_the_samples_around_them(
        order: str, producer_args: list[str]) -> None:
    name = unique("epochs")
    proc = producer("--name", name, "--source-id", name, *PRODUCER, *producer_args)
    try:
        samples = inlet(name=name, timeout=5.0)
        marks = inlet(name=f"{name}-markers", timeout=5.0)
        assert marks.info.kind is FrameKind.MARKERS
        # max_wait 2 s: the buffer (1201 samples) holds the whole 1000-sample stream, so markers
        # read only after the last sample still find their epochs
        node = epoch({"in": samples.info, "markers": marks.info}, tmin=TMIN, tmax=TMAX,
                     max_wait=2.0)
        group = Group(node)
        done_in, done_marks = threading.Event(), threading.Event()
        with ThreadPoolExecutor(2) as pool:  # one thread per source, as in a worker
            jobs = [pool.submit(pump, samples, "in", group, lambda: group.fed == N,
                                done_marks if order == "early" else None, done_in),
                    pool.submit(pump, marks, "markers", group,
                                lambda: len(group.markers) == len(MARKS),
                                done_in if order == "late" else None, done_marks)]
            for job in jobs:
                job.result()
        group.close()
    finally:
        proc.kill()
        proc.wait()
    fed_before = {str(f.data[0]): before for f, before in group.markers}
    assert sorted(fed_before) == sorted(f"m{k}" for k in MARKS)  # every marker, once
    if order == "late":    # each marker after its epoch's last sample (and after the stream)
        assert all(before == N for before in fed_before.values())
    elif order == "early":  # each marker before the chunk holding its sample (before any sample)
        assert all(before == 0 for before in fed_before.values())
    check_lsl_epochs(group.epochs, node.figures())


# -- BrainFlow: the synthetic board's marker row ---------------------------------------------

#: Marker values inserted on the board while it streams; 3 is not an event (ignored).
INSERTED = (1.0, 2.0, 1.0, 3.0, 2.0, 1.0, 2.0, 1.0, 2.0)
EVENTS = {"1": "left", "2": "right"}
B_TMIN, B_TMAX = -0.2, 0.5
#: How each marker frame travels from the board to the epoch node, by its position: moved ahead
#: of the frames of the read that holds its sample, as the board sent it (right after its
#: chunk), or held back until LATE samples after its epoch's last sample.
MODES = ("early", "as sent", "late")
LATE = 25


def board_thread(board: BrainFlowBoard, group: Group, last: int, modes: dict[int, str],
                 stop: threading.Event) -> None:
    """The board's source thread, its marker edge reordered per ``MODES`` (the mode each marker
    got goes in ``modes``, by its sample; one still held back when the board stops is delivered
    then)."""
    held: list[tuple[int, Frame]] = []
    while not stop.is_set():
        outs = board.read()
        if outs is None:
            break
        ahead, rest = [], []
        for port, frame in outs:
            if port == "out":
                rest.append(("in", frame))
                continue
            mode = modes[frame.meta["sample"]] = MODES[len(modes) % len(MODES)]
            if mode == "early":
                ahead.append(("markers", frame))
            elif mode == "late":
                held.append((frame.meta["sample"] + last + 1 + LATE, frame))
            else:
                rest.append(("markers", frame))
        for port, frame in ahead + rest:
            group.feed(port, frame)
        for due, frame in [h for h in held if h[0] <= group.fed]:
            held.remove((due, frame))
            group.feed("markers", frame)
    for _, frame in held:
        group.feed("markers", frame)


@pytest.mark.slow
def test_brainflow_marker_row_markers_early_as_sent_and_late_get_the_board_samples() -> None:
    board = BrainFlowBoard(BrainFlowBoard.Params(board="synthetic"), "eeg")
    info = board.setup({})
    srate = info["out"].srate
    # the board numbers its markers by the samples it sends: one token on both streams
    assert info["out"].extra["sample_clock"] == info["markers"].extra["sample_clock"] == "eeg@250"
    first, last = round(B_TMIN * srate), round(B_TMAX * srate)
    node = epoch({"in": info["out"], "markers": info["markers"]}, tmin=B_TMIN, tmax=B_TMAX,
                 events=EVENTS)
    group = Group(node)
    stop, modes = threading.Event(), {}
    board.open()
    try:
        with ThreadPoolExecutor(1) as pool:
            job = pool.submit(board_thread, board, group, last, modes, stop)
            due = -first + 25  # the first epoch starts 25 samples into the stream
            for value in INSERTED:
                wait_until(lambda: board.samples >= due or job.done(), "the board's samples")
                assert board.board is not None and not job.done()
                board.board.insert_marker(value)  # BrainFlow marks the next sample it gets
                due = board.samples + 75          # 0.3 s apart: epochs overlap
            wait_until(lambda: len(group.markers) == len(INSERTED) or job.done(), "the markers")
            end = max(modes) + last + 1 + LATE
            wait_until(lambda: group.fed >= end or job.done(), "the last epoch's samples")
            stop.set()
            job.result()
    finally:
        stop.set()
        board.close()
    group.close()
    frames = sorted((f for f, _ in group.markers), key=lambda f: f.meta["sample"])
    assert [float(str(f.data[0])) for f in frames] == list(INSERTED)
    # early: before the chunk holding its sample; as sent: after it; late: after its epoch
    assert sorted(modes.values()) == sorted(MODES * 3)  # 9 markers, 3 each way
    for f, before in group.markers:
        s = f.meta["sample"]
        assert {"early": before <= s, "as sent": before > s,
                "late": before >= s + last + 1 + LATE}[modes[s]], (modes[s], s, before)
    # the reference: the board's own sample frames, end to end (meta["sample"] indexes them)
    x = np.concatenate([f.data for f in group.samples], axis=1)
    assert x.shape[1] == board.samples
    wanted = [f for f in frames if str(f.data[0]) in EVENTS]
    got = sorted(group.epochs, key=lambda f: f.meta["sample"])
    assert [f.meta["sample"] for f in got] == [f.meta["sample"] for f in wanted]
    for f, m in zip(got, wanted):
        s = f.meta["sample"]
        assert f.meta["marker"] == str(m.data[0]) and f.meta["label"] == EVENTS[f.meta["marker"]]
        assert f.meta["t_marker"] == m.t_device  # BrainFlow's stamp of the marked sample
        assert f.data.dtype == np.float32 and f.data.shape == (x.shape[0], last - first + 1)
        np.testing.assert_array_equal(f.data, x[:, s + first:s + last + 1])  # no baseline
    fig = node.figures()
    assert fig["epochs"] == len(wanted) == 8 and fig["ignored"] == 1
    # each marker placed by its number, never checked against the stamps (the tokens match)
    assert fig["sample_mismatch"] == fig["too_late"] == fig["out_of_range"] == 0
    assert fig["incomplete"] == fig["unlocated"] == fig["pending"] == 0
    assert board.figures()["markers"] == len(INSERTED)


@pytest.mark.slow
def test_lsl_inlets_and_epoch_as_a_graph_of_processes_record_every_epoch(run_graph) -> None:
    """The same producer (host 10 s ahead, markers 0.5 s behind their samples) read by two
    lsl_inlet nodes of a real graph, epoch and a recorder in their own worker processes: samples
    and markers reach epoch over two ZeroMQ edges, in whatever interleaving."""
    name = unique("graph-epochs")
    proc = producer("--name", name, "--source-id", name, *PRODUCER, "--offset", "10",
                    "--marker-offset", "10", "--marker-delay", "0.5")
    try:
        g = run_graph(f"""\
            name: lsl-epochs
            nodes:
              eeg:  {{type: lsl_inlet, name: {name}}}
              cues: {{type: lsl_inlet, name: {name}-markers}}
              ep:   {{type: epoch, tmin: {TMIN}, tmax: {TMAX}, max_wait: 2.0}}
              rec:  {{type: recorder, path: epochs.nfr}}
            edges:
              - {{chain: eeg -> ep -> rec, policy: lossless}}
              - {{chain: cues -> ep.markers, policy: lossless}}
            """)

        def everything_in() -> bool:
            fig = g.figures()
            return ("rec" in fig and fig["rec"]["frames_in"] == len(CUT)
                    and fig["eeg"]["node"]["samples"] == N
                    and fig["cues"]["node"]["samples"] == len(MARKS))
        g.wait_for(everything_in)
        g.interrupt()
        assert g.finish() == 0, g.stderr
    finally:
        proc.kill()
        proc.wait()
    recording = read_recording(g.graph.parent / "epochs.nfr")
    assert recording.info.shape == (4, LAST - FIRST + 1)
    # meta["sample"] == k too: every sample reached the graph, from the first
    check_lsl_epochs(recording.frames, g.figures()["ep"]["node"])
