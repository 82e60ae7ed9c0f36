"""One supervisor per host: starts a worker process per group, watches heartbeats, restarts a crashed
worker with back-off while the other groups keep running, shows and writes the live figures, and
shuts the graph down in order (sources stop, queues drain, sinks flush).

Exit codes of `Supervisor.run`: 0 clean; 1 a node failed for good, or the graph had to be stopped
before it drained (drain timeout, second interrupt), or a worker had to be killed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

import msgpack
import zmq

from pipeline.metrics import COUNTERS
from pipeline.plan import Plan

TICK_S = 0.1
#: After "stop now" (SIGUSR2), how long a worker has to flush its sinks before it is killed.
ABORT_GRACE_S = 3.0
#: ``--duration`` counts from the moment every group is ready; a graph still starting this long
#: after its duration would have ended is stopped anyway.
STARTUP_GRACE_S = 60.0
#: How long the supervisor waits, once every worker has exited, for their last figures.
FINAL_WAIT_S = 2.0


@dataclass
class GroupState:
    """What the supervisor knows of one worker process and its past incarnations."""

    name: str
    proc: subprocess.Popen | None = None
    restarts: int = 0
    failures_in_row: int = 0  # crashes without a stable run between them: drives the back-off
    started_at: float = 0.0
    restart_at: float | None = None
    last_heard: float = 0.0
    ready: bool = False
    finished: bool = False  # its nodes all ended; it waits for the release to exit
    released: bool = False
    failed_for_good: bool = False
    last_failure: str = ""
    #: latest figures of each incarnation (pid): counters in them are cumulative for that pid
    incarnations: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    latest_pid: int | None = None
    final_pids: set[int] = field(default_factory=set)  # incarnations whose last figures arrived

    @property
    def final_pending(self) -> bool:
        """Its last process exited by itself but its last figures have not arrived yet."""
        p = self.proc
        return p is not None and p.poll() is not None and p.returncode >= 0 \
            and p.pid not in self.final_pids

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    """Runs the groups of ``plan`` placed on ``host``."""

    def __init__(self, plan: Plan, host: str, run_dir: Path, *, duration: float | None = None,
                 metrics_file: IO[str] | None = None,
                 on_tick: Callable[[Supervisor], None] | None = None,
                 log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)):
        self.plan, self.host, self.run_dir = plan, host, run_dir
        self.settings = plan.supervisor
        self.duration = duration
        self.metrics_file = metrics_file
        self.on_tick = on_tick
        self.log = log
        self.groups = {g: GroupState(g) for g in plan.groups_on(host)}
        self.ctx = zmq.Context()
        self.inbox = self.ctx.socket(zmq.PULL)
        self.inbox.setsockopt(zmq.LINGER, 0)
        self.inbox.bind(plan.supervisor_endpoint)
        self.plan_file = run_dir / "plan.json"
        self.plan_file.write_text(json.dumps(plan.to_json()))
        self.t0 = time.monotonic()
        self.shutdown_requested = False
        self.all_ready = False  # every group has bound and connected its edges once
        self.t_go: float | None = None  # when the sources were let go (--duration counts from it)
        self.shutdown_started: float | None = None
        self.abort_requested = False
        self.abort_started: float | None = None
        self.failures: list[str] = []
        self.not_drained: list[str] = []  # groups stopped before their queues drained
        self.killed: list[str] = []

    # -- processes --------------------------------------------------------------------------
    def start_group(self, g: GroupState) -> None:
        g.ready = g.finished = g.released = False
        # its own process group: a terminal's Ctrl-C reaches the supervisor only, which relays it
        g.proc = subprocess.Popen([sys.executable, "-m", "pipeline.worker", str(self.plan_file),
                                   g.name], process_group=0)
        g.last_heard = g.started_at = time.monotonic()
        g.restart_at = None
        self.event("started", group=g.name, pid=g.proc.pid, restarts=g.restarts)

    def event(self, name: str, **fields: Any) -> None:
        self.write({"t": round(time.monotonic() - self.t0, 3), "event": name, **fields})

    def write(self, record: dict[str, Any]) -> None:
        if self.metrics_file is not None:
            self.metrics_file.write(json.dumps(record) + "\n")
            self.metrics_file.flush()

    def _check_processes(self, now: float) -> None:
        for g in self.groups.values():
            if g.failed_for_good:
                continue
            if g.proc is not None and g.proc.poll() is not None:
                rc = g.proc.returncode
                g.proc = None
                reason = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
                self.event("exit", group=g.name, rc=rc, reason=reason)
                if self.shutdown_started is not None:
                    continue
                if rc == 0:  # its sources ended (end of file): nothing left to do
                    continue
                if now - g.started_at >= self.settings["stable_after"]:
                    g.failures_in_row = 0  # it had been running well: a fresh failure
                if g.failures_in_row >= self.settings["max_restarts"]:
                    g.failed_for_good = True
                    msg = (f"group {g.name!r} (nodes {', '.join(self.plan.groups[g.name]['nodes'])}) "
                           f"failed for good after {g.failures_in_row} restarts in a row ({reason})")
                    if g.last_failure:
                        msg += f":\n{g.last_failure}"
                    self.failures.append(msg)
                    self.log(f"neuroflow: {msg}")
                    self.request_shutdown()
                    continue
                delay = min(self.settings["backoff"] * 2 ** g.failures_in_row,
                            self.settings["backoff_max"])
                g.restart_at = now + delay
                self.log(f"neuroflow: group {g.name!r} {reason}; restarting in {delay:.2f} s")
            if g.restart_at is not None and now >= g.restart_at and self.shutdown_started is None:
                g.restarts += 1
                g.failures_in_row += 1
                self.start_group(g)
            elif g.alive and now - g.last_heard > self.settings["heartbeat_timeout"]:
                self.event("heartbeat_lost", group=g.name, pid=g.proc.pid)
                self.log(f"neuroflow: group {g.name!r} silent for "
                         f"{now - g.last_heard:.1f} s; killing it")
                g.proc.kill()

    # -- messages ---------------------------------------------------------------------------
    def _receive(self, timeout_ms: int) -> None:
        if not self.inbox.poll(timeout_ms):
            return
        while True:
            try:
                raw = self.inbox.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = msgpack.unpackb(raw, raw=False)
                self._handle(msg)
            except Exception as e:  # a worker must not be able to crash its supervisor
                self.log(f"neuroflow: bad message from a worker: {type(e).__name__}: {e}")

    def _handle(self, msg: dict[str, Any]) -> None:
        g = self.groups.get(msg.get("group"))
        if g is None:
            return
        if g.proc is not None and msg.get("pid") == g.proc.pid:
            g.last_heard = time.monotonic()
        kind = msg["type"]
        if kind in ("metrics", "final"):
            g.incarnations[msg["pid"]] = msg["nodes"]
            if kind == "final":
                g.final_pids.add(msg["pid"])
            if g.proc is None or msg["pid"] == g.proc.pid:
                g.latest_pid = msg["pid"]
        elif kind == "ready" and g.proc is not None and msg["pid"] == g.proc.pid:
            g.ready = True
            self.event("ready", group=g.name, pid=g.proc.pid)
            if self.all_ready:
                os.kill(g.proc.pid, signal.SIGUSR1)  # a restarted group: go at once
            elif all(x.ready for x in self.groups.values()):
                self.all_ready = True
                for x in self.groups.values():
                    if x.alive:
                        os.kill(x.proc.pid, signal.SIGUSR1)
                self.t_go = time.monotonic()
                self.event("go")
        elif kind == "finished" and g.proc is not None and msg["pid"] == g.proc.pid:
            g.finished = True
            self._release_if_all_finished()
        elif kind == "node_error":
            self.event("node_error", group=g.name, node=msg["node"], traceback=msg["traceback"])
            self.log(f"neuroflow: node {msg['node']!r} raised (frame dropped, graph goes on):\n"
                     f"{msg['traceback'].rstrip()}")
        elif kind == "failed":
            g.last_failure = msg["message"]
            self.event("failed", group=g.name, message=msg["message"])
            self.log(f"neuroflow: group {g.name!r}: {msg['message'].rstrip()}")

    def _release_if_all_finished(self) -> None:
        """Once no group can still send anything, let every finished worker exit."""
        groups = [g for g in self.groups.values() if g.alive or g.restart_at is not None]
        if groups and all(g.finished and g.restart_at is None and not g.released for g in groups):
            for g in groups:
                g.released = True
                os.kill(g.proc.pid, signal.SIGUSR2)

    # -- figures ----------------------------------------------------------------------------
    def figures(self) -> dict[str, dict[str, Any]]:
        """Latest figures of every node on this host, counters summed over restarts."""
        out = {}
        for g in self.groups.values():
            latest = g.incarnations.get(g.latest_pid, {})
            for node in self.plan.groups[g.name]["nodes"]:
                fig = dict(latest.get(node, {}))
                for c in COUNTERS:
                    fig[c] = sum(inc.get(node, {}).get(c) or 0 for inc in g.incarnations.values())
                fig["group"], fig["restarts"] = g.name, g.restarts
                fig["pid"] = g.proc.pid if g.proc is not None else None
                out[node] = fig
        return out

    def _tick(self) -> None:
        self.write({"t": round(time.monotonic() - self.t0, 3), "nodes": self.figures()})
        if self.on_tick is not None:
            self.on_tick(self)

    # -- lifecycle --------------------------------------------------------------------------
    def request_shutdown(self, *_: Any) -> None:
        """Ctrl-C / SIGTERM: the first drains in order, the second stops without waiting."""
        if self.shutdown_started is not None and self.abort_started is None:
            self.abort_requested = True
        self.shutdown_requested = True

    def _start_shutdown(self, now: float) -> None:
        self.shutdown_started = now
        self.event("shutdown")
        for g in self.groups.values():
            g.restart_at = None
            if g.alive:
                g.proc.terminate()  # SIGTERM: sources stop, the rest drains and flushes

    def _start_abort(self, now: float, why: str) -> None:
        """Stop without draining: every worker flushes its sinks and exits (SIGUSR2); one that
        has not exited ABORT_GRACE_S later is killed."""
        self.abort_started = now
        self.event("abort", reason=why)
        for g in self.groups.values():
            g.restart_at = None
            if g.alive:
                if why == "drain timeout":
                    self.not_drained.append(g.name)
                    self.log(f"neuroflow: group {g.name!r} did not drain within "
                             f"{self.settings['drain_timeout']} s; stopping it")
                os.kill(g.proc.pid, signal.SIGUSR2)

    def run(self) -> int:
        old = {s: signal.signal(s, self.request_shutdown) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.event("plan", path=str(self.plan_file), host=self.host)
            for g in self.groups.values():
                self.start_group(g)
            next_tick = time.monotonic() + 1.0
            while True:
                self._receive(int(TICK_S * 1000))
                now = time.monotonic()
                self._check_processes(now)
                if now >= next_tick:
                    next_tick += 1.0
                    self._tick()
                    self._release_if_all_finished()
                if self.duration is not None and (
                        now - self.t0 >= self.duration + STARTUP_GRACE_S if self.t_go is None
                        else now - self.t_go >= self.duration):
                    self.shutdown_requested = True
                if self.shutdown_requested and self.shutdown_started is None:
                    self._start_shutdown(now)
                if not any(g.alive or g.restart_at is not None for g in self.groups.values()):
                    break
                if self.abort_started is None:
                    if self.failures:
                        self._start_abort(now, "a node failed for good")
                    elif self.abort_requested:
                        self._start_abort(now, "second interrupt")
                    elif (self.shutdown_started is not None
                          and now - self.shutdown_started > self.settings["drain_timeout"]):
                        self._start_abort(now, "drain timeout")
                elif now - self.abort_started > ABORT_GRACE_S:
                    for g in self.groups.values():
                        if g.alive:
                            self.killed.append(g.name)
                            self.log(f"neuroflow: group {g.name!r} did not stop; killing it")
                            g.proc.kill()
                            g.proc.wait()
            # the last figures of every worker that exited by itself (one killed sends none)
            deadline = time.monotonic() + FINAL_WAIT_S
            self._receive(0)
            while any(g.final_pending for g in self.groups.values()) \
                    and time.monotonic() < deadline:
                self._receive(50)
            self._check_processes(time.monotonic())
            self._tick()
            self.event("stopped")
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            for g in self.groups.values():
                if g.alive:
                    g.proc.kill()
                    g.proc.wait()
            self.inbox.close()
            self.ctx.term()
        return 1 if self.failures or self.killed or self.not_drained else 0


def make_run_dir() -> Path:
    """A private directory for this run's ipc sockets and plan (short: ipc paths max ~100 bytes)."""
    return Path(tempfile.mkdtemp(prefix="nf-", dir="/tmp"))


def remove_run_dir(run_dir: Path) -> None:
    shutil.rmtree(run_dir, ignore_errors=True)

