"""End-to-end latency of a realistic EEG front end, fused and distributed, against a plain loop.

Why: what a BCI user feels is the time from a chunk leaving the headset to the window a decoder
sees. The runtime must add little to what the nodes themselves cost: fused in one process, the
latency should be that of calling the same nodes in a plain Python loop; one process per node, a
few ZeroMQ hops more, and still well within a 16 ms chunk period.

Graph (the real CLI, ``python -m pipeline.cli run`` on a generated YAML): ``synthetic_eeg``
(64 channels, 1000 Hz, 16-sample chunks, ``speed: realtime``) -> ``bandpass`` (1-40 Hz, IIR
order 4) -> ``notch`` (50 Hz) -> ``window`` (1 s every 62.5 ms; 62 samples at 1000 Hz) -> sink.

- **fused**: every node in one group (direct calls); **procs**: one process per node (4 hops).
- The sink is hop_latency's `LatencyProbe` (plugin ``hop_latency:LatencyProbe``), not ``null``:
  it does what ``null`` does plus recording, per window, ``frame.t_origin_ns`` and the time its
  ``process`` is called, saved at close, so the percentiles are exact over the whole run rather
  than per-second figures from the metrics file. A window's ``t_origin_ns`` is the source's stamp
  of the chunk that completed it (`nodes.window`), so latency = acquisition of a window's last
  chunk -> the window at the sink.
- **floor**: the same node classes built from the same parameters, called in a plain loop in this
  process: ``src.read()`` (the same pacing and stamp as in the runtime), then ``band.process``,
  ``notch.process``, ``window.process``; the clock is read as each window is yielded, and the
  latency is that minus the window's ``t_origin_ns``, i.e. the same two time points as the sink's.

Floor, fused and procs run one after the other, ``--rounds`` times (load from other processes
drifts; rounds spread it over all three), each for ``--duration / --rounds`` seconds; samples are
pooled. Windows stamped in the first ``--warmup`` seconds after the first window of a run are
discarded. CPU % is that of the process tree (hop_latency's method), or of this process for the
floor, as a percentage of one core.

Usage: ``.venv/bin/python benchmarks/eeg_latency.py --json OUT`` (about 1.5 minutes with the
defaults). Numbers are reported against their targets, never asserted.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hop_latency import (CHANNELS, CHUNK, PROBE, SRATE, arguments, conclude, p50_p99, per_hop_us,
                         print_targets, run_graph)
from pipeline.clock import now_ns
from pipeline.registry import resolve

#: The front end, node by node, in order (YAML parameters; the floor builds the same nodes).
CHAIN: dict[str, dict[str, Any]] = {
    "src": {"type": "synthetic_eeg", "channels": CHANNELS, "srate": SRATE, "chunk": CHUNK,
            "speed": "realtime"},
    "band": {"type": "bandpass", "low": 1.0, "high": 40.0, "order": 4},
    "notch": {"type": "notch", "freqs": [50.0]},
    "win": {"type": "window", "length": 1.0, "step": 0.0625},
}
TARGETS = (("fused_ratio_p50", "<=", 1.2), ("procs_p99_ms", "<=", 3.0))


def front_end_graph(name: str, probe: Path, fused: bool) -> dict[str, Any]:
    """The chain into the probe; one process per node unless ``fused``."""
    nodes = {**CHAIN, "sink": {"type": PROBE, "path": str(probe)}}
    graph: dict[str, Any] = {"name": name, "nodes": nodes, "edges": [" -> ".join(nodes)]}
    if fused:
        graph["groups"] = {"all": list(nodes)}
    return graph


def floor(seconds: float, out: Path) -> float:
    """The chain's nodes called in a plain loop for ``seconds``; saves ``[t_origin_ns, end_ns]``
    per window to ``out`` and returns this process's CPU % over the loop."""
    nodes = []
    for name, spec in CHAIN.items():
        params = {k: v for k, v in spec.items() if k != "type"}
        cls = resolve(spec["type"])
        nodes.append(cls(cls.Params(**params), name))
    src, band, notch, win = nodes
    info = src.setup({})["out"]
    for node in (band, notch, win):
        info = node.setup({"in": info})["out"]
    src.open()
    rows: list[tuple[int, int]] = []
    c0, w0 = time.process_time(), time.monotonic()
    stop = now_ns() + int(seconds * 1e9)
    while now_ns() < stop:
        for _, chunk in [out for out in src.read() or () if out[0] == "out"]:
            for _, f1 in band.process("in", chunk):
                for _, f2 in notch.process("in", f1):
                    for _, window in win.process("in", f2):
                        rows.append((window.t_origin_ns, now_ns()))
    cpu = 100.0 * (time.process_time() - c0) / (time.monotonic() - w0)
    np.save(out, np.array(rows, dtype=np.int64).T)
    return cpu


def p50_p99_ms(us: np.ndarray) -> tuple[float, float]:
    p50, p99 = p50_p99(us)
    return round(p50 / 1e3, 4), round(p99 / 1e3, 4)


def measure(work: Path, seconds: float, warmup: float, rounds: int) -> dict[str, Any]:
    """Floor, fused and procs alternated ``rounds`` times, ``seconds / rounds`` each."""
    each = seconds / rounds
    us: dict[str, list[np.ndarray]] = {"floor": [], "fused": [], "procs": []}
    cpu: dict[str, list[float]] = {"floor": [], "fused": [], "procs": []}
    for r in range(rounds):
        samples = {mode: work / f"{mode}{r}.npy" for mode in us}
        cpu["floor"].append(floor(each, samples["floor"]))
        for mode in ("fused", "procs"):  # a name per round: no stale metrics file is ever read
            graph = front_end_graph(f"eeg-{mode}-{r}", samples[mode], fused=mode == "fused")
            cpu[mode].append(run_graph(graph, work, each, warmup))
        for mode, path in samples.items():
            us[mode].append(per_hop_us(np.load(path), 1, warmup))
    out: dict[str, Any] = {}
    for mode, parts in us.items():
        pooled = np.concatenate(parts)
        out[f"{mode}_p50_ms"], out[f"{mode}_p99_ms"] = p50_p99_ms(pooled)
        out[f"{mode}_cpu_pct"] = round(float(np.mean(cpu[mode])), 1)
        out.setdefault("frames", {})[mode] = int(pooled.size)
    for mode in ("fused", "procs"):
        for q in ("p50", "p99"):
            out[f"{mode}_ratio_{q}"] = round(out[f"{mode}_{q}_ms"] / out[f"floor_{q}_ms"], 3)
    return out


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
                 platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "loadavg_1m_start": round(os.getloadavg()[0], 2)}


def report(results: dict[str, Any]) -> None:
    print("ms, end to end at the sink      p50      p99   ratio p50 / p99   CPU %   windows")
    for mode, label in (("floor", "floor (plain loop)"), ("fused", "fused (1 process)"),
                        ("procs", "procs (5 processes)")):
        ratio = ("        -" if mode == "floor" else
                 f"{results[f'{mode}_ratio_p50']:>9.2f} / {results[f'{mode}_ratio_p99']:<5.2f}")
        print(f"{label:<28}{results[f'{mode}_p50_ms']:>8.3f} {results[f'{mode}_p99_ms']:>8.3f}"
              f"   {ratio:<15}{results[f'{mode}_cpu_pct']:>7.1f}{results['frames'][mode]:>10}")
    m = results["machine"]
    print(f"{m['cores']} cores ({m['cpu']}), load average {m['loadavg_1m_start']} -> "
          f"{m['loadavg_1m_end']}")
    print_targets(results["targets"])


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__)
    ap.add_argument("--duration", type=float, default=20.0,
                    help="seconds per mode (floor, fused, procs), split over the rounds")
    args = ap.parse_args(argv)
    info = machine()
    with tempfile.TemporaryDirectory(prefix="nf-bench-", dir="/tmp") as tmp:
        results = measure(Path(tmp), args.duration, args.warmup, args.rounds)
    info["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    results.update(duration_s=args.duration, rounds=args.rounds, warmup_s=args.warmup,
                   chain=CHAIN, machine=info)
    return conclude(results, TARGETS, report, args.json)


if __name__ == "__main__":
    sys.exit(main())
