"""One worker process: runs the nodes of one process group.

Nodes of the group call each other directly (no copy, no serialization); edges to other groups go
through `pipeline.transport`. Each source runs in its own thread; every node call is made under
one lock, so node code never runs concurrently. The main thread blocks on its input sockets (never
a busy loop, never a fixed-rate scheduler). A reporter thread sends the group's figures to the
supervisor once a second, which doubles as the heartbeat.

Started by the supervisor as ``python -m pipeline.worker PLAN.json GROUP``. Signals from it:
SIGUSR1 = every group is connected, sources may start; SIGTERM = stop the sources and drain;
SIGUSR2 = exit now (after everything finished, nothing is in flight; before, an abort that
still flushes the sinks). SIGINT is ignored: Ctrl-C in a terminal reaches every process, only the
supervisor acts on it.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable

import msgpack
import zmq

from pipeline.clock import now_ns
from pipeline.codec import FrameEncodeError, encode
from pipeline.frame import Frame
from pipeline.info import StreamInfo
from pipeline.metrics import NodeStats
from pipeline.node import Node, Source
from pipeline.plan import Plan
from pipeline.registry import resolve
from pipeline.transport import CurveKeys, EdgeReceiver, EdgeSender, start_authenticator

EXIT_OK, EXIT_NODE_FAILED = 0, 3
#: A node that raises on this many frames in a row has failed; fewer are counted and survived.
MAX_CONSECUTIVE_ERRORS = 100
REPORT_INTERVAL_S = 1.0
POLL_MS = 100
#: How long a starting worker waits for its downstream peers before it reports ready anyway.
CONNECT_TIMEOUT_S = 5.0


class NodeFailed(Exception):
    """A node cannot go on; the message names it and carries its traceback."""


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number msgpack can send."""
    return value.item() if hasattr(value, "item") else value


class Reporter(threading.Thread):
    """Owns the socket to the supervisor: metrics once a second, errors as they happen."""

    def __init__(self, ctx: zmq.Context, endpoint: str, group: str, stats: dict[str, NodeStats],
                 nodes: dict[str, Node]):
        super().__init__(name="reporter", daemon=True)
        self.sock = ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.sock.setsockopt(zmq.SNDTIMEO, 1000)
        self.sock.connect(endpoint)
        self.group, self.stats, self.nodes = group, stats, nodes
        self.outbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.last = time.monotonic()
        self.parent = os.getppid()
        self.orphaned = threading.Event()

    def report(self, msg: dict[str, Any]) -> None:
        self.outbox.put(msg)

    def _send(self, msg: dict[str, Any]) -> None:
        msg.update(group=self.group, pid=os.getpid(), t=time.time())
        try:
            self.sock.send(msgpack.packb(msg, use_bin_type=True))
        except zmq.Again:
            pass  # the supervisor is gone or stuck; it will notice our silence, not vice versa

    def _metrics(self, kind: str = "metrics") -> dict[str, Any]:
        now = time.monotonic()
        interval, self.last = max(now - self.last, 1e-3), now
        figures = {}
        for name, stats in self.stats.items():
            figures[name] = stats.snapshot(interval)
            node = self.nodes.get(name)
            if node is not None:
                try:
                    figures[name]["node"] = {k: _plain(v) for k, v in node.figures().items()}
                except Exception as e:  # a figure is not worth a crash; say why it is missing
                    figures[name]["node"] = {"figures_error": f"{type(e).__name__}: {e}"}
        return {"type": kind, "nodes": figures}

    def run(self) -> None:
        while True:
            timeout = max(0.0, self.last + REPORT_INTERVAL_S - time.monotonic())
            try:
                msg = self.outbox.get(timeout=timeout)
            except queue.Empty:
                self._send(self._metrics())
                if os.getppid() != self.parent:
                    self.orphaned.set()
                continue
            if msg is None:
                break
            self._send(msg)
        self._send(self._metrics("final"))
        self.sock.close()

    def finish(self) -> None:
        self.outbox.put(None)
        self.join(timeout=5)


class Worker:
    """The nodes of one group, their edges, and the loop that feeds them."""

    def __init__(self, plan: Plan, group: str) -> None:
        self.plan, self.group = plan, group
        self.ctx = zmq.Context()
        self.lock = threading.Lock()
        self.stopping = threading.Event()  # sources stop; the rest drains
        self.aborting = threading.Event()  # stop waiting on peers: lossless sends give up
        self.done = threading.Event()
        self.go = threading.Event()  # set by the supervisor (SIGUSR1) once every group is ready
        self.release = threading.Event()  # set (SIGUSR2) once every group has finished
        self.failure: str | None = None
        members = plan.groups[group]["nodes"]
        self.order = [n for n in plan.order if n in members]
        self.stats = {n: NodeStats() for n in self.order}
        self.nodes: dict[str, Node] = {}
        self.reporter = Reporter(self.ctx, plan.supervisor_endpoint, group, self.stats, self.nodes)
        self.consecutive_errors = dict.fromkeys(self.order, 0)
        self.seq: dict[tuple[str, str], int] = {}
        self.topic: dict[tuple[str, str], bytes] = {}
        self.local: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self.remote: dict[tuple[str, str], list[EdgeSender]] = {}
        self.receivers: list[EdgeReceiver] = []
        self.open_inputs: dict[str, set[str]] = {}
        self.finished: set[str] = set()
        self.curve: CurveKeys | None = None
        self.auth = None

    def _curve_keys(self) -> CurveKeys | None:
        host = self.plan.groups[self.group]["host"]
        if not any(e.get("curve") and host in (e["src_host"], e["dst_host"]) for e in self.plan.edges):
            return None
        return CurveKeys.load(self.plan.keys_dir, host, [h for h in self.plan.hosts if h != host])

    # -- building ---------------------------------------------------------------------------
    def build(self) -> None:
        for name in self.order:
            spec = self.plan.nodes[name]
            cls = resolve(spec["type"])
            node = cls(cls.Params(**spec["params"]), name)
            node.setup({p: StreamInfo.from_dict(i) for p, i in spec["inputs"].items()})
            if not isinstance(node, Source):  # a source opens in its own thread
                node.open()
            self.nodes[name] = node
            self.open_inputs[name] = set(spec["inputs"])  # the connected ones
            for port in cls.outputs:
                self.seq[(name, port)] = 0
                self.topic[(name, port)] = f"{name}.{port}".encode()
                self.local[(name, port)] = []
                self.remote[(name, port)] = []
        members = set(self.order)
        for e in self.plan.edges:
            if e["src"] in members and e["dst"] in members:
                self.local[(e["src"], e["src_port"])].append((e["dst"], e["dst_port"]))
            elif e["src"] in members:
                curve = (self.curve, self.curve.peers[e["dst_host"]]) if e.get("curve") else None
                self.remote[(e["src"], e["src_port"])].append(EdgeSender(
                    self.ctx, e["connect"], e["policy"], e["queue"], self.stats[e["src"]], curve))
            elif e["dst"] in members:
                r = EdgeReceiver(self.ctx, e["bind"], e["policy"], e["queue"], self.stats[e["dst"]],
                                 self.curve if e.get("curve") else None)
                r.dst, r.dst_port = e["dst"], e["dst_port"]
                r.cross_host = e["transport"] == "tcp"
                self.receivers.append(r)
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        for senders in self.remote.values():
            for s in senders:
                s.wait_connected(deadline)

    # -- the hot path -----------------------------------------------------------------------
    def dispatch(self, name: str, port: str, frame: Frame) -> None:
        """Run node ``name`` on ``frame`` and route what it emits (caller holds the lock)."""
        st = self.stats[name]
        st.frames_in += 1
        t0 = now_ns()
        try:
            outs = list(self.nodes[name].process(port, frame))
        except Exception:
            self._node_error(name)
            return
        t1 = now_ns()
        st.proc_ns.append(t1 - t0)
        st.lat_ns.append(t1 - frame.t_origin_ns)
        self.consecutive_errors[name] = 0
        for item in outs:
            if not (isinstance(item, tuple) and len(item) == 2 and (name, item[0]) in self.seq
                    and isinstance(item[1], Frame)):
                try:
                    raise TypeError(f"node {name!r} emitted {item!r}: expected (port, Frame) with "
                                    f"port in {self.nodes[name].outputs}")
                except TypeError:
                    self._node_error(name)
                continue
            self.emit(name, item[0], item[1])

    def emit(self, name: str, port: str, frame: Frame) -> None:
        key = (name, port)
        seq = self.seq[key]
        self.seq[key] = seq + 1
        frame = frame.with_seq(seq)
        self.stats[name].frames_out += 1
        for dst, dst_port in self.local[key]:
            self.dispatch(dst, dst_port, frame)
        senders = self.remote[key]
        if senders:
            try:
                parts = encode(frame, self.topic[key])
            except FrameEncodeError:
                self._node_error(name)
                return
            for s in senders:
                s.send(parts, self.aborting.is_set)

    def _node_error(self, name: str) -> None:
        st = self.stats[name]
        st.errors += 1
        self.consecutive_errors[name] += 1
        tb = traceback.format_exc()
        if st.errors <= 3:
            self.reporter.report({"type": "node_error", "node": name, "traceback": tb})
        if self.consecutive_errors[name] >= MAX_CONSECUTIVE_ERRORS:
            raise NodeFailed(f"node {name!r} raised on {MAX_CONSECUTIVE_ERRORS} frames in a row; "
                             f"last:\n{tb}")

    # -- end of stream ----------------------------------------------------------------------
    def finish(self, name: str) -> None:
        """``name`` has no more input: flush it, then tell everything downstream (holds the lock)."""
        if name in self.finished:
            return
        self.finished.add(name)
        try:
            for port, frame in self.nodes[name].close():
                self.emit(name, port, frame)
        except NodeFailed:
            raise
        except Exception:
            self._node_error(name)
        for port in self.nodes[name].outputs:
            for dst, dst_port in self.local[(name, port)]:
                self.input_ended(dst, dst_port)
            for s in self.remote[(name, port)]:
                s.send_eos(self.aborting.is_set)
        if len(self.finished) == len(self.order):
            self.done.set()

    def input_ended(self, name: str, port: str) -> None:
        self.open_inputs[name].discard(port)
        if not self.open_inputs[name]:
            self.finish(name)

    # -- threads ----------------------------------------------------------------------------
    def source_loop(self, name: str) -> None:
        node = self.nodes[name]
        assert isinstance(node, Source)
        try:
            node.open()
            while not self.go.wait(POLL_MS / 1000):
                if self.stopping.is_set():
                    break
            while not self.stopping.is_set():
                outs = node.read()
                if outs is None:
                    break
                if outs:
                    with self.lock:
                        for port, frame in outs:
                            self.emit(name, port, frame)
            with self.lock:
                self.finish(name)
        except NodeFailed as e:
            self.fail(str(e))
        except Exception as e:
            self.fail(f"node {name!r} ({self.plan.nodes[name]['type']}) failed: "
                      f"{type(e).__name__}: {e}\n{traceback.format_exc()}")

    def stop(self) -> None:
        """SIGTERM: stop the sources; the rest drains as their end of stream arrives."""
        self.stopping.set()

    def exit_now(self) -> None:
        """SIGUSR2: everything has finished (release), or the supervisor stops without waiting
        (abort: unfinished sinks are still flushed on the way out)."""
        self.release.set()
        if not self.done.is_set():
            self.abort()

    def abort(self) -> None:
        self.stopping.set()
        self.aborting.set()
        self.done.set()

    def fail(self, message: str) -> None:
        if self.failure is None:
            self.failure = message
            self.reporter.report({"type": "failed", "message": message})
        self.done.set()

    def receive_loop(self) -> None:
        """Block on the input sockets and serve each input in turn, one frame at a time.

        A frame that arrives while nothing waits is dispatched at once; what piled up behind it
        is drained afterwards (realtime: into the bounded queue), off the fresh frame's path.
        """
        receivers = self.receivers
        single = receivers[0] if len(receivers) == 1 else None
        if single is not None:
            single.sock.setsockopt(zmq.RCVTIMEO, POLL_MS)
        poller = zmq.Poller()
        by_socket = {}
        for r in receivers:
            poller.register(r.sock, zmq.POLLIN)
            by_socket[r.sock] = r
        while not self.done.is_set():
            if self.reporter.orphaned.is_set():
                self.abort()
            if self.stopping.is_set():  # this host stops: the other hosts are not ours to wait for
                for r in receivers:
                    if r.cross_host and not r.eos:
                        r.fill()
                        r.eos = True
            if not any(r.busy for r in receivers):
                try:
                    if single is not None:
                        single.receive()
                    else:
                        ready = poller.poll(POLL_MS)
                        if not ready:
                            continue
                        for sock, _ in ready:
                            by_socket[sock].receive()
                except zmq.Again:
                    continue
            for r in receivers:
                if r.pending:
                    with self.lock:
                        self.dispatch(r.dst, r.dst_port, r.pending.popleft())
                elif r.eos and not r.ended:
                    r.ended = True
                    poller.unregister(r.sock)
                    with self.lock:
                        self.input_ended(r.dst, r.dst_port)
                r.fill()

    def run(self) -> int:
        self.reporter.start()
        try:
            self.curve = self._curve_keys()
            self.auth = start_authenticator(self.ctx, self.curve) if self.curve else None
            self.build()
        except Exception as e:
            self.fail(f"group {self.group!r}: building its nodes failed: {type(e).__name__}: {e}\n"
                      f"{traceback.format_exc()}")
            return self.shutdown()
        self.reporter.report({"type": "ready"})
        threads = [threading.Thread(target=self.source_loop, args=(n,), name=f"source:{n}", daemon=True)
                   for n, node in self.nodes.items() if isinstance(node, Source)]
        for t in threads:
            t.start()
        try:
            if self.receivers:
                self.receive_loop()
            while not self.done.wait(POLL_MS / 1000):
                if self.reporter.orphaned.is_set():
                    self.abort()
        except NodeFailed as e:
            self.fail(str(e))
        except Exception as e:  # a runtime bug: report it like a node failure, never die silently
            self.fail(f"group {self.group!r}: {type(e).__name__}: {e}\n{traceback.format_exc()}")
        self.stopping.set()
        for t in threads:
            t.join(timeout=5)
        if self.failure is None:
            self.wait_for_release()
        return self.shutdown()

    def wait_for_release(self) -> None:
        """Stay until every group has finished: a process that exits with frames still in flight
        to a peer loses them (ZeroMQ only guarantees the hand-off to the kernel)."""
        self.reporter.report({"type": "finished"})
        while not self.release.wait(POLL_MS / 1000):
            if self.aborting.is_set() or self.reporter.orphaned.is_set():
                return

    def shutdown(self) -> int:
        # a source thread may still be inside a node: wait for it (bounded) before closing
        locked = self.lock.acquire(timeout=5)
        for name, node in self.nodes.items():  # flush what did not end in order (failure, abort)
            if name not in self.finished:
                self.finished.add(name)
                try:
                    for _ in node.close():
                        pass
                except Exception:
                    self.reporter.report({"type": "node_error", "node": name,
                                          "traceback": traceback.format_exc()})
        if locked:
            self.lock.release()
        for senders in self.remote.values():
            for s in senders:
                s.close()
        for r in self.receivers:
            r.close()
        self.reporter.finish()
        if self.auth:
            self.auth.stop()
        self.ctx.term()
        return EXIT_NODE_FAILED if self.failure else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    plan = Plan.from_json(json.loads(open(args[0]).read()))
    worker = Worker(plan, args[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Handlers run on the main thread between bytecodes, possibly inside Event.wait holding its
    # lock: act from a fresh thread so that setting an Event can never deadlock.
    def later(action: Callable[[], object]) -> Callable[..., None]:
        return lambda *_: threading.Thread(target=action, daemon=True).start()

    signal.signal(signal.SIGTERM, later(worker.stop))
    signal.signal(signal.SIGUSR1, later(worker.go.set))
    signal.signal(signal.SIGUSR2, later(worker.exit_now))
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
