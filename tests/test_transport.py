"""Edge policies on real ZeroMQ sockets (in one process): drops, gaps, resets, back-pressure."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from pipeline.codec import encode, encode_header
from pipeline.frame import Frame, FrameKind
from pipeline.metrics import NodeStats
from pipeline.transport import EdgeReceiver, EdgeSender


@pytest.fixture
def pair(tmp_path: Path):
    ctx = zmq.Context()
    made = []

    def make(policy: str, queue: int) -> tuple[EdgeSender, EdgeReceiver]:
        endpoint = f"ipc://{tmp_path}/e{len(made)}"
        rx = EdgeReceiver(ctx, endpoint, policy, queue, NodeStats())
        tx = EdgeSender(ctx, endpoint, policy, queue, NodeStats())
        assert tx.wait_connected(time.monotonic() + 5)
        made.extend([tx, rx])
        return tx, rx

    yield make
    for s in made:
        s.close()
    ctx.term()


def send(tx: EdgeSender, seq: int) -> None:
    frame = Frame(FrameKind.SAMPLES, np.full((2, 3), seq, np.float32), 1000 + seq, seq)
    tx.send(encode(frame), lambda: False)


def settle(rx: EdgeReceiver, n: int) -> None:
    """Wait until ``n`` messages are readable or queued (delivery is asynchronous)."""
    end = time.monotonic() + 5
    while time.monotonic() < end:
        rx.fill()
        if len(rx.pending) + rx.stats.queue_drops >= n:
            return
        time.sleep(0.01)


def test_gaps_are_counted_as_drops_and_a_step_back_as_a_reset(pair) -> None:
    tx, rx = pair("realtime", 64)
    for seq in (0, 1, 2, 5, 6, 0, 1):
        send(tx, seq)
    settle(rx, 7)
    assert [f.seq for f in rx.pending] == [0, 1, 2, 5, 6, 0, 1]
    assert (rx.stats.drops, rx.stats.resets) == (2, 1)
    assert rx.pending[3].data[0, 0] == 5 and rx.pending[3].t_origin_ns == 1005


def test_realtime_queue_keeps_the_newest_and_counts_the_oldest_dropped(pair) -> None:
    tx, rx = pair("realtime", 4)
    for seq in range(10):
        send(tx, seq)
    settle(rx, 10)
    assert [f.seq for f in rx.pending] == [6, 7, 8, 9]
    assert rx.stats.queue_drops == 6 and rx.stats.drops == 0 and rx.stats.queue == 4


def test_lossless_takes_one_frame_at_a_time_and_pushes_back(pair) -> None:
    tx, rx = pair("lossless", 2)
    sent = 0
    tx.sock.setsockopt(zmq.SNDTIMEO, 50)
    for seq in range(100):  # nobody reads: the sender must run out of room, not drop
        try:
            tx.sock.send(b"t", zmq.SNDMORE | zmq.NOBLOCK)
        except zmq.Again:
            break
        frame = Frame(FrameKind.SAMPLES, np.zeros((1, 1), np.float32), 0, seq)
        tx.sock.send(encode_header(frame), zmq.SNDMORE)
        tx.sock.send(frame.data)
        sent += 1
    assert 2 <= sent < 100  # bounded by the high-water marks
    got = []
    end = time.monotonic() + 5
    while len(got) < sent and time.monotonic() < end:
        rx.fill()
        assert len(rx.pending) <= 1
        if rx.pending:
            got.append(rx.pending.popleft().seq)
    assert got == list(range(sent)) and rx.stats.queue_drops == 0


def test_end_of_stream_follows_the_last_frame(pair) -> None:
    tx, rx = pair("realtime", 8)
    send(tx, 0)
    assert tx.send_eos(lambda: False)
    end = time.monotonic() + 5
    while not rx.eos and time.monotonic() < end:
        rx.fill()
    assert rx.eos and [f.seq for f in rx.pending] == [0] and rx.busy
