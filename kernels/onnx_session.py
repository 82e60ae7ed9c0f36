"""ONNX Runtime sessions as neuroflow runs them: providers chosen by config and checked, threads
that do not spin, warm-up before the first real frame, buffers bound once, and the model
metadata that ties a model file to the stream it was trained on.

Why a wrapper: ONNX Runtime silently falls back to the CPU when an accelerator cannot start (no
CUDA library, TensorRT missing, a CPU-only wheel): it warns and runs on the CPU, and
``get_available_providers()`` still lists what was compiled in, not what runs. So after creating
a session, `open_session` compares ``session.get_providers()`` (the providers actually active)
with what was asked and raises `ProviderError`, naming both, unless the config allows fallback.

Providers are given by short name (`PROVIDERS`: ``tensorrt``, ``cuda``, ``cpu``; an ORT name such
as ``OpenVINOExecutionProvider`` passes through) in priority order, with per-provider options in
friendly names (`OPTION_NAMES`: ``fp16``, ``engine_cache``, ``device_id``, ...) or ORT's own.

IO binding (`Runner`, on by default for every provider): the input and output arrays of each
batch size are allocated once and bound to the session once, so a run is ``run_with_iobinding``
on buffers the caller writes in place. Measured on this machine's CPU (one thread, the ``onnx``
node with and without it, ``benchmarks/inference.py``): it saves ~2.5 µs per window on a tiny
model (a 4 x 32 linear layer: ~20 % of the node's call) and ~15-20 µs (~2 %) on an EEGNet-sized
one (64 x 480 input), where ``session.run``'s handling of a 120 kB feed shows; it never cost
more. On CUDA / TensorRT the bound host buffers are copied to and from the device by ORT on each
run, as ``session.run`` does (not measured here: no GPU).

Outputs become probabilities in a small Numba kernel (`probabilities`: softmax and argmax per
row), cheaper than NumPy right after a model run has filled the caches.

Metadata (`ModelMeta`): neuroflow's keys in the ONNX file's ``metadata_props`` (`META_KEYS`),
written by training scripts with `write_metadata` and read back with `read_metadata`. Unknown
``neuroflow.*`` keys are ignored (a newer model on an older runtime still loads).

This module imports ONNX Runtime lazily (`load_ort`): it is the optional extra ``[cpu]`` or
``[gpu]``, and ``import kernels.onnx_session`` must work without it.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping, Sequence

import numba
import numpy as np

#: Short provider names -> ONNX Runtime's.
PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
             "cpu": "CPUExecutionProvider"}
#: Friendly option names -> ORT's, per short provider name. Other keys pass through as ORT's own.
#: ``engine_cache`` / ``timing_cache`` take a folder and also switch the cache on.
OPTION_NAMES = {
    "tensorrt": {"fp16": "trt_fp16_enable", "int8": "trt_int8_enable",
                 "engine_cache": "trt_engine_cache_path", "timing_cache": "trt_timing_cache_path",
                 "workspace": "trt_max_workspace_size", "device_id": "device_id"},
    "cuda": {"device_id": "device_id", "memory_limit": "gpu_mem_limit",
             "conv_search": "cudnn_conv_algo_search"},
    "cpu": {},
}
_CACHE_SWITCH = {"trt_engine_cache_path": "trt_engine_cache_enable",
                 "trt_timing_cache_path": "trt_timing_cache_enable"}
OPTIMIZATION = ("disable", "basic", "extended", "all")
#: ONNX element types the wrapper feeds and reads, as NumPy dtypes.
DTYPES = {"tensor(float)": np.dtype(np.float32), "tensor(float16)": np.dtype(np.float16),
          "tensor(double)": np.dtype(np.float64)}

#: neuroflow's keys in an ONNX file's ``metadata_props``: key -> (ModelMeta field, meaning).
META_KEYS = {
    "neuroflow.input_layout": ("input_layout", "axes of the model input, comma-separated, from "
                               "batch, channels, samples, 1: 'batch,1,channels,samples'"),
    "neuroflow.channel_names": ("channel_names", "JSON list: the channels, in input order"),
    "neuroflow.srate": ("srate", "sampling rate of the windows (Hz)"),
    "neuroflow.window_samples": ("window_samples", "samples per window"),
    "neuroflow.class_names": ("class_names", "JSON list: one name per output"),
    "neuroflow.units": ("units", "unit of the input values ('uV')"),
    "neuroflow.output": ("output", "'logits' or 'probabilities'"),
}
LAYOUT_AXES = ("batch", "channels", "samples", "1")
OUTPUTS = ("logits", "probabilities")


class ProviderError(RuntimeError):
    """A requested execution provider is not active in the session ONNX Runtime created."""


def load_ort() -> ModuleType:
    """The ``onnxruntime`` module, or an ImportError that says which extra installs it."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError("ONNX Runtime is not installed: pip install 'neuroflow[cpu]' (CPU) or "
                          "'neuroflow[gpu]' (CUDA / TensorRT), one of the two, never both") from e
    return onnxruntime


# -- model metadata ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelMeta:
    """What a model expects of its input and says of its output (``None``: not declared).

    Parameters
    ----------
    input_layout : tuple of str or None
        Axes of the model input, from `LAYOUT_AXES`: ``channels`` and ``samples`` once each, an
        optional leading ``batch``, and ``1`` for singleton axes (EEGNet: batch, 1, channels,
        samples).
    channel_names : tuple of str or None
        The channels the model was trained on, in input order.
    srate : float or None
        Sampling rate of the training windows (Hz).
    window_samples : int or None
        Samples per window.
    class_names : tuple of str or None
        One name per output value.
    units : str or None
        Unit of the input values (``uV``).
    output : str or None
        ``logits`` (softmax still to apply) or ``probabilities``.
    """

    input_layout: tuple[str, ...] | None = None
    channel_names: tuple[str, ...] | None = None
    srate: float | None = None
    window_samples: int | None = None
    class_names: tuple[str, ...] | None = None
    units: str | None = None
    output: str | None = None

    def __post_init__(self) -> None:
        for name in ("input_layout", "channel_names", "class_names"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(str(v) for v in value))
        if self.input_layout is not None:
            check_layout(self.input_layout)
        for name in ("channel_names", "class_names"):
            names = getattr(self, name)
            if names is not None and (not names or len(set(names)) != len(names)):
                raise ValueError(f"{name} must be distinct and at least one: {list(names)}")
        if self.srate is not None and not self.srate > 0:
            raise ValueError(f"srate must be > 0 Hz, got {self.srate}")
        if self.window_samples is not None and self.window_samples < 1:
            raise ValueError(f"window_samples must be >= 1, got {self.window_samples}")
        if self.output is not None and self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")

    def to_props(self) -> dict[str, str]:
        """The declared fields as ``metadata_props`` strings (lists as JSON)."""
        props = {}
        for key, (name, _) in META_KEYS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if name == "input_layout":
                props[key] = ",".join(value)
            elif isinstance(value, tuple):
                props[key] = json.dumps(list(value))
            else:
                props[key] = str(value)
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> ModelMeta:
        """Parse neuroflow's keys out of a model's custom metadata (other keys are ignored).

        Raises
        ------
        ValueError
            Naming the key and its value, when one does not parse.
        """
        values: dict[str, Any] = {}
        for key, (name, meaning) in META_KEYS.items():
            if key not in props:
                continue
            text = props[key]
            try:
                if name == "input_layout":
                    values[name] = tuple(a.strip() for a in text.split(","))
                elif name in ("channel_names", "class_names"):
                    names = json.loads(text)
                    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                        raise ValueError("not a JSON list of strings")
                    values[name] = tuple(names)
                elif name == "srate":
                    values[name] = float(text)
                elif name == "window_samples":
                    values[name] = int(text)
                else:
                    values[name] = text
            except ValueError as e:
                raise ValueError(f"metadata {key} = {text!r}: {e} (expected {meaning})") from None
        try:
            return cls(**values)
        except ValueError as e:
            raise ValueError(f"metadata: {e}") from None


def check_layout(axes: Sequence[str]) -> None:
    """Refuse an input layout that is not `LAYOUT_AXES` with ``channels`` and ``samples`` once
    each and ``batch`` at most once, first.

    Raises
    ------
    ValueError
        Naming the layout and the rule it breaks.
    """
    text = ",".join(axes)
    unknown = [a for a in axes if a not in LAYOUT_AXES]
    if unknown:
        raise ValueError(f"input layout {text!r}: unknown axis {unknown[0]!r}; axes are "
                         f"{', '.join(LAYOUT_AXES)}")
    for axis in ("channels", "samples"):
        if list(axes).count(axis) != 1:
            raise ValueError(f"input layout {text!r}: needs '{axis}' exactly once")
    if "batch" in axes[1:]:
        raise ValueError(f"input layout {text!r}: 'batch' can only be the first axis")


def write_metadata(model: Any, meta: ModelMeta) -> None:
    """Store ``meta`` in an ``onnx.ModelProto``'s ``metadata_props`` (in place), replacing any
    ``neuroflow.*`` entries already there; other entries are kept."""
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith("neuroflow.")]
    del model.metadata_props[:]
    for key, value in kept + sorted(meta.to_props().items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(session: Any) -> ModelMeta:
    """neuroflow's metadata of the model an ``onnxruntime.InferenceSession`` runs."""
    return ModelMeta.from_props(session.get_modelmeta().custom_metadata_map)


# -- what a model file takes and gives -----------------------------------------------------------
@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: its name, its shape (``None``: a dynamic axis), its type
    (``dtype`` None when it is not a float tensor; ``type`` says what it is)."""

    name: str
    shape: tuple[int | None, ...]
    type: str
    dtype: np.dtype | None


@dataclass(frozen=True)
class ModelInfo:
    """A model's inputs, outputs and neuroflow metadata."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    meta: ModelMeta


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
    return TensorSpec(arg.name, shape, arg.type, DTYPES.get(arg.type))


def describe_session(session: Any) -> ModelInfo:
    """Inputs, outputs and metadata of an open session."""
    return ModelInfo(tuple(_spec(a) for a in session.get_inputs()),
                     tuple(_spec(a) for a in session.get_outputs()), read_metadata(session))


def inspect_model(path: str | Path) -> ModelInfo:
    """Read a model file's inputs, outputs and metadata without preparing it to run: a CPU
    session with graph optimisation off (no accelerator, no kernel tuning; for ``neuroflow
    validate``).

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If ONNX Runtime cannot load it (the reason is ORT's), or its metadata does not parse.
    """
    ort = load_ort()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
        raise ValueError(f"{path}: ONNX Runtime cannot load it: {e}") from None
    return describe_session(session)


# -- sessions ------------------------------------------------------------------------------------
def provider_names(providers: Sequence[str]) -> list[str]:
    """ORT's names for ``providers`` (short names or ORT names), in the same order.

    Raises
    ------
    ValueError
        For an unknown short name, a repeat, or an empty list.
    """
    if not providers:
        raise ValueError(f"give at least one provider ({', '.join(PROVIDERS)})")
    names = []
    for p in providers:
        if p in PROVIDERS:
            names.append(PROVIDERS[p])
        elif p.endswith("ExecutionProvider"):
            names.append(p)
        else:
            raise ValueError(f"unknown provider {p!r}; use {', '.join(PROVIDERS)} or an ONNX "
                             f"Runtime name (...ExecutionProvider)")
    if len(set(names)) != len(names):
        raise ValueError(f"a provider is listed twice: {list(providers)}")
    return names


def provider_options(providers: Sequence[str],
                     options: Mapping[str, Mapping[str, Any]]) -> list[dict[str, str]]:
    """ORT's option dict for each of ``providers`` (same order), from ``options`` keyed by the
    name used in ``providers``: friendly names translated (`OPTION_NAMES`), booleans as "1"/"0".

    Raises
    ------
    ValueError
        If ``options`` names a provider that is not in ``providers``.
    """
    stray = [p for p in options if p not in providers]
    if stray:
        raise ValueError(f"options for {', '.join(stray)}, which is not in providers "
                         f"{list(providers)}")
    out = []
    for p in providers:
        names = OPTION_NAMES.get(p, {})
        ort_options: dict[str, str] = {}
        for key, value in (options.get(p) or {}).items():
            key = names.get(key, key)
            ort_options[key] = ("1" if value else "0") if isinstance(value, bool) else str(value)
            if key in _CACHE_SWITCH:
                ort_options[_CACHE_SWITCH[key]] = "1"
        out.append(ort_options)
    return out


@dataclass(frozen=True)
class SessionConfig:
    """How to build a session.

    Parameters
    ----------
    providers : tuple of str
        Execution providers in priority order: ``tensorrt``, ``cuda``, ``cpu`` or ORT names.
    options : mapping
        Per provider (keyed as in ``providers``): its options (`provider_options`).
    allow_fallback : bool
        Accept a session in which a requested provider is not active (it runs on what is:
        at worst the CPU); otherwise that is a `ProviderError`.
    intra_op_threads, inter_op_threads : int
        ORT thread pools (0: ORT's default, one per physical core). 1 runs every operator in
        the calling thread: no pool, nothing spinning beside the other workers of a graph.
    sequential : bool
        Run the graph's operators one after another (``ORT_SEQUENTIAL``) rather than in parallel.
    spin : bool
        Let pool threads spin between runs (lower latency, a core kept busy while idle).
    optimization : str
        Graph optimisation level: ``disable``, ``basic``, ``extended`` or ``all``.
    profile : str or None
        File prefix of an ORT profile (a JSON trace of every run), written when the session ends
        profiling; ``None``: no profiling.
    """

    providers: tuple[str, ...] = ("cpu",)
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    allow_fallback: bool = False
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    sequential: bool = True
    spin: bool = False
    optimization: str = "all"
    profile: str | None = None


def session_options(config: SessionConfig) -> Any:
    """The ``onnxruntime.SessionOptions`` of ``config``."""
    ort = load_ort()
    if config.optimization not in OPTIMIZATION:
        raise ValueError(f"optimization must be one of {', '.join(OPTIMIZATION)}, "
                         f"got {config.optimization!r}")
    levels = ort.GraphOptimizationLevel
    so = ort.SessionOptions()
    so.graph_optimization_level = {"disable": levels.ORT_DISABLE_ALL,
                                   "basic": levels.ORT_ENABLE_BASIC,
                                   "extended": levels.ORT_ENABLE_EXTENDED,
                                   "all": levels.ORT_ENABLE_ALL}[config.optimization]
    so.intra_op_num_threads = config.intra_op_threads
    so.inter_op_num_threads = config.inter_op_threads
    so.execution_mode = (ort.ExecutionMode.ORT_SEQUENTIAL if config.sequential
                         else ort.ExecutionMode.ORT_PARALLEL)
    spin = "1" if config.spin else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    if config.profile:
        so.enable_profiling = True
        so.profile_file_prefix = config.profile
    return so


def check_providers(requested: Sequence[str], active: Sequence[str], allow_fallback: bool,
                    notes: Sequence[str] = ()) -> None:
    """Refuse a session whose active providers lack a requested one (ORT names).

    ORT adds the CPU provider to every session (for operators the accelerator lacks), so an
    active CPU provider that was not requested is fine. With ``allow_fallback`` any session is
    accepted (ORT always has the CPU to fall back on).

    Raises
    ------
    ProviderError
        Naming the requested, the active and the missing providers, and ORT's own warnings.
    """
    missing = [p for p in requested if p not in active]
    if not missing or allow_fallback:
        return
    why = "".join(f"\n  onnxruntime: {n}" for n in notes)
    raise ProviderError(
        f"requested providers {', '.join(requested)}, but the session runs on "
        f"{', '.join(active)}: {', '.join(missing)} not active (a CPU-only onnxruntime, missing "
        f"CUDA / cuDNN / TensorRT libraries, or no GPU; a GPU needs pip install "
        f"'neuroflow[gpu]'). To run on what is active anyway, set allow_fallback: true.{why}")


def open_session(model: str | Path | bytes, config: SessionConfig) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``model`` (a path or the serialized bytes),
    built as ``config`` says, whose active providers were checked (`check_providers`).

    Raises
    ------
    ValueError
        For an unknown provider or optimisation level, or options for an unlisted provider.
    ProviderError
        If a requested provider is not active (unless ``config.allow_fallback``).
    """
    ort = load_ort()
    names = provider_names(config.providers)
    options = provider_options(config.providers, config.options)
    source = str(model) if isinstance(model, Path) else model
    with warnings.catch_warnings(record=True) as caught:  # ORT warns, then falls back silently
        warnings.simplefilter("always")
        session = ort.InferenceSession(source, session_options(config), providers=names,
                                       provider_options=options)
    check_providers(names, session.get_providers(), config.allow_fallback,
                    [str(w.message) for w in caught])
    return session


# -- running -------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _probabilities(z: np.ndarray, apply_softmax: bool, p: np.ndarray,
                   index: np.ndarray) -> None:
    n, k = z.shape
    for i in range(n):
        best = 0
        for j in range(1, k):
            if z[i, j] > z[i, best]:
                best = j
        index[i] = best
        if apply_softmax:
            top, total = np.float64(z[i, best]), 0.0
            for j in range(k):
                e = math.exp(np.float64(z[i, j]) - top)
                p[i, j] = e
                total += e
            for j in range(k):
                p[i, j] = p[i, j] / total
        else:
            for j in range(k):
                p[i, j] = z[i, j]


def probabilities(z: np.ndarray, apply_softmax: bool) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs ``z`` (n x k, any float) as float32 class probabilities (a new array;
    softmax of each row when ``apply_softmax``: logits in, the row maximum subtracted first so
    large logits do not overflow; otherwise a copy) and each row's most probable class (int64,
    the first on ties).

    A Numba kernel rather than NumPy: right after a model run the caches hold the model, and
    the five NumPy calls of a softmax + argmax then cost ~18 µs on a 1 x 2 output, this ~4 µs.
    """
    p = np.empty(z.shape, np.float32)
    index = np.empty(z.shape[0], np.int64)
    _probabilities(z, apply_softmax, p, index)
    return p, index


class Runner:
    """Runs one input -> one output of a session on buffers allocated once per batch size.

    The caller writes a batch into `buffer` ``(n,) + item_shape`` in place, then calls `run`,
    which returns the output rows ``(n, k)`` (a view of a reused array: read or copy it before
    the next run). Without a batch axis the model input *is* ``item_shape`` and ``n`` is 1.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
        The open session.
    input, output : str
        Names of the input fed and the output read.
    item_shape : tuple of int
        Shape of one item of the input (without the batch axis).
    batch_axis : bool
        Whether the input has a leading batch axis (then of any size: dynamic).
    io_binding : bool
        Bind each batch size's input and output arrays once (see the module docstring); else
        each run is ``session.run``. An output whose shape is dynamic beyond the batch axis is
        sized by one run on zeros, counted as a warm-up run.
    """

    def __init__(self, session: Any, input: str, output: str, item_shape: tuple[int, ...],
                 batch_axis: bool, io_binding: bool = True) -> None:
        self.session, self.input, self.output = session, input, output
        self.item_shape, self.batch_axis = tuple(item_shape), batch_axis
        self.io_binding = io_binding
        info = describe_session(session)
        specs = {s.name: s for s in info.inputs + info.outputs}
        self.in_dtype, self.out_spec = specs[input].dtype, specs[output]
        self._buffers: dict[int, tuple[np.ndarray, Any, np.ndarray | None]] = {}
        self.runs = self.items = self.run_ns = self.warmup_runs = 0

    def buffer(self, n: int = 1) -> np.ndarray:
        """The input array for a batch of ``n`` items (allocated and bound on first use)."""
        if n not in self._buffers:
            self._allocate(n)
        return self._buffers[n][0]

    def _allocate(self, n: int) -> None:
        if n != 1 and not self.batch_axis:
            raise ValueError(f"a batch of {n}: the model input has no batch axis")
        shape = ((n,) if self.batch_axis else ()) + self.item_shape
        x = np.zeros(shape, self.in_dtype)
        if not self.io_binding:
            self._buffers[n] = (x, None, None)
            return
        shape = self.out_spec.shape
        if self.batch_axis:
            shape = (n,) + shape[1:]
        if None in shape:  # dynamic beyond the batch axis: size it by a run (a warm-up run)
            y = np.empty_like(self.session.run([self.output], {self.input: x})[0])
            self.warmup_runs += 1
        else:
            y = np.empty(shape, self.out_spec.dtype)
        ort = load_ort()
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.input, ort.OrtValue.ortvalue_from_numpy(x))
        binding.bind_ortvalue_output(self.output, ort.OrtValue.ortvalue_from_numpy(y))
        self._buffers[n] = (x, binding, y)

    def _run(self, n: int) -> np.ndarray:
        x, binding, y = self._buffers[n]
        if binding is None:
            y = self.session.run([self.output], {self.input: x})[0]
        else:
            self.session.run_with_iobinding(binding)
        return y.reshape(n, -1)

    def run(self, n: int = 1) -> np.ndarray:
        """Run on `buffer` ``(n)``; the output as ``(n, k)`` rows (model dtype)."""
        if n not in self._buffers:
            self._allocate(n)
        t0 = time.perf_counter_ns()
        y = self._run(n)
        self.run_ns += time.perf_counter_ns() - t0
        self.runs += 1
        self.items += n
        return y

    def warm_up(self, count: int, n: int = 1) -> None:
        """``count`` runs on a zeroed batch of ``n`` (allocates, binds, lets ORT pick kernels
        and build engines) before the first real one; counted apart (``warmup_runs``)."""
        self.buffer(n)[...] = 0
        for _ in range(count):
            self._run(n)
        self.warmup_runs += count
