"""ZeroMQ edges between processes: one PUSH (producer, connects) -> PULL (consumer, binds) per edge.

Policies (DESIGN.md §5):

- ``realtime``: the producer never blocks (``NOBLOCK``); the consumer drains its socket into a
  bounded queue that drops the *oldest* frame when full (``queue_drops``), so a slow consumer
  always works on fresh data. Only when the pipe itself is full (a consumer stalled for
  REALTIME_PIPE_HWM frames, or gone) does the producer drop the newest (``send_drops``).
- ``lossless``: the producer blocks while the pipe is full (back-pressure up to the source); the
  consumer takes one message at a time, so the pipe's high-water marks bound what is in flight.

Sequence numbers are checked on arrival: a gap is counted as ``drops``, a step back (the producer
restarted) as ``resets``. A message that is not a frame is counted as ``decode_errors`` and dropped.
Edge-of-stream is a one-part message, ``EOS``, sent after a producer's last frame.

A PUSH towards a dead peer would block forever: every socket has ``LINGER`` and ``SNDTIMEO`` set.
Cross-host edges use ``tcp://`` with CURVE: the consumer is the CURVE server and only accepts the
producers' public keys (ZAP); the producer only talks to a server holding the expected key.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message
from zmq.auth.thread import ThreadAuthenticator

from pipeline.codec import FrameDecodeError, decode
from pipeline.frame import Frame
from pipeline.metrics import NodeStats

EOS = b"EOS"
#: Realtime pipes buffer this many frames so the consumer, draining them into its bounded queue,
#: is the one that drops (the oldest); only a consumer stalled beyond that makes the producer drop.
REALTIME_PIPE_HWM = 1000
LINGER_MS = 1000
EOS_WAIT_S = 2.0
RECONNECT_MS = 20


def pipe_hwm(policy: str, queue: int) -> int:
    """ZeroMQ high-water mark of each end of an edge's pipe."""
    return queue if policy == "lossless" else max(queue, REALTIME_PIPE_HWM)


@dataclass(frozen=True)
class CurveKeys:
    """This host's key pair and the public keys of the peers it trusts."""

    public: bytes
    secret: bytes
    peers: dict[str, bytes]

    @classmethod
    def load(cls, keys_dir: Path, host: str, peers: list[str]) -> CurveKeys:
        """Read ``HOST.key_secret`` and each ``PEER.key`` from ``keys_dir`` (``neuroflow keys``)."""
        secret_file = keys_dir / f"{host}.key_secret"
        if not secret_file.exists():
            raise FileNotFoundError(f"no secret key for host {host!r}: {secret_file} "
                                    f"(create it with `neuroflow keys {keys_dir} {host}`)")
        public, secret = zmq.auth.load_certificate(str(secret_file))
        peer_keys = {}
        for peer in peers:
            f = keys_dir / f"{peer}.key"
            if not f.exists():
                raise FileNotFoundError(f"no public key for host {peer!r}: {f}")
            peer_keys[peer] = zmq.auth.load_certificate(str(f))[0]
        return cls(public, secret, peer_keys)


def start_authenticator(ctx: zmq.Context, keys: CurveKeys) -> ThreadAuthenticator:
    """ZAP handler for this process: CURVE clients must hold one of the trusted peer keys."""
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_KeyList(keys.peers.values()))
    return auth


class _KeyList:
    def __init__(self, keys: Any) -> None:
        self.keys = set(keys)

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.keys


class EdgeSender:
    """Producer end of one edge."""

    def __init__(self, ctx: zmq.Context, endpoint: str, policy: str, queue: int, stats: NodeStats,
                 curve: tuple[CurveKeys, bytes] | None = None) -> None:
        self.sock = ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.LINGER, LINGER_MS)
        self.sock.setsockopt(zmq.SNDHWM, pipe_hwm(policy, queue))
        self.sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
        self.sock.setsockopt(zmq.SNDTIMEO, 200)
        # realtime: queue only to a live peer (no stale burst after it restarts); lossless: keep
        # queueing while it restarts, then push back
        self.sock.setsockopt(zmq.IMMEDIATE, 0 if policy == "lossless" else 1)
        if curve is not None:
            keys, server_key = curve
            self.sock.curve_publickey, self.sock.curve_secretkey = keys.public, keys.secret
            self.sock.curve_serverkey = server_key
        self.monitor: zmq.Socket | None = self.sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self.sock.connect(endpoint)
        self.lossless = policy == "lossless"
        self.stats = stats

    def wait_connected(self, deadline: float) -> bool:
        """Block until the peer is connected (so the first frames are not dropped) or
        ``deadline`` (time.monotonic) passes; the monitor is removed either way."""
        mon, connected = self.monitor, False
        if mon is None:
            return True
        while not connected:
            timeout_ms = int((deadline - time.monotonic()) * 1000)
            if timeout_ms <= 0 or not mon.poll(timeout_ms):
                break
            connected = recv_monitor_message(mon)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
        self.sock.disable_monitor()
        mon.close()
        self.monitor = None
        return connected

    def send(self, parts: list[Any], aborting: Callable[[], bool]) -> None:
        """Send one encoded frame (`pipeline.codec.encode`); realtime drops (counted) instead of
        blocking, lossless waits for room unless the worker is aborting."""
        sock = self.sock
        flags = 0 if self.lossless else zmq.NOBLOCK
        while True:
            try:
                if len(parts) == 1:
                    sock.send(parts[0], flags)
                else:
                    sock.send_multipart(parts, flags, copy=False)
                return
            except zmq.Again:
                if not self.lossless or aborting():
                    self.stats.send_drops += 1
                    return

    def send_eos(self, aborting: Callable[[], bool]) -> bool:
        """End of stream, after the last frame: waits for room unless the worker is aborting
        (realtime: at most EOS_WAIT_S, since a peer that never connected will not come)."""
        deadline = None if self.lossless else time.monotonic() + EOS_WAIT_S
        while True:
            try:
                self.sock.send(EOS)
                return True
            except zmq.Again:
                if aborting() or (deadline is not None and time.monotonic() > deadline):
                    return False

    def close(self) -> None:
        self.sock.close()


class EdgeReceiver:
    """Consumer end of one edge: a bound PULL socket and the frames waiting to be processed."""

    def __init__(self, ctx: zmq.Context, bind: str, policy: str, queue: int, stats: NodeStats,
                 curve: CurveKeys | None = None) -> None:
        self.sock = ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, pipe_hwm(policy, queue))
        if curve is not None:
            self.sock.curve_server = True
            self.sock.curve_publickey, self.sock.curve_secretkey = curve.public, curve.secret
        self.sock.bind(bind)
        self.lossless = policy == "lossless"
        self.pending: deque[Frame] = deque(maxlen=None if self.lossless else queue)
        self.stats = stats
        self.next_seq = -1
        self.eos = False    # the producer said it has ended
        self.ended = False  # ... and the consumer's input has been closed

    @property
    def busy(self) -> bool:
        """Work is waiting: a frame, or an end of stream not yet handled."""
        return bool(self.pending) or (self.eos and not self.ended)

    def readable(self) -> bool:
        return bool(self.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN)

    def receive(self) -> None:
        """Block (up to RCVTIMEO, then zmq.Again) for one message and take it."""
        sock = self.sock
        parts = [sock.recv()]
        while sock.getsockopt(zmq.RCVMORE):
            parts.append(sock.recv(copy=False))
        self.take(parts)

    def take(self, parts: list[Any]) -> None:
        """Account for one received message and queue its frame."""
        stats = self.stats
        if len(parts) == 1 and len(parts[0]) == 3 and parts[0] == EOS:
            self.eos = True
            return
        try:
            frame = decode(parts)
        except FrameDecodeError:
            stats.decode_errors += 1
            return
        seq = frame.seq
        if self.next_seq >= 0 and seq != self.next_seq:
            if seq > self.next_seq:
                stats.drops += seq - self.next_seq
            else:
                stats.resets += 1
        self.next_seq = seq + 1
        pending = self.pending
        if not self.lossless and len(pending) == pending.maxlen:
            stats.queue_drops += 1
        pending.append(frame)

    def fill(self) -> None:
        """Move what the socket holds into the queue (realtime: all; lossless: one if empty)."""
        if self.lossless:
            if not self.pending and not self.eos and self.readable():
                self.receive()
        else:
            while not self.eos and self.readable():
                self.receive()
        self.stats.queue = len(self.pending)

    def close(self) -> None:
        self.sock.close()
