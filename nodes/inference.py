"""``onnx``: class probabilities from windows, by an ONNX model run in ONNX Runtime.

Why the checks at ``setup``: a model is trained on one montage, one sampling rate, one window
length and one unit; fed anything else it still outputs probabilities, just meaningless ones. So
the model file says what it expects (neuroflow's metadata keys, `kernels.onnx_session.META_KEYS`)
and ``setup`` compares that with the upstream `StreamInfo` before anything runs: a 64-channel
model on a 16-channel headset fails ``neuroflow validate`` at the node's ``model:`` line. Channels
are matched by name, so another channel order is mapped automatically and a ``channel_map``
(model channel -> stream channel) covers renamed electrodes. A model without metadata is checked
by shape alone (its ONNX input shape against the windows). ``setup`` only reads the file (a CPU
session with optimisation off: no GPU, nothing tuned); the configured session, its provider
check and its warm-up runs happen in ``open``, in the worker.

Each window becomes one PREDICTION frame: float32 probabilities (softmax applied when the model
outputs logits), ``meta = {"label", "index"}`` of the most probable class, and the window's
``t_origin_ns`` (latency counts from acquisition). A window with a non-finite value in a channel
the model takes is counted (``nonfinite``) and gets no prediction.

Batching (``batch: N``, models with a dynamic batch axis): the node collects N windows and runs
them as one batch. A node sees one frame at a time, so the first window of a batch waits for the
N - 1 after it: batching buys throughput (a replay, an offline evaluation) at that latency, and
is off (1) by default. The last, partial batch runs at the end of the stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Literal, Mapping

import numpy as np
from pydantic import Field

from kernels.onnx_session import (ModelInfo, ModelMeta, Runner, SessionConfig, TensorSpec,
                                  inspect_model, open_session, probabilities, provider_names,
                                  provider_options)
from nodes.channels import _names, _require
from pipeline import Frame, FrameKind, Node, NodeParams, ParamError, StreamInfo, StreamMismatch
from pipeline.node import Figure, Output
from pipeline.units import VOLTS

OptionValue = str | int | float | bool


def _shape(shape: Iterable[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _samples(n: int, srate: float | None) -> str:
    return f"{n} samples ({n / srate:g} s at {srate:g} Hz)" if srate else f"{n} samples"


class OnnxModel(Node):
    """Classify each window with an ONNX model; PREDICTION frames out."""

    type_name = "onnx"
    accepts = {"in": (FrameKind.TENSOR,)}

    class Params(NodeParams):
        model: str = Field(description="ONNX model file")
        providers: list[str] = Field(["cpu"], description="execution providers in priority "
                                                          "order: tensorrt, cuda, cpu")
        provider_options: dict[str, dict[str, OptionValue]] = Field(
            {}, description="per provider: options (tensorrt: fp16, int8, engine_cache, "
                            "timing_cache, workspace, device_id; cuda: device_id, "
                            "memory_limit, conv_search; or ONNX Runtime's own names)")
        allow_fallback: bool = Field(False, description="run even when a requested provider is "
                                                        "not active (else: an error at start)")
        intra_op_threads: int = Field(1, ge=0, description="threads per operator (0: one per "
                                                           "core; 1: no thread pool)")
        inter_op_threads: int = Field(1, ge=0, description="threads across operators (0: ORT's "
                                                           "default)")
        sequential: bool = Field(True, description="run operators one after another")
        spin: bool = Field(False, description="let ORT's pool threads spin between runs")
        optimization: Literal["disable", "basic", "extended", "all"] = Field(
            "all", description="ONNX Runtime graph optimisation level")
        warmup: int = Field(3, ge=0, description="runs on zeros before the first window")
        batch: int = Field(1, ge=1, description="windows per run (needs a dynamic batch axis; "
                                                "the first of a batch waits for the rest)")
        io_binding: bool = Field(True, description="bind input and output buffers once")
        input: str | None = Field(None, description="model input fed (default: the first)")
        output: str | None = Field(None, description="model output read (default: the first)")
        softmax: bool | None = Field(None, description="apply softmax (logits out); default: "
                                                       "from the metadata neuroflow.output")
        class_names: list[str] | None = Field(None, description="names of the outputs "
                                                                "(default: from the metadata)")
        channel_map: dict[str, str] = Field({}, description="model channel -> stream channel, "
                                                            "for renamed electrodes")
        profile: str | None = Field(None, description="write an ONNX Runtime profile (JSON "
                                                      "trace of every run) with this prefix")

    # -- setup: read the model, check it against the stream ---------------------------------
    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        stream, p = info["in"], self.params
        try:
            provider_names(p.providers)
        except ValueError as e:
            raise ParamError("providers", str(e)) from None
        try:
            provider_options(p.providers, p.provider_options)
        except ValueError as e:
            raise ParamError("provider_options", str(e)) from None
        try:
            model = inspect_model(p.model)
        except (ImportError, OSError, ValueError) as e:
            raise ParamError("model", str(e)) from None
        self.window = stream.shape
        if not self.window or min(self.window) < 1:
            raise StreamMismatch(f"the onnx node needs fixed-size tensors; the stream's are "
                                 f"{list(self.window)}")
        inp, out = self._ports(model)
        meta = model.meta
        self.index = self._channels(stream, meta)
        self._check_stream(stream, meta)
        self.item_shape, self.batch_axis, self.transpose = self._arrange(stream, meta, inp)
        self._check_batch(inp)
        self.class_names, self.apply_softmax = self._outputs(meta, out)
        self.input_name, self.output_name = inp.name, out.name
        self.runner: Runner | None = None
        self.nonfinite = 0
        self.profile_file = ""
        self.reset()
        return {"out": StreamInfo(FrameKind.PREDICTION, stream.srate,
                                  shape=(len(self.class_names),),
                                  class_names=self.class_names, clock=stream.clock,
                                  extra={"model": p.model, "providers": list(p.providers)})}

    def _ports(self, model: ModelInfo) -> tuple[TensorSpec, TensorSpec]:
        """The input fed and the output read, both float tensors."""
        p = self.params
        if len(model.inputs) != 1:
            raise ParamError("model", f"{p.model} has inputs "
                                      f"{', '.join(i.name for i in model.inputs)}; the onnx node "
                                      f"feeds exactly one")
        chosen = []
        for field, specs, name in (("input", model.inputs, p.input),
                                   ("output", model.outputs, p.output)):
            by_name = {s.name: s for s in specs}
            spec = specs[0] if name is None else by_name.get(name)
            if spec is None:
                raise ParamError(field, f"{p.model} has no {field} {name!r}; its {field}s: "
                                        f"{', '.join(by_name)}")
            if spec.dtype is None:
                raise ParamError("model", f"{p.model}: {field} {spec.name!r} is {spec.type}; the "
                                          f"onnx node takes float, float16 or double tensors")
            chosen.append(spec)
        return chosen[0], chosen[1]

    def _channels(self, stream: StreamInfo, meta: ModelMeta) -> np.ndarray | None:
        """Stream row of each model channel, matched by name (None: the stream as it is)."""
        p = self.params
        if meta.channel_names is None:
            if p.channel_map:
                raise ParamError("channel_map", f"{p.model} declares no channel names (metadata "
                                                f"neuroflow.channel_names): nothing to map")
            return None
        if len(self.window) != 2:
            raise StreamMismatch(f"{p.model} takes (channels x samples) windows; the stream's "
                                 f"tensors are {list(self.window)}")
        model_names = list(meta.channel_names)
        stray = [m for m in p.channel_map if m not in model_names]
        if stray:
            raise ParamError("channel_map", f"{', '.join(stray)}: not a channel of {p.model} "
                                            f"({', '.join(model_names)})")
        wanted = [p.channel_map.get(m, m) for m in model_names]
        twice = sorted({w for w in wanted if wanted.count(w) > 1})
        if twice:
            raise ParamError("channel_map", f"stream channel {', '.join(twice)} would feed "
                                            f"several model channels")
        names = _names(stream, "model")
        _require("channel_map", p.channel_map.values(), names)
        try:
            _require("model", wanted, names)
        except ParamError as e:
            raise ParamError("model", f"{p.model} takes {len(model_names)} channels, the stream "
                                      f"has {len(names)}: {e}; map renamed electrodes with "
                                      f"channel_map (model channel: stream channel)") from None
        index = np.array([names.index(w) for w in wanted])
        return None if np.array_equal(index, np.arange(len(names))) else index

    def _check_stream(self, stream: StreamInfo, meta: ModelMeta) -> None:
        """Sampling rate, window length and unit the model was trained on."""
        model = self.params.model
        srate = stream.extra.get("srate")
        if meta.srate is not None:
            if srate is None:
                raise ParamError("model", f"{model} was trained at {meta.srate:g} Hz; the stream "
                                          f"does not say its sampling rate")
            if abs(srate - meta.srate) > 1e-9 * meta.srate:
                raise ParamError("model", f"{model} was trained at {meta.srate:g} Hz; the stream "
                                          f"is at {srate:g} Hz (resample it, or use a model for "
                                          f"{srate:g} Hz)")
        if meta.window_samples is not None:
            if len(self.window) != 2:
                raise StreamMismatch(f"{model} takes (channels x samples) windows; the stream's "
                                     f"tensors are {list(self.window)}")
            n, rate = self.window[1], meta.srate or srate
            if n != meta.window_samples:
                raise ParamError("model", f"{model} takes windows of "
                                          f"{_samples(meta.window_samples, rate)}; the stream's "
                                          f"have {_samples(n, rate)}")
        if meta.units is not None and stream.units:
            scale = VOLTS.get(meta.units, meta.units)
            other = sorted({u for u in stream.units if VOLTS.get(u, u) != scale})
            if other:
                raise ParamError("model", f"{model} takes values in {meta.units}; the stream has "
                                          f"channels in {', '.join(other)} (scale them first)")

    def _arrange(self, stream: StreamInfo, meta: ModelMeta,
                 inp: TensorSpec) -> tuple[tuple[int, ...], bool, bool]:
        """One window's shape as the model takes it, whether a batch axis leads, and whether
        the window is transposed (samples before channels)."""
        model = self.params.model
        window = self.window
        if self.index is not None:
            window = (len(self.index),) + window[1:]
        if meta.input_layout is not None:
            layout = meta.input_layout
            if len(window) != 2:
                raise StreamMismatch(f"{model} takes (channels x samples) windows (layout "
                                     f"{','.join(layout)}); the stream's tensors are "
                                     f"{list(window)}")
            if len(layout) != len(inp.shape):
                raise ParamError("model", f"{model}: metadata input_layout {','.join(layout)} has "
                                          f"{len(layout)} axes, input {inp.name!r} has "
                                          f"{len(inp.shape)} {_shape(inp.shape)}")
            sizes = {"channels": window[0], "samples": window[1], "1": 1}
            batch_axis = layout[0] == "batch"
            item = tuple(sizes[a] for a in layout[batch_axis:])
            transpose = layout.index("samples") < layout.index("channels")
        else:
            extra = len(inp.shape) - len(window)
            if extra < 0:
                raise ParamError("model", f"{model}: input {inp.name!r} is {_shape(inp.shape)}; "
                                          f"the stream's windows are {list(window)}")
            batch_axis = extra > 0
            item, transpose = (1,) * max(extra - 1, 0) + tuple(window), False
        model_item = inp.shape[1:] if batch_axis else inp.shape
        if any(m is not None and m != s for m, s in zip(model_item, item)):
            what = (f" ({window[0]} channels x {window[1]} samples)" if len(window) == 2 else "")
            raise ParamError("model", f"{model}: input {inp.name!r} is {_shape(inp.shape)}; the "
                                      f"stream gives {_shape(item)} per window{what}")
        return item, batch_axis, transpose

    def _check_batch(self, inp: TensorSpec) -> None:
        p = self.params
        if not self.batch_axis:
            if p.batch > 1:
                raise ParamError("batch", f"{p.model}: input {inp.name!r} "
                                          f"{_shape(inp.shape)} has no batch axis")
            return
        fixed = inp.shape[0]
        if fixed is not None and fixed != 1:
            raise ParamError("model", f"{p.model}: input {inp.name!r} {_shape(inp.shape)} has a "
                                      f"fixed batch of {fixed}; the onnx node feeds windows one "
                                      f"by one or in batches of `batch`")
        if fixed == 1 and p.batch > 1:
            raise ParamError("batch", f"{p.model}: input {inp.name!r} {_shape(inp.shape)} has a "
                                      f"batch axis fixed at 1")

    def _outputs(self, meta: ModelMeta, out: TensorSpec) -> tuple[tuple[str, ...], bool]:
        """Class names (one per output value) and whether to apply softmax."""
        p = self.params
        dims = out.shape[1:] if self.batch_axis else out.shape
        if self.batch_axis and (not out.shape or out.shape[0] not in (None, 1)):
            raise ParamError("model", f"{p.model}: output {out.name!r} {_shape(out.shape)} does "
                                      f"not lead with the batch axis")
        n = int(np.prod(dims)) if None not in dims else None
        names = tuple(p.class_names) if p.class_names is not None else meta.class_names
        field = "class_names" if p.class_names is not None else "model"
        if names is None:
            if n is None:
                raise ParamError("class_names", f"{p.model}: output {out.name!r} is "
                                                f"{_shape(out.shape)} and no class names are "
                                                f"declared: give class_names")
            names = tuple(str(i) for i in range(n))
        if n is not None and len(names) != n:
            raise ParamError(field, f"{len(names)} class names ({', '.join(names)}) for "
                                    f"{n} outputs of {p.model} ({out.name!r} "
                                    f"{_shape(out.shape)})")
        if p.softmax is None:
            if meta.output is None:
                raise ParamError("softmax", f"{p.model} does not say whether it outputs logits "
                                            f"or probabilities (metadata neuroflow.output): set "
                                            f"softmax: true (logits) or false (probabilities)")
            return names, meta.output == "logits"
        if meta.output is not None and p.softmax != (meta.output == "logits"):
            raise ParamError("softmax", f"{p.model} declares it outputs {meta.output}; softmax: "
                                        f"{str(p.softmax).lower()} contradicts it")
        return names, p.softmax

    # -- running -----------------------------------------------------------------------------
    def open(self) -> None:
        """Create the session on the configured providers (checked: `ProviderError` when an
        accelerator is not active), bind its buffers and run the warm-up."""
        p = self.params
        config = SessionConfig(tuple(p.providers), p.provider_options, p.allow_fallback,
                               p.intra_op_threads, p.inter_op_threads, p.sequential, p.spin,
                               p.optimization, p.profile)
        self.session = open_session(Path(p.model), config)
        self.active = ",".join(self.session.get_providers())
        self.runner = Runner(self.session, self.input_name, self.output_name, self.item_shape,
                             self.batch_axis, p.io_binding)
        self.runner.warm_up(p.warmup, p.batch)
        zeros = np.zeros((1, len(self.class_names)), self.runner.out_spec.dtype)
        probabilities(zeros, self.apply_softmax)  # compiled (or loaded) now, not on a frame

    def reset(self) -> None:
        self.pending: list[Frame] = []

    def _slot(self, i: int) -> np.ndarray:
        buffer = self.runner.buffer(self.params.batch)
        return buffer[i] if self.batch_axis else buffer

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        x = frame.data
        if x.shape != self.window:
            raise ValueError(f"frame has shape {list(x.shape)}, the stream {list(self.window)}")
        if self.index is not None:
            x = x[self.index]
        if self.transpose:
            x = x.T
        slot = self._slot(len(self.pending))
        slot[...] = x.reshape(slot.shape)
        if not np.isfinite(slot).all():  # in the buffer: the frame is read once, and only
            self.nonfinite += 1          # the channels the model takes count
            return
        self.pending.append(frame)
        if len(self.pending) == self.params.batch:
            yield from self._flush()

    def _flush(self) -> Iterable[Output]:
        n, frames = len(self.pending), self.pending
        self.pending = []
        if n != self.params.batch:  # the last, partial batch
            self.runner.buffer(n)[...] = self.runner.buffer(self.params.batch)[:n]
        probs, best = probabilities(self.runner.run(n), self.apply_softmax)
        for frame, row, i in zip(frames, probs, best.tolist()):
            yield "out", Frame(FrameKind.PREDICTION, row, frame.t_origin_ns,
                               t_device=frame.t_device,
                               meta={"label": self.class_names[i], "index": i})

    def close(self) -> Iterable[Output]:
        """Run the last, partial batch; end the ORT profile (``profile`` figure: its file)."""
        if self.pending:
            yield from self._flush()
        if self.params.profile and self.runner is not None:
            self.profile_file = self.session.end_profiling()

    def figures(self) -> dict[str, Figure]:
        r = self.runner
        runs = r.runs if r else 0
        out: dict[str, Figure] = {
            "runs": runs, "warmup_runs": r.warmup_runs if r else 0,
            "windows": r.items if r else 0, "nonfinite": self.nonfinite,
            "mean_batch": round(r.items / runs, 2) if runs else None,
            "run_us_mean": round(r.run_ns / runs / 1e3, 1) if runs else None,
            "providers": self.active if r else None}
        if self.profile_file:
            out["profile"] = self.profile_file
        return out
