"""Inference cost: the ``onnx`` node against a raw ``session.run`` of the same model on the same
windows, in the same run.

Why: the node adds a shape check, a NaN check, a copy into its bound input buffer, softmax,
argmax and a Frame to what ONNX Runtime does; on a realistic model that must stay small
(target: p50 ratio <= 1.1), and IO binding must pay for itself.

Section ``onnx`` (the keys at the top level of the JSON, details under ``"onnx"``):

- model: an EEGNet-sized conv net built here with ``onnx.helper`` (EEGNet-8,2 of Lawhern et al.
  2018 with batch norm folded: temporal conv 1x64, depthwise spatial conv 64x1, ELU, pool 4,
  separable conv 1x16, ELU, pool 8, dense), 64 channels x 480 samples (3 s at 160 Hz) -> 2
  logits, seeded weights, neuroflow metadata; one intra-op thread, CPU provider.
- **onnx**: ``OnnxModel.process`` on each window frame (default params: IO binding on, softmax
  from the metadata's ``logits``); **raw**: ``session.run([out], {in: window[None, None]})`` on a
  session built with the same thread settings; **onnx_nobind**: the node with
  ``io_binding: false``. Each call timed alone (``now_ns`` before and after), the three
  alternated in ``--rounds`` rounds over the same ``--windows`` windows (the order rotated
  each round, so drift and caches do not favour one); samples pooled. Before timing, the three
  run for ``--warmup`` seconds and those calls are discarded (besides the node's own warm-up).
- the same three on a tiny model (a linear layer over 4 x 32 windows, ``tiny``), where ORT's
  per-call overhead, and so IO binding, shows.
- the node's probabilities are checked equal to a softmax of raw's logits (``max_abs_diff``).

Section ``snn`` (``snn_steps_per_s``, details under ``"snn"``): a NIR network of the size an
event-camera classifier starts at (2 x 34 x 34 input, as N-MNIST -> conv 8 x 3 x 3 -> LIF ->
sum-pool 2 -> flatten -> affine 10 -> LIF; seeded weights, dt 1 ms) written with ``nir.write``
and run by the ``snn`` node on ``--steps`` steps of random spikes at 10 % density:
``snn_steps_per_s`` is the executor running all of them in one call (`kernels.snn.Network.run`,
the offline / replay case), ``node_steps_per_s`` the node fed one step per frame (the live case,
each call paying the node's checks and a Frame). Best of ``--rounds``; no target is set.

Section ``hd_snn`` (``hd_snn_mev_s``, details under ``"hd_snn"``): the ``hd_snn`` node with a
kernel of the paper's size (8 classes x 2 polarities x 12 delays x 11 x 11, seeded, half the taps
pruned away), dt 1 ms, predictions every 10 ms, on ``--hd-events`` events uniform over a
320 x 240 sensor (a DVXplorer) at 1 Mev/s, in batches of 4096; best of ``--rounds``; also the
synaptic operations per event (``synops_per_event``). No target is set.

Sections are a dict (`SECTIONS`): each adds its headline keys at the top level of the JSON and
its targets; ``--sections`` runs some of them.

Usage: ``.venv/bin/python benchmarks/inference.py --json OUT`` (about 20 s). Numbers are
reported against their targets, never asserted.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from eeg_latency import machine
from hop_latency import arguments, conclude, p50_p99, print_targets
from kernels.onnx_session import ModelMeta, load_ort, write_metadata
from nodes.inference import OnnxModel
from nodes.window import Window
from pipeline import Frame, FrameKind, StreamInfo
from pipeline.clock import now_ns

SRATE = 160.0
EEGNET = {"channels": 64, "samples": 480, "classes": 2, "f1": 8, "depth": 2, "f2": 16}
TINY = {"channels": 4, "samples": 32, "classes": 3}
VARIANTS = ("onnx", "raw", "onnx_nobind")


# -- models --------------------------------------------------------------------------------------
def _model(nodes: list[Any], weights: dict[str, np.ndarray], input_shape: list[Any],
           classes: int, channels: int, samples: int, layout: tuple[str, ...]) -> onnx.ModelProto:
    """A graph ``x -> ... -> logits`` with neuroflow metadata (IR 9, opset 17: what ORT reads)."""
    g = helper.make_graph(nodes, "bench", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         input_shape)],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                         ["batch", classes])],
                          [numpy_helper.from_array(w, name) for name, w in weights.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    write_metadata(model, ModelMeta(layout, tuple(f"EEG{i + 1:03d}" for i in range(channels)),
                                    SRATE, samples, tuple(f"class{i}" for i in range(classes)),
                                    "uV", "logits"))
    onnx.checker.check_model(model, full_check=True)
    return model


def eegnet(channels: int, samples: int, classes: int, f1: int, depth: int, f2: int,
           seed: int = 0) -> onnx.ModelProto:
    """EEGNet-f1,depth (batch norm folded into the convolutions, dropout gone: inference)."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}

    def w(name: str, *shape: int) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        weights[name] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
        return name

    f = f1 * depth
    node = helper.make_node
    nodes = [
        node("Conv", ["x", w("w1", f1, 1, 1, 64), w("b1", f1)], ["c1"], pads=[0, 31, 0, 32]),
        node("Conv", ["c1", w("w2", f, 1, channels, 1), w("b2", f)], ["c2"], group=f1),
        node("Elu", ["c2"], ["e2"]),
        node("AveragePool", ["e2"], ["p2"], kernel_shape=[1, 4], strides=[1, 4]),
        node("Conv", ["p2", w("w3", f, 1, 1, 16), w("b3", f)], ["c3"], group=f, pads=[0, 7, 0, 8]),
        node("Conv", ["c3", w("w4", f2, f, 1, 1), w("b4", f2)], ["c4"]),
        node("Elu", ["c4"], ["e4"]),
        node("AveragePool", ["e4"], ["p4"], kernel_shape=[1, 8], strides=[1, 8]),
        node("Flatten", ["p4"], ["flat"], axis=1),
        node("Gemm", ["flat", w("wd", f2 * (samples // 32), classes), w("bd", classes)],
             ["logits"]),
    ]
    return _model(nodes, weights, ["batch", 1, channels, samples], classes, channels, samples,
                  ("batch", "1", "channels", "samples"))


def linear(channels: int, samples: int, classes: int, seed: int = 0) -> onnx.ModelProto:
    """A linear layer over the flattened window: the smallest real model."""
    rng = np.random.default_rng(seed)
    weights = {"W": (rng.standard_normal((channels * samples, classes))
                     / np.sqrt(channels * samples)).astype(np.float32),
               "b": rng.standard_normal(classes).astype(np.float32)}
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "W", "b"], ["logits"])]
    return _model(nodes, weights, ["batch", channels, samples], classes, channels, samples,
                  ("batch", "channels", "samples"))


# -- the comparison ------------------------------------------------------------------------------
def window_stream(channels: int, samples: int) -> StreamInfo:
    """What a ``window`` node over a 160 Hz headset of ``channels`` channels produces."""
    names = tuple(f"EEG{i + 1:03d}" for i in range(channels))
    win = Window(Window.Params(length=samples / SRATE, step=0.1), "win")
    return win.setup({"in": StreamInfo(FrameKind.SAMPLES, SRATE, names, ("uV",) * channels,
                                       shape=(channels,))})["out"]


def callers(path: Path, stream: StreamInfo) -> tuple[dict[str, Callable[[Frame], Any]],
                                                      dict[str, OnnxModel]]:
    """One callable per variant, each taking a window frame: the node's ``process`` (with and
    without IO binding) and a raw ``session.run`` with the same session settings."""
    nodes = {}
    for name, binding in (("onnx", True), ("onnx_nobind", False)):
        node = OnnxModel(OnnxModel.Params(model=str(path), io_binding=binding), name)
        node.setup({"in": stream})
        node.open()
        nodes[name] = node
    ort = load_ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    inp, out = session.get_inputs()[0], session.get_outputs()[0].name
    expand = (None,) * (len(inp.shape) - 2)  # the window as the model takes it: a view
    warm = np.zeros((1,) * len(expand) + stream.shape, np.float32)
    for _ in range(nodes["onnx"].params.warmup):  # as many warm-up runs as the node makes
        session.run([out], {inp.name: warm})

    def raw(frame: Frame) -> np.ndarray:
        return session.run([out], {inp.name: frame.data[expand]})[0]

    def through(node: OnnxModel) -> Callable[[Frame], Any]:
        return lambda frame: list(node.process("in", frame))

    return {"onnx": through(nodes["onnx"]), "raw": raw,
            "onnx_nobind": through(nodes["onnx_nobind"])}, nodes


def compare(model: onnx.ModelProto, channels: int, samples: int, windows: int, rounds: int,
            warmup_s: float, work: Path) -> dict[str, Any]:
    """The three variants alternated over the same windows; pooled percentiles (µs)."""
    path = work / f"{model.graph.name}-{channels}x{samples}.onnx"
    onnx.save(model, path)
    stream = window_stream(channels, samples)
    call, nodes = callers(path, stream)
    rng = np.random.default_rng(1)
    frames = [Frame(FrameKind.TENSOR, (10 * rng.standard_normal((channels, samples)))
                    .astype(np.float32), now_ns()) for _ in range(windows)]
    stop = now_ns() + int(warmup_s * 1e9)
    while now_ns() < stop:
        for name in VARIANTS:
            call[name](frames[0])
    us: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for r in range(rounds):
        order = VARIANTS[r % 3:] + VARIANTS[:r % 3]
        for name in order:
            f, times = call[name], us[name]
            for frame in frames:
                t0 = now_ns()
                f(frame)
                times.append((now_ns() - t0) / 1e3)
    probs = np.stack([out[0][1].data for out in map(call["onnx"], frames)])
    logits = np.concatenate([call["raw"](frame) for frame in frames])
    out: dict[str, Any] = {}
    for name in VARIANTS:
        out[f"{name}_p50_us"], out[f"{name}_p99_us"] = p50_p99(np.array(us[name]))
    for q in ("p50", "p99"):
        out[f"ratio_{q}"] = round(out[f"onnx_{q}_us"] / out[f"raw_{q}_us"], 3)
        out[f"nobind_ratio_{q}"] = round(out[f"onnx_nobind_{q}_us"] / out[f"raw_{q}_us"], 3)
    out["binding_saves_p50_us"] = round(out["onnx_nobind_p50_us"] - out["onnx_p50_us"], 1)
    z = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    out["max_abs_diff"] = float(np.abs(probs - z / z.sum(axis=1, keepdims=True)).max())
    out["calls_per_variant"] = windows * rounds
    out["node_figures"] = nodes["onnx"].figures()
    out["model_bytes"] = path.stat().st_size
    return out


def onnx_section(args: Any, work: Path) -> dict[str, Any]:
    """The EEGNet-sized comparison (headline keys) and the tiny one (under ``onnx.tiny``)."""
    big = compare(eegnet(**EEGNET), EEGNET["channels"], EEGNET["samples"], args.windows,
                  args.rounds, args.warmup, work)
    tiny = compare(linear(**TINY), TINY["channels"], TINY["samples"], args.windows * 10,
                   args.rounds, args.warmup, work)
    headline = {k: big[k] for k in ("onnx_p50_us", "onnx_p99_us", "raw_p50_us", "raw_p99_us",
                                    "ratio_p50", "ratio_p99")}
    return {**headline, "onnx": {"model": {"eegnet": EEGNET, "srate": SRATE, "threads": 1,
                                           "provider": "cpu"},
                                 "eegnet": big, "tiny": {"model": TINY, **tiny}}}


def onnx_report(results: dict[str, Any]) -> None:
    print("µs per call            onnx p50/p99      raw p50/p99   ratio p50/p99   "
          "no binding p50/p99   binding saves p50")
    for label, r in (("EEGNet 64x480 -> 2", results["onnx"]["eegnet"]),
                     ("linear 4x32 -> 3", results["onnx"]["tiny"])):
        print(f"{label:<20}{r['onnx_p50_us']:>9.1f} /{r['onnx_p99_us']:>7.1f}"
              f"{r['raw_p50_us']:>9.1f} /{r['raw_p99_us']:>7.1f}"
              f"{r['ratio_p50']:>9.3f} /{r['ratio_p99']:>6.3f}"
              f"{r['onnx_nobind_p50_us']:>12.1f} /{r['onnx_nobind_p99_us']:>7.1f}"
              f"{r['binding_saves_p50_us']:>14.1f}")


# -- snn ----------------------------------------------------------------------------------------
SNN_INPUT = (2, 34, 34)


def snn_graph(seed: int = 0) -> Any:
    """2 x 34 x 34 -> conv 8 x 3 x 3 -> LIF -> sum-pool 2 -> flatten -> affine 10 -> LIF."""
    import nir

    from kernels.snn import set_timing

    rng = np.random.default_rng(seed)

    def lif(shape: tuple[int, ...], tau: float, thr: float) -> Any:
        return nir.LIF(tau=np.full(shape, tau), r=np.ones(shape), v_leak=np.zeros(shape),
                       v_threshold=np.full(shape, thr), v_reset=np.zeros(shape))

    graph = nir.NIRGraph(nodes={
        "input": nir.Input(np.array(SNN_INPUT)),
        "conv": nir.Conv2d(input_shape=(34, 34), weight=rng.normal(0, .5, (8, 2, 3, 3)),
                           stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(8)),
        "lif1": lif((8, 34, 34), 5e-3, 0.5),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                              padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([8, 17, 17])}, start_dim=0),
        "fc": nir.Affine(weight=rng.normal(0, .1, (10, 8 * 17 * 17)), bias=np.zeros(10)),
        "lif2": lif((10,), 10e-3, 0.5),
        "output": nir.Output(np.array([10]))},
        edges=[("input", "conv"), ("conv", "lif1"), ("lif1", "pool"), ("pool", "flat"),
               ("flat", "fc"), ("fc", "lif2"), ("lif2", "output")])
    return set_timing(graph, 1e-3, "zero")


def snn_section(args: Any, work: Path) -> dict[str, Any]:
    import nir

    from kernels.snn import Network
    from nodes.snn import SNN

    path = work / "bench.nir"
    nir.write(str(path), snn_graph())
    rng = np.random.default_rng(1)
    xs = (rng.random((args.steps, *SNN_INPUT)) < 0.1).astype(np.float32)
    net = Network(nir.read(str(path), type_check=False))
    net.run(xs[:10], net.initial_state())  # compile
    block = []
    for _ in range(args.rounds):
        t0 = now_ns()
        net.run(xs, net.initial_state())
        block.append(now_ns() - t0)
    node = SNN(SNN.Params(model=str(path)), "snn")
    node.setup({"in": StreamInfo(FrameKind.TENSOR, shape=SNN_INPUT)})
    node.open()
    live = fastest_pass(node, [Frame(FrameKind.TENSOR, x, 0) for x in xs], args.rounds)
    steps = len(xs)
    return {"snn_steps_per_s": round(steps / (min(block) / 1e9)),
            "snn": {"steps": steps, "density": 0.1, "input": list(SNN_INPUT),
                    "node_steps_per_s": round(steps / (live / 1e9))}}


def fastest_pass(node: Any, frames: list[Frame], rounds: int) -> int:
    """Nanoseconds of the fastest of ``rounds`` passes of ``frames`` through ``node.process``
    (reset before each)."""
    best = None
    for _ in range(rounds):
        node.reset()
        t0 = now_ns()
        for f in frames:
            for _ in node.process("in", f):
                pass
        took = now_ns() - t0
        best = took if best is None else min(best, took)
    return best


def snn_report(results: dict[str, Any]) -> None:
    r = results["snn"]
    print(f"snn 2x34x34 -> conv8 -> LIF -> pool -> fc10 -> LIF, 10 % input spikes: "
          f"{results['snn_steps_per_s']:,} steps/s in one call, {r['node_steps_per_s']:,} "
          f"steps/s one step per frame through the node")


# -- hd_snn -------------------------------------------------------------------------------------
HD_SENSOR = (320, 240)
HD_KERNEL = (8, 2, 12, 11, 11)


def hd_snn_section(args: Any, work: Path) -> dict[str, Any]:
    from kernels.hd_snn import save_weights
    from nodes.hd_snn import HDSNN
    from pipeline.frame import EVENT_DTYPE

    rng = np.random.default_rng(2)
    path = work / "hd.npz"
    save_weights(path, rng.normal(0, 1, HD_KERNEL).astype(np.float32), dt_us=1000)
    n = args.hd_events
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, n, n))  # 1 Mev/s
    ev["x"], ev["y"] = rng.integers(0, HD_SENSOR[0], n), rng.integers(0, HD_SENSOR[1], n)
    ev["p"] = rng.integers(0, 2, n)
    node = HDSNN(HDSNN.Params(weights=str(path), keep_fraction=0.5, step_us=10_000), "hd")
    node.setup({"in": StreamInfo(FrameKind.EVENTS, dtype="events",
                                 sensor_size=(*HD_SENSOR, 2))})
    node.open()
    best = fastest_pass(node, [Frame(FrameKind.EVENTS, ev[i:i + 4096], 0)
                               for i in range(0, n, 4096)], args.rounds)
    figures = node.figures()
    return {"hd_snn_mev_s": round(n / (best / 1e9) / 1e6, 4),
            "hd_snn": {"events": n, "sensor": list(HD_SENSOR), "kernel": list(HD_KERNEL),
                       "keep_fraction": 0.5, "synops_per_event": figures.get("synops_per_event")}}


def hd_snn_report(results: dict[str, Any]) -> None:
    r = results["hd_snn"]
    print(f"hd_snn {r['kernel']} kernel, half pruned, {r['sensor'][0]}x{r['sensor'][1]}: "
          f"{results['hd_snn_mev_s']} Mev/s, {r['synops_per_event']} synaptic operations per event")


@dataclass(frozen=True)
class Section:
    """One benchmark section: ``run(args, work)`` -> results, its targets, its printout."""

    run: Callable[[Any, Path], dict[str, Any]]
    targets: tuple[tuple[str, str, float], ...]
    report: Callable[[dict[str, Any]], None]


SECTIONS: dict[str, Section] = {
    "onnx": Section(onnx_section, (("ratio_p50", "<=", 1.1),), onnx_report),
    "snn": Section(snn_section, (), snn_report),
    "hd_snn": Section(hd_snn_section, (), hd_snn_report),
}


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__)
    ap.set_defaults(rounds=3)
    ap.add_argument("--windows", type=int, default=200, help="windows per variant and round")
    ap.add_argument("--steps", type=int, default=3000, help="snn: time steps per round")
    ap.add_argument("--hd-events", type=int, default=50_000, help="hd_snn: events per round")
    ap.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS),
                    help="which sections to run")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {"machine": machine()}
    targets: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="nf-bench-", dir="/tmp") as tmp:
        for name in args.sections:
            results.update(SECTIONS[name].run(args, Path(tmp)))
            targets += SECTIONS[name].targets
    results["machine"]["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    results.update(rounds=args.rounds, warmup_s=args.warmup, sections=args.sections)

    def report(res: dict[str, Any]) -> None:
        for name in args.sections:
            SECTIONS[name].report(res)
        print_targets(res["targets"])

    return conclude(results, targets, report, args.json)


if __name__ == "__main__":
    sys.exit(main())
