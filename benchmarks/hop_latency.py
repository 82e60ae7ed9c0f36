"""Hop latency and throughput of the process runtime, against raw pyzmq measured in the same run.

Why: a hop between two worker processes must cost little more than ZeroMQ itself, and a hop
between two nodes fused in one group must cost almost nothing; this script measures both so a
regression in `pipeline.worker`, `pipeline.transport` or `pipeline.codec` shows up as a number.

How, for N = 1 and N = 4 hops, with a 1 kHz 64-channel headset (64 x 16 float32 every 16 ms):

- **ours**: ``src -> p1 -> ... -> pN``, every node in its own process, run with the real CLI
  (``python -m pipeline.cli run``). ``src`` is ``synthetic_eeg`` (noise 0); ``p1 .. pN-1`` are
  ``gain`` at 1.0 (forwards the frame object untouched); ``pN`` is `LatencyProbe`, a pass-through
  defined here and loaded as the plugin ``hop_latency:LatencyProbe`` (this directory goes on the
  workers' ``PYTHONPATH``). The probe *is* the N-th node rather than a sink behind it, so the chain
  has exactly N inter-process hops; it records ``now_ns() - frame.t_origin_ns`` per frame when its
  ``process`` is called, i.e. after the receive, the decode and the dispatch of its worker, and
  saves the samples at ``close()``. Exact whole-run percentiles come from those samples, not from
  the per-second figures of the metrics file.
- **raw**: N + 1 processes (multiprocessing, spawn), PUSH connect -> PULL bind over ``ipc://``
  like our edges; the sender stamps ``time.monotonic_ns()`` into the first 8 bytes of a message
  as long as one of our frames on the wire (topic + header + payload, from `pipeline.codec.encode`)
  and sends it as one frame with ``send(bytes)`` on the same 16 ms absolute schedule; relays do a
  blocking ``recv()`` then ``send()``; the last process records arrival minus stamp.
- **fused**: the same chain in one group (``groups: {all: [...]}``): every hop is a direct call.
  ``fused_hop_*`` is the node-to-node hop: with probes at ``p1`` and ``pN``, per frame
  (arrival at ``pN`` - arrival at ``p1``) / (N - 1). N = 1 has no node-to-node hop, so its
  ``fused_hop_*`` are those of the N = 4 chain (``fused_hop_from: "n4"``). ``fused_src_hop_*`` is
  the first hop, from the source's time stamp to ``p1`` (the source's emit, then the dispatch),
  which on a virtual machine also pays for the CPU waking up after the source's 16 ms sleep.

The three are run one after the other, ``--rounds`` times (other load on the machine drifts; the
rounds spread it over all three), and their samples pooled. Latencies are per hop (end-to-end / N,
per frame); frames stamped in the first ``--warmup`` seconds of each run are discarded. CPU % is
that of the whole process tree (the CLI's supervisor and its workers, or the raw chain's
processes), as a percentage of one core, from ``/proc/PID/stat`` sampled after the warm-up and
shortly before the end, so start-up and shutdown are not counted; averaged over the rounds.

Throughput: ``synthetic_eeg`` (64 x 4 float32, ``speed: max``) -> probe in another process over a
``lossless`` edge; frames/s = frames received / time between the first and the last arrival.

Usage: ``.venv/bin/python benchmarks/hop_latency.py --json OUT`` (about 2.5 minutes). The numbers
are reported against their targets, never asserted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import yaml
import zmq
from pydantic import Field

from pipeline import Frame, FrameKind, Node, NodeParams, StreamInfo
from pipeline.clock import now_ns
from pipeline.codec import encode
from pipeline.node import Output

HERE = Path(__file__).resolve().parent
CHANNELS, SRATE, CHUNK = 64, 1000.0, 16
PERIOD_NS = int(CHUNK / SRATE * 1e9)
THROUGHPUT_CHUNK = 4
QUEUE = 64  # the default edge queue (SNDHWM / RCVHWM of our sockets)
CPU_TAIL_S = 0.5  # the CPU window closes this long before the run is told to stop
PROBE = "hop_latency:LatencyProbe"
TARGETS = (("ratio_p50", "<=", 1.3), ("ratio_p99", "<=", 1.5), ("fused_hop_p50_us", "<=", 10.0),
           ("n4.ratio_p50", "<=", 1.3), ("n4.ratio_p99", "<=", 1.5),
           ("n4.fused_hop_p50_us", "<=", 10.0), ("throughput.frames_per_s", ">=", 50_000.0))


class LatencyProbe(Node):
    """Pass-through that records each frame's ``t_origin_ns`` and arrival time, saved at close."""

    class Params(NodeParams):
        path: str = Field(description=".npy file: (2, frames) int64 [t_origin_ns, arrival_ns]")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        self.t_origin: list[int] = []
        self.arrival: list[int] = []
        return super().setup(info)

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        self.arrival.append(now_ns())
        self.t_origin.append(frame.t_origin_ns)
        yield "out", frame

    def close(self) -> Iterable[Output]:
        np.save(self.params.path, np.array([self.t_origin, self.arrival], dtype=np.int64))
        return ()


# -- measurement helpers -------------------------------------------------------------------------
def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants, from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` (all their threads) so far."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def steady_cpu_pct(pids: Callable[[], list[int]], t_go: float, seconds: float,
                   warmup: float) -> float:
    """CPU % (of one core) of the process tree between ``t_go + warmup`` and the end of the run."""
    time.sleep(max(0.0, t_go + warmup - time.monotonic()))
    tree = pids()
    c0, w0 = cpu_seconds(tree), time.monotonic()
    time.sleep(max(0.0, t_go + seconds - CPU_TAIL_S - time.monotonic()))
    c1, w1 = cpu_seconds(tree), time.monotonic()
    return 100.0 * (c1 - c0) / (w1 - w0)


def per_hop_us(samples: np.ndarray, hops: int, warmup: float) -> np.ndarray:
    """Per-frame latency per hop (µs) of rows ``[start_ns, end_ns]``, warm-up frames dropped."""
    start, end = samples
    keep = start >= start[0] + warmup * 1e9
    return (end[keep] - start[keep]) / hops / 1e3


def p50_p99(us: np.ndarray) -> tuple[float, float]:
    p50, p99 = np.percentile(us, [50, 99])
    return round(float(p50), 1), round(float(p99), 1)


# -- our runtime, through the CLI ----------------------------------------------------------------
def start_cli(graph: dict[str, Any], work: Path, seconds: float) -> tuple[subprocess.Popen, Path]:
    """Write ``graph``, start ``neuroflow run`` on it; return the process and its metrics file."""
    gfile, metrics = work / f"{graph['name']}.yaml", work / f"{graph['name']}.metrics.jsonl"
    gfile.write_text(yaml.safe_dump(graph, sort_keys=False))
    metrics.unlink(missing_ok=True)  # a previous round's "go" must not be taken for this one's
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    cli = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(gfile), "--duration",
                            str(seconds), "--metrics", str(metrics), "--no-live", "--quiet"],
                           env={**os.environ, "PYTHONPATH": path}, cwd=work)
    return cli, metrics


def finish_cli(cli: subprocess.Popen) -> None:
    if cli.wait() != 0:
        raise RuntimeError(f"{' '.join(cli.args)} exited with {cli.returncode}")


def run_graph(graph: dict[str, Any], work: Path, seconds: float, warmup: float) -> float:
    """Run ``graph`` with the CLI for ``seconds`` after its go; return the tree's steady CPU %."""
    cli, metrics = start_cli(graph, work, seconds)
    cpu = steady_cpu_pct(lambda: tree_pids(cli.pid), wait_for_go(metrics, cli), seconds, warmup)
    finish_cli(cli)
    return cpu


def wait_for_go(metrics: Path, cli: subprocess.Popen) -> float:
    """The monotonic time at which the supervisor let the sources go (its ``go`` event)."""
    while cli.poll() is None:
        if metrics.exists() and '"event": "go"' in metrics.read_text():
            return time.monotonic()
        time.sleep(0.02)
    raise RuntimeError(f"neuroflow run exited with {cli.returncode} before its sources started")


def chain_graph(name: str, hops: int, probes: dict[str, Path], fused: bool) -> dict[str, Any]:
    """``src -> p1 -> ... -> pN``: gains except ``probes``; a process per node unless ``fused``."""
    nodes: dict[str, Any] = {"src": {"type": "synthetic_eeg", "channels": CHANNELS, "srate": SRATE,
                                     "chunk": CHUNK, "noise": 0.0}}
    for i in range(1, hops + 1):
        node = f"p{i}"
        nodes[node] = ({"type": PROBE, "path": str(probes[node])} if node in probes
                       else {"type": "gain", "gain": 1.0})
    graph: dict[str, Any] = {"name": name, "nodes": nodes, "edges": [" -> ".join(nodes)]}
    if fused:
        graph["groups"] = {"all": list(nodes)}
    return graph


# -- raw pyzmq chain -----------------------------------------------------------------------------
def _socket(ctx: zmq.Context, kind: int) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.SNDHWM if kind == zmq.PUSH else zmq.RCVHWM, QUEUE)
    return sock


def raw_source(connect: str, size: int, frames: int, barrier: Any) -> None:
    ctx = zmq.Context()
    push = _socket(ctx, zmq.PUSH)
    push.connect(connect)
    barrier.wait()
    tail = bytes(size - 8)
    t_start = time.monotonic_ns()
    for k in range(frames):
        wait = (t_start + (k + 1) * PERIOD_NS - time.monotonic_ns()) / 1e9
        if wait > 0:
            time.sleep(wait)
        push.send(time.monotonic_ns().to_bytes(8, "little") + tail)
    push.send(b"")
    push.close()
    ctx.term()


def raw_relay(bind: str, connect: str, barrier: Any) -> None:
    ctx = zmq.Context()
    pull, push = _socket(ctx, zmq.PULL), _socket(ctx, zmq.PUSH)
    pull.bind(bind)
    push.connect(connect)
    barrier.wait()
    while True:
        msg = pull.recv()
        push.send(msg)
        if not msg:
            break
    pull.close()
    push.close()
    ctx.term()


def raw_sink(bind: str, out: str, barrier: Any) -> None:
    ctx = zmq.Context()
    pull = _socket(ctx, zmq.PULL)
    pull.bind(bind)
    barrier.wait()
    t_origin, arrival = [], []
    while True:
        msg = pull.recv()
        now = time.monotonic_ns()
        if not msg:
            break
        arrival.append(now)
        t_origin.append(int.from_bytes(msg[:8], "little"))
    np.save(out, np.array([t_origin, arrival], dtype=np.int64))
    pull.close()
    ctx.term()


def run_raw(hops: int, size: int, work: Path, out: Path, seconds: float, warmup: float) -> float:
    """The raw chain of ``hops`` hops for ``seconds``; return its steady CPU %."""
    spawn = mp.get_context("spawn")
    barrier = spawn.Barrier(hops + 2)
    ends = [f"ipc://{work}/raw{i}" for i in range(hops)]
    procs = [spawn.Process(target=raw_sink, args=(ends[-1], str(out), barrier))]
    procs += [spawn.Process(target=raw_relay, args=(ends[i - 1], ends[i], barrier))
              for i in range(1, hops)]
    frames = int(seconds * 1e9 / PERIOD_NS)
    procs.append(spawn.Process(target=raw_source, args=(ends[0], size, frames, barrier)))
    for p in procs:
        p.start()
    barrier.wait()
    cpu = steady_cpu_pct(lambda: [p.pid for p in procs], time.monotonic(), seconds, warmup)
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"raw chain process {p.name} exited with {p.exitcode}")
    return cpu


# -- the benchmark -------------------------------------------------------------------------------
def wire_bytes() -> int:
    """Bytes of one of our 64 x 16 frames on the first edge (all its message parts)."""
    frame = Frame(FrameKind.SAMPLES, np.zeros((CHANNELS, CHUNK), np.float32), now_ns(),
                  t_device=0.0)
    return sum(memoryview(p).nbytes for p in encode(frame, b"src.out"))


def latency(hops: int, work: Path, seconds: float, warmup: float, rounds: int) -> dict[str, Any]:
    """Raw, ours and fused chains of ``hops`` hops, alternated ``rounds`` times (against drift)."""
    us: dict[str, list[np.ndarray]] = {"raw": [], "ours": [], "src": [], "node": []}
    cpu: dict[str, list[float]] = {"raw": [], "ours": [], "fused": []}
    last = f"p{hops}"
    for r in range(rounds):
        raw, ours = work / f"raw{hops}.{r}.npy", work / f"ours{hops}.{r}.npy"
        fused = {node: work / f"fused{hops}.{r}.{node}.npy" for node in ("p1", last)}
        cpu["raw"].append(run_raw(hops, wire_bytes(), work, raw, seconds, warmup))
        cpu["ours"].append(run_graph(chain_graph(f"hops{hops}", hops, {last: ours}, fused=False),
                                     work, seconds, warmup))
        cpu["fused"].append(run_graph(chain_graph(f"fused{hops}", hops, fused, fused=True),
                                      work, seconds, warmup))
        us["raw"].append(per_hop_us(np.load(raw), hops, warmup))
        us["ours"].append(per_hop_us(np.load(ours), hops, warmup))
        first, end = np.load(fused["p1"]), np.load(fused[last])
        us["src"].append(per_hop_us(first, 1, warmup))
        if hops > 1:  # both probes saw the same frames, in order, in one process
            us["node"].append(per_hop_us(np.stack([first[1], end[1]]), hops - 1, warmup))
    pooled = {k: np.concatenate(v) for k, v in us.items() if v}
    r50, r99 = p50_p99(pooled["raw"])
    h50, h99 = p50_p99(pooled["ours"])
    s50, s99 = p50_p99(pooled["src"])
    out = {"hops": hops, "raw_zmq_p50_us": r50, "raw_zmq_p99_us": r99, "hop_p50_us": h50,
           "hop_p99_us": h99, "ratio_p50": round(h50 / r50, 3), "ratio_p99": round(h99 / r99, 3),
           "fused_src_hop_p50_us": s50, "fused_src_hop_p99_us": s99,
           "raw_zmq_cpu_pct": round(float(np.mean(cpu["raw"])), 1),
           "cpu_pct": round(float(np.mean(cpu["ours"])), 1),
           "fused_cpu_pct": round(float(np.mean(cpu["fused"])), 1),
           "frames": {k: int(v.size) for k, v in pooled.items()}}
    if hops > 1:
        out["fused_hop_p50_us"], out["fused_hop_p99_us"] = p50_p99(pooled["node"])
    return out


def throughput(work: Path, frames: int) -> dict[str, Any]:
    """``frames`` frames of 64 x 4 float32, as fast as a lossless edge to another process takes."""
    probe = work / "throughput.npy"
    graph = {"name": "throughput",
             "nodes": {"src": {"type": "synthetic_eeg", "channels": CHANNELS, "srate": SRATE,
                               "chunk": THROUGHPUT_CHUNK, "noise": 0.0, "speed": "max",
                               "max_frames": frames},
                       "sink": {"type": PROBE, "path": str(probe)}},
             "edges": [{"chain": "src -> sink", "policy": "lossless"}]}
    finish_cli(start_cli(graph, work, frames / 5_000)[0])  # the duration only bounds a stuck run
    arrival = np.load(probe)[1]
    span = (arrival[-1] - arrival[0]) / 1e9
    return {"frames": int(arrival.size), "frames_sent": frames, "seconds": round(float(span), 3),
            "frames_per_s": round((arrival.size - 1) / span)}


def lookup(results: dict[str, Any], key: str) -> float:
    value: Any = results
    for part in key.split("."):
        value = value[part]
    return float(value)


def evaluate(results: dict[str, Any], targets: Iterable[tuple[str, str, float]]) -> dict[str, Any]:
    """``{key: {value, op, limit, met}}`` for each (dotted key, "<=" or ">=", limit)."""
    out = {}
    for key, op, limit in targets:
        value = lookup(results, key)
        out[key] = {"value": value, "op": op, "limit": limit,
                    "met": value <= limit if op == "<=" else value >= limit}
    return out


def arguments(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--json OUT``, ``--rounds``, ``--warmup``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON to this file")
    ap.add_argument("--rounds", type=int, default=2,
                    help="how often the compared runs alternate (load drifts: rounds spread it)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of frames discarded first")
    return ap


def conclude(results: dict[str, Any], targets: Iterable[tuple[str, str, float]],
             report: Callable[[dict[str, Any]], None], out: str | None) -> int:
    """The end of every benchmark: judge the results against their targets, print the table,
    write the JSON (to ``out`` if given); the exit code (0: numbers are reported, not asserted)."""
    results["targets"] = evaluate(results, targets)
    report(results)
    if out:
        Path(out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def print_targets(targets: dict[str, Any]) -> None:
    for name, t in targets.items():
        print(f"  {'met ' if t['met'] else 'MISS'} {name} = {t['value']:g} "
              f"(target {t['op']} {t['limit']:g})")


def report(results: dict[str, Any]) -> None:
    print("µs per hop      raw p50  raw p99  hop p50  hop p99  ratio p50/p99  fused p50/p99  "
          "fused src p50/p99  CPU % raw/ours/fused")
    for label, r in (("N=1", results), ("N=4", results["n4"])):
        print(f"{label:<14}{r['raw_zmq_p50_us']:>8.1f}{r['raw_zmq_p99_us']:>9.1f}"
              f"{r['hop_p50_us']:>9.1f}{r['hop_p99_us']:>9.1f}"
              f"{r['ratio_p50']:>9.2f} /{r['ratio_p99']:>5.2f}"
              f"{r['fused_hop_p50_us']:>8.1f} /{r['fused_hop_p99_us']:>5.1f}"
              f"{r['fused_src_hop_p50_us']:>12.1f} /{r['fused_src_hop_p99_us']:>6.1f}"
              f"{r['raw_zmq_cpu_pct']:>10.1f} /{r['cpu_pct']:>4.1f} /{r['fused_cpu_pct']:>4.1f}")
    t = results["throughput"]
    print(f"throughput, 64x4 float32 between 2 processes (lossless): {t['frames_per_s']:,} "
          f"frames/s ({t['frames']:,} frames in {t['seconds']} s)")
    print_targets(results["targets"])


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each latency run")
    ap.add_argument("--frames", type=int, default=200_000, help="frames of the throughput run")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nf-bench-", dir="/tmp") as tmp:
        work = Path(tmp)
        results = latency(1, work, args.seconds, args.warmup, args.rounds)
        results["n4"] = latency(4, work, args.seconds, args.warmup, args.rounds)
        results.update(fused_hop_p50_us=results["n4"]["fused_hop_p50_us"],
                       fused_hop_p99_us=results["n4"]["fused_hop_p99_us"], fused_hop_from="n4")
        results["throughput"] = throughput(work, args.frames)
    results["payload"] = {"channels": CHANNELS, "samples": CHUNK, "dtype": "float32",
                          "period_ms": PERIOD_NS / 1e6, "wire_bytes": wire_bytes()}
    return conclude(results, TARGETS, report, args.json)


if __name__ == "__main__":
    sys.exit(main())
