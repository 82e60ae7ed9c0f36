"""onnx: real ONNX Runtime sessions on small models built here with onnx.helper (a seeded linear
layer over the window), checked against the same arithmetic written in NumPy; the model's
metadata checked against the stream at setup; providers checked after the session exists."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx  # the [dev] extra: onnx builds the models, onnxruntime ([cpu]) runs them
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from devices.recorder import read_recording
from kernels.onnx_session import (ModelMeta, ProviderError, load_ort, provider_names,
                                  provider_options, read_metadata, write_metadata)
from nodes.inference import OnnxModel
from nodes.window import Window
from pipeline import Frame, FrameKind, StreamInfo, config, graph
from pipeline.config import ConfigError

SRATE = 100.0
NAMES = ("C3", "Cz", "C4", "Pz")
CLASSES = ("left", "right", "rest")
T = 32  # samples per window (0.32 s)
# float32 arithmetic (ORT) against float64 (NumPy) over C*T = 128 products of unit size: the
# logits agree to ~1e-6, so the probabilities to well within 1e-5.
ATOL = 1e-5


def linear_model(path: Path, layout: str = "batch,channels,samples",
                 names: Sequence[str] = NAMES, samples: int = T, classes: Sequence[str] = CLASSES,
                 output: str = "logits", meta: bool = True, srate: float = SRATE,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Save a linear classifier over the flattened window (in ``layout`` order) to ``path``;
    return its weights ``W`` ((C*T) x K) and bias ``b``. ``output='probabilities'`` ends the
    graph with a Softmax."""
    rng = np.random.default_rng(seed)
    c, k = len(names), len(classes)
    w = (rng.standard_normal((c * samples, k)) / np.sqrt(c * samples)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    axes = layout.split(",")
    dims = {"batch": "batch", "channels": c, "samples": samples, "1": 1}
    batch_out = "batch" if "batch" in axes else 1
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "b"], ["z" if output == "probabilities" else "y"])]
    if output == "probabilities":
        nodes.append(helper.make_node("Softmax", ["z"], ["y"], axis=-1))
    g = helper.make_graph(
        nodes, "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [dims[a] for a in axes])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch_out, k])],
        [numpy_helper.from_array(np.array([-1, c * samples], np.int64), "flat"),
         numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    if meta:
        write_metadata(model, ModelMeta(tuple(axes), tuple(names), srate, samples,
                                        tuple(classes), "uV", output))
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return w, b


def reference(windows: np.ndarray, w: np.ndarray, b: np.ndarray,
              layout: str = "batch,channels,samples") -> np.ndarray:
    """Class probabilities of (n, C, T) windows in the model's channel order, in float64."""
    axes = [a for a in layout.split(",") if a in ("channels", "samples")]
    x = windows if axes == ["channels", "samples"] else windows.transpose(0, 2, 1)
    z = x.reshape(len(x), -1).astype(np.float64) @ w.astype(np.float64) + b
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def window_info(names: Sequence[str] = NAMES, srate: float = SRATE, samples: int = T) -> StreamInfo:
    """The stream a real `window` node produces over ``names`` at ``srate``."""
    win = Window(Window.Params(length=samples / srate, step=0.1), "win")
    return win.setup({"in": StreamInfo(FrameKind.SAMPLES, srate, tuple(names),
                                       ("uV",) * len(names), shape=(len(names),))})["out"]


def frames(windows: np.ndarray) -> list[Frame]:
    return [Frame(FrameKind.TENSOR, x, 1_000 + 7 * i, t_device=0.5 + 0.1 * i)
            for i, x in enumerate(windows)]


def run(node: OnnxModel, windows: np.ndarray) -> list[Frame]:
    out = [f for fr in frames(windows) for _, f in node.process("in", fr)]
    return out + [f for _, f in node.close()]


def opened(path: Path, info: StreamInfo, **params: Any) -> tuple[OnnxModel, StreamInfo]:
    node = OnnxModel(OnnxModel.Params(model=str(path), **params), "clf")
    out = node.setup({"in": info})["out"]
    node.open()
    return node, out


def random_windows(n: int, channels: int = len(NAMES), seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, channels, T)).astype(np.float32)


# -- the node's output --------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["batch,channels,samples", "batch,1,channels,samples",
                                    "channels,samples", "batch,samples,channels"])
@pytest.mark.parametrize("output", ["logits", "probabilities"])
def test_predictions_equal_the_numpy_reference(tmp_path: Path, layout: str, output: str) -> None:
    w, b = linear_model(tmp_path / "m.onnx", layout, output=output)
    node, info = opened(tmp_path / "m.onnx", window_info())
    assert (info.kind, info.class_names, info.shape) == (FrameKind.PREDICTION, CLASSES, (3,))
    x = random_windows(20)
    got = run(node, x)
    expected = reference(x, w, b, layout)
    assert len(got) == 20
    for f, src, p in zip(got, frames(x), expected):
        assert f.kind is FrameKind.PREDICTION and f.data.dtype == np.float32
        np.testing.assert_allclose(f.data, p, atol=ATOL)
        assert f.meta == {"label": CLASSES[int(p.argmax())], "index": int(p.argmax())}
        assert (f.t_origin_ns, f.t_device) == (src.t_origin_ns, src.t_device)
    assert {p.argmax() for p in expected} == {0, 1, 2}  # every class shows up: a real check
    figures = node.figures()
    assert (figures["runs"], figures["windows"], figures["mean_batch"]) == (20, 20, 1.0)
    assert figures["providers"] == "CPUExecutionProvider"


def test_a_model_without_metadata_runs_by_its_input_shape(tmp_path: Path) -> None:
    w, b = linear_model(tmp_path / "m.onnx", "batch,1,channels,samples", meta=False)
    node, info = opened(tmp_path / "m.onnx", window_info(), softmax=True)
    assert info.class_names == ("0", "1", "2")
    x = random_windows(5)
    got = run(node, x)
    np.testing.assert_allclose(np.stack([f.data for f in got]), reference(x, w, b), atol=ATOL)


def test_channels_in_another_order_are_matched_by_name(tmp_path: Path) -> None:
    w, b = linear_model(tmp_path / "m.onnx")
    stream = ("Fz", "C4", "Pz", "Oz", "Cz", "C3")  # a superset, shuffled
    node, _ = opened(tmp_path / "m.onnx", window_info(stream))
    x = random_windows(8, len(stream))
    order = [stream.index(n) for n in NAMES]
    got = run(node, x)
    np.testing.assert_allclose(np.stack([f.data for f in got]), reference(x[:, order], w, b),
                               atol=ATOL)


def test_channel_map_feeds_renamed_electrodes(tmp_path: Path) -> None:
    w, b = linear_model(tmp_path / "m.onnx")
    stream = ("EEG-C4", "EEG-Cz", "EEG-C3", "Pz")
    node, _ = opened(tmp_path / "m.onnx", window_info(stream),
                     channel_map={"C3": "EEG-C3", "Cz": "EEG-Cz", "C4": "EEG-C4"})
    x = random_windows(8)
    got = run(node, x)
    np.testing.assert_allclose(np.stack([f.data for f in got]),
                               reference(x[:, [2, 1, 0, 3]], w, b), atol=ATOL)


def test_batches_give_the_same_probabilities_as_one_by_one(tmp_path: Path) -> None:
    linear_model(tmp_path / "m.onnx")
    x = random_windows(10)
    single, _ = opened(tmp_path / "m.onnx", window_info())
    batched, _ = opened(tmp_path / "m.onnx", window_info(), batch=4)
    one, many = run(single, x), run(batched, x)
    # a batched GEMM may sum in another order than a single row: float32 round-off only
    np.testing.assert_allclose(np.stack([f.data for f in many]),
                               np.stack([f.data for f in one]), atol=1e-6)
    assert [f.t_origin_ns for f in many] == [f.t_origin_ns for f in frames(x)]
    assert [f.meta for f in many] == [f.meta for f in one]
    figures = batched.figures()
    assert (figures["runs"], figures["windows"], figures["mean_batch"]) == (3, 10, 3.33)


def test_batches_wait_for_a_full_batch_then_emit_all(tmp_path: Path) -> None:
    linear_model(tmp_path / "m.onnx")
    node, _ = opened(tmp_path / "m.onnx", window_info(), batch=3)
    emitted = [len(list(node.process("in", f))) for f in frames(random_windows(6))]
    assert emitted == [0, 0, 3, 0, 0, 3]


@pytest.mark.parametrize("io_binding", [True, False])
def test_warm_up_runs_happen_before_the_first_window(tmp_path: Path, io_binding: bool) -> None:
    linear_model(tmp_path / "m.onnx")
    node, _ = opened(tmp_path / "m.onnx", window_info(), warmup=3, io_binding=io_binding,
                     profile=str(tmp_path / "ort"))
    before = node.figures()
    assert (before["warmup_runs"], before["runs"]) == (3, 0)
    run(node, random_windows(2))
    # ORT's own trace of the session: one model_run event per run, whoever made it
    trace = json.loads(Path(node.figures()["profile"]).read_text())
    assert sum(e["name"] == "model_run" for e in trace) == 3 + 2
    assert node.figures()["runs"] == 2


def test_a_window_with_nan_is_counted_and_gets_no_prediction(tmp_path: Path) -> None:
    w, b = linear_model(tmp_path / "m.onnx")
    node, _ = opened(tmp_path / "m.onnx", window_info())
    x = random_windows(3)
    x[1, 2, 5] = np.nan
    got = run(node, x)
    assert [f.t_origin_ns for f in got] == [frames(x)[i].t_origin_ns for i in (0, 2)]
    np.testing.assert_allclose(got[1].data, reference(x[2:], w, b)[0], atol=ATOL)
    assert node.figures()["nonfinite"] == 1


def test_a_frame_of_another_shape_is_refused(tmp_path: Path) -> None:
    linear_model(tmp_path / "m.onnx")
    node, _ = opened(tmp_path / "m.onnx", window_info())
    with pytest.raises(ValueError, match=r"frame has shape \[4, 31\], the stream \[4, 32\]"):
        list(node.process("in", Frame(FrameKind.TENSOR, np.zeros((4, 31), np.float32), 0)))


# -- providers ------------------------------------------------------------------------------------
def _no_cuda_here() -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA: the provider may well be active here")


def test_requesting_cuda_on_a_cpu_build_is_a_loud_error(tmp_path: Path) -> None:
    _no_cuda_here()
    linear_model(tmp_path / "m.onnx")
    node = OnnxModel(OnnxModel.Params(model=str(tmp_path / "m.onnx"), providers=["cuda", "cpu"],
                                      provider_options={"cuda": {"device_id": 0}}), "clf")
    node.setup({"in": window_info()})  # validating needs no GPU
    with pytest.raises(ProviderError) as e:
        node.open()
    message = str(e.value)
    assert ("requested providers CUDAExecutionProvider, CPUExecutionProvider, but the session "
            "runs on CPUExecutionProvider: CUDAExecutionProvider not active") in message
    assert "allow_fallback" in message and "neuroflow[gpu]" in message


def test_allow_fallback_runs_on_what_is_active_and_says_so(tmp_path: Path) -> None:
    _no_cuda_here()
    w, b = linear_model(tmp_path / "m.onnx")
    node, _ = opened(tmp_path / "m.onnx", window_info(), providers=["tensorrt", "cuda"],
                     allow_fallback=True)
    assert node.figures()["providers"] == "CPUExecutionProvider"
    x = random_windows(2)
    np.testing.assert_allclose(np.stack([f.data for f in run(node, x)]), reference(x, w, b),
                               atol=ATOL)


def test_friendly_provider_options_become_onnx_runtime_s_own() -> None:
    # ORT's names, from its TensorRT / CUDA provider documentation
    assert provider_options(["tensorrt", "cuda", "cpu"], {
        "tensorrt": {"fp16": True, "engine_cache": "/tmp/trt", "device_id": 1,
                     "trt_min_subgraph_size": 5},
        "cuda": {"device_id": 1, "memory_limit": 2 ** 30}}) == [
        {"trt_fp16_enable": "1", "trt_engine_cache_path": "/tmp/trt",
         "trt_engine_cache_enable": "1", "device_id": "1", "trt_min_subgraph_size": "5"},
        {"device_id": "1", "gpu_mem_limit": "1073741824"}, {}]
    assert provider_names(["tensorrt", "cuda", "cpu", "OpenVINOExecutionProvider"]) == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider",
        "OpenVINOExecutionProvider"]
    with pytest.raises(ValueError, match="listed twice"):
        provider_names(["cpu", "CPUExecutionProvider"])


def test_without_onnxruntime_the_error_names_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import` sees when absent
    with pytest.raises(ImportError, match=r"neuroflow\[cpu\].*neuroflow\[gpu\]"):
        load_ort()


# -- metadata -------------------------------------------------------------------------------------
def test_metadata_round_trips_through_the_file_and_keeps_other_entries(tmp_path: Path) -> None:
    linear_model(tmp_path / "m.onnx", meta=False)
    model = onnx.load(tmp_path / "m.onnx")
    helper.set_model_props(model, {"author": "test", "neuroflow.srate": "1"})
    meta = ModelMeta(("batch", "1", "channels", "samples"), NAMES, 160.0, 480, CLASSES, "uV",
                     "logits")
    write_metadata(model, meta)
    onnx.save(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(tmp_path / "m.onnx", providers=["CPUExecutionProvider"])
    assert read_metadata(session) == meta
    props = session.get_modelmeta().custom_metadata_map
    assert props["author"] == "test" and props["neuroflow.srate"] == "160.0"
    assert json.loads(props["neuroflow.channel_names"]) == list(NAMES)
    assert props["neuroflow.input_layout"] == "batch,1,channels,samples"


@pytest.mark.parametrize("props, message", [
    ({"neuroflow.srate": "fast"}, "metadata neuroflow.srate = 'fast'"),
    ({"neuroflow.channel_names": "C3,C4"}, "metadata neuroflow.channel_names = 'C3,C4'"),
    ({"neuroflow.input_layout": "batch,chans,samples"}, "unknown axis 'chans'"),
    ({"neuroflow.input_layout": "channels,batch,samples"}, "'batch' can only be the first"),
    ({"neuroflow.output": "scores"}, "output must be one of logits, probabilities"),
])
def test_bad_metadata_names_the_key(props: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelMeta.from_props(props)


# -- config errors: the node, the field, both values ----------------------------------------------
EEG64 = tuple(f"EEG{i:03d}" for i in range(1, 65))


def build(tmp_path: Path, stream: str, window: str, clf: str) -> graph.Graph:
    text = textwrap.dedent(f"""\
        name: t
        nodes:
          eeg: {{type: synthetic_eeg, {stream}}}
          win: {{type: window, {window}}}
          clf:
            type: onnx
            model: {tmp_path / "m.onnx"}
        """) + textwrap.indent(textwrap.dedent(clf), "    ") + textwrap.dedent("""\
          out: {type: "null"}
        edges:
          - eeg -> win -> clf -> out
        """)
    return graph.build(config.loads(text, "g.yaml"))


def error_of(tmp_path: Path, stream: str, window: str, clf: str = "") -> str:
    with pytest.raises(ConfigError) as e:
        build(tmp_path, stream, window, clf)
    return str(e.value)


def test_a_64_channel_model_on_a_16_channel_headset_fails_at_its_model_line(tmp_path: Path) -> None:
    linear_model(tmp_path / "m.onnx", names=EEG64, samples=480, srate=160.0)
    message = error_of(tmp_path, "channels: 16, srate: 160", "length: 3.0")
    assert message.startswith(f"g.yaml:7: node 'clf' (onnx): field 'model': {tmp_path / 'm.onnx'} "
                              f"takes 64 channels, the stream has 16: no channel EEG017, EEG018")
    assert "channel_map" in message


def test_neuroflow_validate_reports_the_channel_mismatch(tmp_path: Path) -> None:
    linear_model(tmp_path / "m.onnx", names=EEG64, samples=480, srate=160.0)
    g = tmp_path / "g.yaml"
    g.write_text(f"""\
nodes:
  eeg: {{type: synthetic_eeg, channels: 16, srate: 160}}
  win: {{type: window, length: 3.0}}
  clf: {{type: onnx, model: {tmp_path / "m.onnx"}}}
  out: {{type: "null"}}
edges:
  - eeg -> win -> clf -> out
""")
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "validate", str(g)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert f"{g}:4: node 'clf' (onnx): field 'model':" in r.stderr
    assert "takes 64 channels, the stream has 16" in r.stderr


@pytest.mark.parametrize("stream, window, clf, expected", [
    ("channels: 4, srate: 250, names: [C3, Cz, C4, Pz]", "length: 3.0", "",
     "g.yaml:7: node 'clf' (onnx): field 'model': {m} was trained at 160 Hz; the stream is at "
     "250 Hz"),
    ("channels: 4, srate: 160, names: [C3, Cz, C4, Pz]", "length: 1.0", "",
     "g.yaml:7: node 'clf' (onnx): field 'model': {m} takes windows of 480 samples (3 s at "
     "160 Hz); the stream's have 160 samples (1 s at 160 Hz)"),
    ("channels: 4, srate: 160, names: [C3, Cz, C4, X]", "length: 3.0", "channel_map: {Pz: Y}\n",
     "g.yaml:8: node 'clf' (onnx): field 'channel_map': no channel Y; the stream has C3, Cz, "
     "C4, X"),
    ("channels: 4, srate: 160, names: [C3, Cz, C4, X]", "length: 3.0", "",
     "g.yaml:7: node 'clf' (onnx): field 'model': {m} takes 4 channels, the stream has 4: no "
     "channel Pz; the stream has C3, Cz, C4, X; map renamed electrodes with channel_map"),
    ("channels: 4, srate: 160, names: [C3, Cz, C4, Pz]", "length: 3.0", "channel_map: {Oz: Pz}\n",
     "g.yaml:8: node 'clf' (onnx): field 'channel_map': Oz: not a channel of {m}"),
    ("channels: 4, srate: 160, names: [C3, Cz, C4, Pz]", "length: 3.0", "softmax: false\n",
     "g.yaml:8: node 'clf' (onnx): field 'softmax': {m} declares it outputs logits; softmax: "
     "false contradicts it"),
    ("channels: 4, srate: 160, names: [C3, Cz, C4, Pz]", "length: 3.0", "providers: [gpu]\n",
     "g.yaml:8: node 'clf' (onnx): field 'providers': unknown provider 'gpu'"),
    ("channels: 4, srate: 160, names: [C3, Cz, C4, Pz]", "length: 3.0",
     "provider_options: {cuda: {device_id: 1}}\n",
     "g.yaml:8: node 'clf' (onnx): field 'provider_options': options for cuda, which is not in "
     "providers ['cpu']"),
    ("channels: 4, srate: 160, names: [C3, Cz, C4, Pz]", "length: 3.0", "output: probs\n",
     "g.yaml:8: node 'clf' (onnx): field 'output': {m} has no output 'probs'; its outputs: y"),
])
def test_a_model_that_does_not_fit_the_stream_names_node_field_and_values(
        tmp_path: Path, stream: str, window: str, clf: str, expected: str) -> None:
    linear_model(tmp_path / "m.onnx", samples=480, srate=160.0)
    assert error_of(tmp_path, stream, window, clf).startswith(
        expected.format(m=tmp_path / "m.onnx"))


def test_a_model_without_metadata_is_checked_by_its_input_shape(tmp_path: Path) -> None:
    linear_model(tmp_path / "m.onnx", "batch,1,channels,samples", names=EEG64, samples=480,
                 meta=False)
    message = error_of(tmp_path, "channels: 16, srate: 160", "length: 3.0", "softmax: true\n")
    assert message.startswith(f"g.yaml:7: node 'clf' (onnx): field 'model': {tmp_path / 'm.onnx'}: "
                              f"input 'x' is [?, 1, 64, 480]; the stream gives [1, 16, 480] per "
                              f"window (16 channels x 480 samples)")


@pytest.mark.parametrize("clf, expected", [
    ("", "g.yaml:5: node 'clf' (onnx): field 'softmax': {m} does not say whether it outputs "
         "logits or probabilities"),
    ("softmax: true\nbatch: 2\n", "g.yaml:9: node 'clf' (onnx): field 'batch': {m}: input 'x' "
                                  "[4, 480] has no batch axis"),
    ("softmax: true\nclass_names: [a, b]\n", "g.yaml:9: node 'clf' (onnx): field 'class_names': "
                                             "2 class names (a, b) for 3 outputs"),
])
def test_a_model_without_metadata_needs_what_it_cannot_say(tmp_path: Path, clf: str,
                                                           expected: str) -> None:
    linear_model(tmp_path / "m.onnx", "channels,samples", samples=480, meta=False)
    message = error_of(tmp_path, "channels: 4, srate: 160", "length: 3.0", clf)
    assert message.startswith(expected.format(m=tmp_path / "m.onnx"))


def test_a_missing_model_file_is_named_at_its_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "channels: 4, srate: 160", "length: 3.0")
    assert message.startswith(f"g.yaml:7: node 'clf' (onnx): field 'model': {tmp_path / 'm.onnx'}: "
                              f"no such model file")


# -- a real graph ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_graph_run_by_the_cli_predicts_once_per_window(tmp_path: Path, run_graph) -> None:
    w, b = linear_model(tmp_path / "m.onnx", names=("EEG001", "EEG002", "EEG003", "EEG004"))
    g = run_graph(f"""\
        name: classify
        nodes:
          eeg: {{type: synthetic_eeg, channels: 4, srate: 100, chunk: 10, speed: max,
                 max_frames: 30}}
          win: {{type: window, length: 0.32, step: 0.1}}
          clf: {{type: onnx, model: {tmp_path / "m.onnx"}, warmup: 2}}
          windows: {{type: recorder, path: windows.nfr}}
          predictions: {{type: recorder, path: predictions.nfr}}
        edges:
          - {{chain: eeg -> win -> clf -> predictions, policy: lossless}}
          - {{chain: win -> windows, policy: lossless}}
        """)
    assert g.finish() == 0, g.stderr
    windows = read_recording(g.graph.parent / "windows.nfr").frames
    rec = read_recording(g.graph.parent / "predictions.nfr")
    assert len(windows) == (300 - T) // 10 + 1  # 300 samples, 32 per window, a step of 10
    assert rec.info.class_names == CLASSES and not rec.truncated
    assert [f.t_origin_ns for f in rec.frames] == [f.t_origin_ns for f in windows]
    np.testing.assert_allclose(np.stack([f.data for f in rec.frames]),
                               reference(np.stack([f.data for f in windows]), w, b), atol=ATOL)
    assert [f.meta["label"] for f in rec.frames] == [CLASSES[int(f.data.argmax())]
                                                     for f in rec.frames]
    assert g.figures()["clf"]["node"]["warmup_runs"] == 2


def test_the_benchmark_compares_the_node_and_raw_runs_of_the_same_model(tmp_path: Path) -> None:
    """Nothing timed: the benchmark's EEGNet fits the node, and both of its callers agree."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # as when run
    import inference

    spec = inference.EEGNET
    path = tmp_path / "eegnet.onnx"
    onnx.save(inference.eegnet(**spec), path)
    call, _ = inference.callers(path, inference.window_stream(spec["channels"], spec["samples"]))
    x = 10 * np.random.default_rng(2).standard_normal((spec["channels"], spec["samples"]))
    frame = Frame(FrameKind.TENSOR, x.astype(np.float32), 5)
    [(_, got)] = call["onnx"](frame)
    z = call["raw"](frame)[0].astype(np.float64)
    expected = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    assert got.data.shape == (spec["classes"],) and got.t_origin_ns == 5
    np.testing.assert_allclose(got.data, expected, atol=1e-6)  # the same logits, float32 softmax
