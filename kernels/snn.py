"""Spiking networks from NIR graphs, run clock-driven by Numba kernels.

Why: a spiking model trained anywhere (snnTorch, Norse, Lava, ...) reaches us as a NIR graph of
continuous-time primitives (``nir.read``); running it needs one discretisation, chosen once and
written down, so that the same file gives the same spikes here, in the simulator it came from,
and on hardware. This module is that discretisation, one pure step function per primitive in
the Norse habit (``step(x, state, params) -> (out, state)``: it never writes its arguments), and
`Network`, which orders a graph's nodes and runs the whole graph a time step at a time
(`Network.step`), or a block of steps node after node (`Network.run`: the same arithmetic in
fewer calls; step by step when the graph has a cycle).

Discretisation at a step of ``dt`` seconds (forward Euler, as the NIR importers of snnTorch and
Norse discretise):

* ``LIF``  ``tau dv/dt = (v_leak - v) + r I``:
  ``v = beta v + (dt/tau) r x + (dt/tau) v_leak`` with ``beta = 1 - dt/tau`` (snnTorch's
  ``beta``; Norse's ``v + dt/tau (v_leak - v + x)``). ``LI`` is the same without firing; its
  output is ``v``.
* ``CubaLIF``  ``tau_syn dI/dt = -I + w_in S``, ``tau_mem dv/dt = (v_leak - v) + r I``: the
  current first, then the membrane from the *new* current:
  ``i = alpha i + (dt/tau_syn) w_in x`` with ``alpha = 1 - dt/tau_syn``, then
  ``v = beta v + (dt/tau_mem) r i + (dt/tau_mem) v_leak``. The current never resets.
  ``CubaLI``: the same without firing, output ``v``.
* ``IF``  ``dv/dt = r I``: ``v = v + r x`` (no ``dt``: the input is the charge of one step,
  as Norse's ``iaf_feed_forward_step`` and snnTorch's importer, ``Leaky(beta=1)``, read it).
  ``I``: the same without firing, output ``v``.
* Firing, in the same step as the integration (snnTorch's ``reset_delay=False``, Norse): a
  spike when ``v > v_threshold`` (strict, as NIR, snnTorch's and Norse's Heaviside), then the
  reset: ``"zero"`` sets ``v = v_reset`` (NIR's definition; 0 unless the node says otherwise;
  snnTorch's ``reset_mechanism="zero"``, Norse's ``reset_value``), ``"subtract"`` sets
  ``v = v - v_threshold`` (snnTorch's ``"subtract"``, Norse's ``reset_subtract``; ``v_reset`` is
  unused). At most one spike per neuron and step. Order within a step: integrate, fire, reset.
* ``Delay``  ``y(t) = x(t - delay)``: ``delay / dt`` whole steps (an error otherwise); a zero
  delay passes the input of the same step.
* ``Affine`` / ``Linear`` / ``Scale`` / ``Conv1d`` / ``Conv2d`` / ``SumPool2d`` / ``AvgPool2d``
  as PyTorch computes them (weights ``(C_out, C_in / groups, kH, kW)``, ``"same"`` padding with
  the odd pixel at the end, average pools dividing by the full window, padding included),
  without any time constant: a spike crosses a synapse in the step it is emitted. ``Flatten``,
  ``Input`` and ``Output`` only rename shapes (C order). ``Threshold``: ``x > threshold``.
  Several edges into one node add up (nirtorch's rule).
* A graph with a cycle (a recurrent layer) runs its nodes in depth-first order from the
  ``Input``; an edge that closes a cycle carries its source's output of the previous step
  (zeros at the first step), as nirtorch's executor does. Sub-graphs (snnTorch's ``RSynaptic``
  export) are inlined, their nodes named ``sub.node``.

Where snnTorch differs (a parity test must keep out of these corners, or pin them): its
``"subtract"`` reset decides a spike on ``beta v + x - thr·[v > thr]`` (the membrane left above
threshold after a reset is held one step), so the two agree while no input drives a membrane
past twice the threshold; its ``Synaptic`` in some versions applies the reset of
``reset_delay=False`` to a local variable (a reset one step late); its importer rescales the
threshold instead of the input (``thr / (r dt / tau)``), which is the same spike train. All
run in float32 there, in float64 here: spikes agree except for membranes within float32's
rounding of the threshold. Its importer also refuses what it cannot map (``v_leak != 0``,
thresholds or ``dt/tau`` scalings that differ between neurons, a CubaLIF with
``r != tau_mem / dt``) and clamps ``beta`` to [0, 1] where this module refuses ``dt > tau``.

Parity with snnTorch is tested (``tests/test_snn_parity.py``, where torch and snnTorch are
installed): the shipped motion network's trained LIF layers fire the same spikes here and in
``snntorch.import_nir.import_from_nir(graph)``, step for step (``np.array_equal``), fed
``x[t][None]`` after ``snntorch.utils.reset(net)``, inside the limits above (zero reset,
``v_leak = 0``, one threshold per layer). snnTorch 1.0's importer takes no ``dt`` (it steps at
1e-4 s: scale every ``tau`` to that step, keeping ``r = tau / dt``, for the same discrete
network), runs in float32, and maps no ``LI``. Norse's ``norse.torch.from_nir(graph, dt=dt)``
can be compared the same way (its LIF and IF ignore ``r``: keep ``r = 1``; its synapse takes
``v_leak``: keep it 0).

Event-driven where it is exact: ``Affine`` and the convolutions add, input by input, only the
weights of non-zero inputs (a spike map is mostly zeros), which is the dense result term for
term; membranes, delays and pools are updated every step (clock-driven).

The step size and the reset mode travel with the model in the graph's metadata (``"dt"``, in
seconds, and ``"reset"``, ``"zero"`` or ``"subtract"``; a neuron node's own ``"reset"``
overrides the graph's): see `timing` and `set_timing`. Numbers are float64 throughout.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import nir
import numba
import numpy as np

RESETS = ("zero", "subtract")


class GraphError(ValueError):
    """A NIR graph that cannot be run as asked; ``about`` names what to change: ``"model"``
    (the graph itself), ``"dt"``, ``"reset"`` or ``"output"`` (which Output node)."""

    def __init__(self, message: str, about: str = "model") -> None:
        super().__init__(message)
        self.about = about


# --- parameters and states (NamedTuples: Numba passes them as typed records) ------------------

class NoState(NamedTuple):
    """The state of a stateless primitive."""


class AffineParams(NamedTuple):
    weight_t: np.ndarray  # (n_in, n_out): the transposed NIR weight, one input's row contiguous
    bias: np.ndarray      # (n_out,)


class ScaleParams(NamedTuple):
    scale: np.ndarray     # (n,)


class ThresholdParams(NamedTuple):
    threshold: np.ndarray  # (n,)


class ConvParams(NamedTuple):
    """A 2-D convolution (a 1-D one is 2-D with height 1); shapes (channels, height, width).
    Where each input pixel lands is tabulated once (no division per spike): input row ``iy``
    through kernel row ``ky`` feeds output row ``rows[iy, ky]`` (-1: none), columns alike."""

    weight_t: np.ndarray  # (C_in / groups, kH, kW, C_out): one tap's output channels contiguous
    bias: np.ndarray      # (C_out,)
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    rows: np.ndarray      # (H, kH) int64
    cols: np.ndarray      # (W, kW) int64
    groups: int


class PoolParams(NamedTuple):
    """Windows of (kH, kW); kernel column ``kx`` reaches input column ``ox * sx - px + kx``,
    inside the input for outputs ``ox`` in ``[first[kx], stop[kx])``."""

    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    first: np.ndarray     # (kW,) int64
    stop: np.ndarray      # (kW,) int64
    divisor: float        # 1 for a sum, kH * kW for an average


class LeakyParams(NamedTuple):
    """``v = beta v + gain x + bias``, then fire and reset if ``fire`` (LIF, LI, IF, I)."""

    beta: np.ndarray
    gain: np.ndarray
    bias: np.ndarray
    v_threshold: np.ndarray
    v_reset: np.ndarray
    subtract: bool
    fire: bool


class LeakyState(NamedTuple):
    v: np.ndarray         # membrane after the last step's reset


class CubaParams(NamedTuple):
    """``i = alpha i + syn_gain x``, then a `LeakyParams` membrane driven by ``i``."""

    alpha: np.ndarray
    syn_gain: np.ndarray
    membrane: LeakyParams


class CubaState(NamedTuple):
    i: np.ndarray         # synaptic current
    v: np.ndarray         # membrane


class DelayParams(NamedTuple):
    steps: np.ndarray     # (n,) int64, delay of each element in steps


class DelayState(NamedTuple):
    history: np.ndarray   # (max steps, n): row k is the input k + 1 steps ago


# --- step functions: pure; a block of T steps at once, (T, n) float64 in and out --------------
#
# Each advances its state over the T rows of ``xs`` in order (T = 1 is one step): the same
# arithmetic whatever the block length, so a stream cut anywhere gives the same result. Blocks
# amortise Numba's call overhead (a few µs per call and NamedTuple) over T steps.

@numba.njit(cache=True, nogil=True)
def affine_step(xs: np.ndarray, state: NoState, p: AffineParams) -> tuple[np.ndarray, NoState]:
    """``y = W x + b``, adding the weights of non-zero inputs only (exact: the others add 0)."""
    w = p.weight_t
    ys = np.empty((xs.shape[0], w.shape[1]))
    for t in range(xs.shape[0]):
        y = ys[t]
        y[:] = p.bias
        for j in range(xs.shape[1]):
            xj = xs[t, j]
            if xj != 0.0:
                for i in range(y.size):
                    y[i] += xj * w[j, i]
    return ys, state


@numba.njit(cache=True, nogil=True)
def scale_step(xs: np.ndarray, state: NoState, p: ScaleParams) -> tuple[np.ndarray, NoState]:
    """``y = x * scale`` element-wise."""
    return xs * p.scale, state


@numba.njit(cache=True, nogil=True)
def threshold_step(xs: np.ndarray, state: NoState, p: ThresholdParams
                   ) -> tuple[np.ndarray, NoState]:
    """``y = 1`` where ``x > threshold``, else 0."""
    return (xs > p.threshold).astype(np.float64), state


@numba.njit(cache=True, nogil=True)
def conv_step(xs: np.ndarray, state: NoState, p: ConvParams) -> tuple[np.ndarray, NoState]:
    """PyTorch's ``conv2d`` (cross-correlation with zero padding, stride, dilation, groups) of
    flat (C, H, W) inputs, scattered from their non-zero inputs: each adds its weights to the
    outputs whose window holds it (accumulated channels-last, then laid out (C, H, W))."""
    c_in, h, w = p.in_shape
    c_out, ho, wo = p.out_shape
    kh, kw = p.rows.shape[1], p.cols.shape[1]
    cin_g, cout_g = c_in // p.groups, c_out // p.groups
    plane = ho * wo
    ys = np.empty((xs.shape[0], c_out * plane))
    acc = np.empty((plane, c_out))
    # Scalar indexing only inside the loops: a slice there costs a reference count each.
    for t in range(xs.shape[0]):
        for q in range(plane):
            for co in range(c_out):
                acc[q, co] = p.bias[co]
        for ci in range(c_in):
            c0 = (ci // cin_g) * cout_g
            cl = ci % cin_g
            for iy in range(h):
                for ix in range(w):
                    v = xs[t, (ci * h + iy) * w + ix]
                    if v == 0.0:
                        continue
                    for ky in range(kh):
                        oy = p.rows[iy, ky]
                        if oy < 0:
                            continue
                        for kx in range(kw):
                            ox = p.cols[ix, kx]
                            if ox < 0:
                                continue
                            at = oy * wo + ox
                            for co in range(c0, c0 + cout_g):
                                acc[at, co] += v * p.weight_t[cl, ky, kx, co]
        for co in range(c_out):
            for q in range(plane):
                ys[t, co * plane + q] = acc[q, co]
    return ys, state


@numba.njit(cache=True, nogil=True)
def pool_step(xs: np.ndarray, state: NoState, p: PoolParams) -> tuple[np.ndarray, NoState]:
    """Sum (``divisor`` 1) or average (``divisor`` kH * kW, padding counted) over 2-D windows of
    flat (C, H, W) inputs, zero padding; a window row at a time along the output row."""
    c, h, w = p.in_shape
    _, ho, wo = p.out_shape
    kh, kw = p.kernel
    sy, sx = p.stride
    py, px = p.padding
    ys = np.zeros((xs.shape[0], c * ho * wo))
    for t in range(xs.shape[0]):
        for ch in range(c):
            for oy in range(ho):
                out = (ch * ho + oy) * wo
                for ky in range(kh):
                    iy = oy * sy - py + ky
                    if 0 <= iy < h:
                        row = (ch * h + iy) * w - px
                        for kx in range(kw):
                            for ox in range(p.first[kx], p.stop[kx]):
                                ys[t, out + ox] += xs[t, row + ox * sx + kx]
                if p.divisor != 1.0:
                    for ox in range(wo):
                        ys[t, out + ox] /= p.divisor
    return ys, state


@numba.njit(cache=True, nogil=True, inline="always")
def _fire(u: float, k: int, p: LeakyParams) -> tuple[float, float]:
    """(output, membrane after reset) of neuron ``k`` whose membrane integrated to ``u``."""
    if not p.fire:
        return u, u
    if u > p.v_threshold[k]:
        return 1.0, (u - p.v_threshold[k] if p.subtract else p.v_reset[k])
    return 0.0, u


@numba.njit(cache=True, nogil=True)
def leaky_step(xs: np.ndarray, state: LeakyState, p: LeakyParams
               ) -> tuple[np.ndarray, LeakyState]:
    """LIF / LI / IF / I: integrate ``v = beta v + gain x + bias``, then fire and reset."""
    v = state.v.copy()
    ys = np.empty(xs.shape)
    for t in range(xs.shape[0]):
        for k in range(v.size):
            ys[t, k], v[k] = _fire(p.beta[k] * v[k] + p.gain[k] * xs[t, k] + p.bias[k], k, p)
    return ys, LeakyState(v)


@numba.njit(cache=True, nogil=True)
def cuba_step(xs: np.ndarray, state: CubaState, p: CubaParams) -> tuple[np.ndarray, CubaState]:
    """CubaLIF / CubaLI: the current ``i = alpha i + syn_gain x``, then the membrane from it."""
    m = p.membrane
    i, v = state.i.copy(), state.v.copy()
    ys = np.empty(xs.shape)
    for t in range(xs.shape[0]):
        for k in range(v.size):
            i[k] = p.alpha[k] * i[k] + p.syn_gain[k] * xs[t, k]
            ys[t, k], v[k] = _fire(m.beta[k] * v[k] + m.gain[k] * i[k] + m.bias[k], k, m)
    return ys, CubaState(i, v)


@numba.njit(cache=True, nogil=True)
def delay_step(xs: np.ndarray, state: DelayState, p: DelayParams
               ) -> tuple[np.ndarray, DelayState]:
    """``y[k] = x[k]`` of ``steps[k]`` steps ago (this step's for 0); the history is a ring
    inside the call, handed back in order."""
    depth = state.history.shape[0]
    ring = state.history.copy()  # ring[(head + k) % depth]: the input k + 1 steps ago
    head = 0
    ys = xs.copy()
    for t in range(xs.shape[0]):
        for k in range(xs.shape[1]):
            d = p.steps[k]
            if d > 0:
                ys[t, k] = ring[(head + d - 1) % depth, k]
        if depth > 0:
            head = (head - 1) % depth
            ring[head] = xs[t]
    history = np.empty_like(ring)
    for k in range(depth):
        history[k] = ring[(head + k) % depth]
    return ys, DelayState(history)


# --- timing metadata --------------------------------------------------------------------------

def _text(value: Any) -> str:
    """A metadata string as written (HDF5 gives bytes back)."""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode()
    return str(value.item() if isinstance(value, np.ndarray) else value)


def timing(graph: nir.NIRGraph, dt: float | None = None, reset: str | None = None
           ) -> tuple[float, str]:
    """The step (s) and the graph-wide reset mode: the arguments where given, else the graph's
    metadata (``"dt"``, ``"reset"``), else (no dt: an error) ``"zero"``, NIR's definition.

    Raises
    ------
    GraphError
        No dt anywhere, a dt that is not > 0, or an unknown reset mode.
    """
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    if dt is None:
        if "dt" not in meta:
            raise GraphError("the model has no dt in its metadata: set dt (s); snnTorch's "
                             "NIR export assumes 1e-4 s, Norse's 1e-3 s", "dt")
        dt = float(np.asarray(meta["dt"]).item())
    if not dt > 0:
        raise GraphError(f"dt must be > 0 s, got {dt}", "dt")
    if reset is None:
        reset = _text(meta.get("reset", "zero"))
    if reset not in RESETS:
        raise GraphError(f"reset must be one of {', '.join(RESETS)}, got {reset!r}", "reset")
    return float(dt), reset


def set_timing(graph: nir.NIRGraph, dt: float, reset: str = "zero") -> nir.NIRGraph:
    """Write ``dt`` (s) and ``reset`` into the graph's metadata (in place; also returned), so
    that ``nir.write`` stores them with the model."""
    timing(graph, dt, reset)  # validated before anything is written
    if not isinstance(graph.metadata, dict):
        graph.metadata = {}
    graph.metadata.update({"dt": float(dt), "reset": reset})
    return graph


# --- graph preparation: flatten sub-graphs, order, shapes -------------------------------------

def _inline(graph: nir.NIRGraph, prefix: str = "") -> tuple[dict[str, nir.NIRNode],
                                                            list[tuple[str, str]]]:
    """Nodes and edges with every sub-graph's nodes inlined as ``sub.node``; the sub-graph's
    Input and Output stay as pass-through nodes where its edges enter and leave."""
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    ends: dict[str, tuple[str, str]] = {}  # sub-graph -> (its input, its output) inlined names
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _inline(node, f"{prefix}{name}.")
            ins = [k for k, n in node.nodes.items() if isinstance(n, nir.Input)]
            outs = [k for k, n in node.nodes.items() if isinstance(n, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise GraphError(f"sub-graph {prefix}{name!r} has {len(ins)} inputs and "
                                 f"{len(outs)} outputs; only one of each can be inlined")
            nodes.update(sub_nodes)
            edges += sub_edges
            ends[name] = (f"{prefix}{name}.{ins[0]}", f"{prefix}{name}.{outs[0]}")
        else:
            nodes[prefix + name] = node
    for a, b in graph.edges:
        a = ends[a][1] if a in ends else prefix + a
        b = ends[b][0] if b in ends else prefix + b
        edges.append((a, b))
    return nodes, edges


def _order(names: list[str], edges: list[tuple[str, str]], root: str) -> list[str]:
    """Depth-first reverse post-order from the input: every node after its sources, except
    along an edge that closes a cycle."""
    after: dict[str, list[str]] = {n: [] for n in names}
    for a, b in edges:
        after[a].append(b)
    seen = {root}
    post: list[str] = []
    stack = [(root, iter(after[root]))]
    while stack:
        node, rest = stack[-1]
        nxt = next((n for n in rest if n not in seen), None)
        if nxt is None:
            post.append(node)
            stack.pop()
        else:
            seen.add(nxt)
            stack.append((nxt, iter(after[nxt])))
    unreached = [n for n in names if n not in seen]
    if unreached:
        raise GraphError(f"node(s) {', '.join(unreached)} cannot be reached from the input")
    return post[::-1]


def _pair(value: Any, name: str, node: str) -> tuple[int, int]:
    """An int or a pair of ints (NIR stores either; HDF5 gives arrays back) as a pair."""
    v = np.asarray(value).ravel()
    if v.size == 1:
        v = np.repeat(v, 2)
    if v.size != 2 or np.any(v != np.round(v)):
        raise GraphError(f"node {node!r}: {name} must be an int or a pair of ints, got {value!r}")
    return int(v[0]), int(v[1])


def _flatten_shape(shape: tuple[int, ...], start: int, end: int) -> tuple[int, ...]:
    """NIR's Flatten on an unbatched shape (dims may be negative)."""
    n = len(shape)
    start, end = start % n, end % n
    return shape[:start] + (int(np.prod(shape[start:end + 1])),) + shape[end + 1:]


def _array(node: nir.NIRNode, field: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A neuron parameter as a flat float64 array of the node's size (scalars broadcast)."""
    value = np.asarray(getattr(node, field), np.float64)
    try:
        return np.ascontiguousarray(np.broadcast_to(value, shape)).ravel()
    except ValueError:
        raise GraphError(f"node {name!r}: {field} has shape {value.shape}, the node "
                         f"{shape}") from None


def _neuron_shape(node: nir.NIRNode) -> tuple[int, ...]:
    field = {nir.LIF: "tau", nir.LI: "tau", nir.IF: "r", nir.I: "r", nir.CubaLIF: "tau_mem",
             nir.CubaLI: "tau_mem", nir.Delay: "delay", nir.Scale: "scale",
             nir.Threshold: "threshold"}[type(node)]
    return tuple(int(s) for s in np.shape(getattr(node, field)))


def _decay(node: nir.NIRNode, tau_field: str, dt: float, name: str, shape: tuple[int, ...]
           ) -> tuple[np.ndarray, np.ndarray]:
    """(1 - dt/tau, dt/tau) of a time constant; refuses dt > tau (Euler would oscillate)."""
    tau = _array(node, tau_field, shape, name)
    if np.any(tau <= 0):
        raise GraphError(f"node {name!r}: {tau_field} must be > 0 s, got min {tau.min():g}")
    if np.any(dt > tau):
        raise GraphError(f"dt = {dt:g} s exceeds {tau_field} = {tau.min():g} s of node "
                         f"{name!r}: forward Euler would overshoot (1 - dt/tau < 0)", "dt")
    return 1.0 - dt / tau, dt / tau


def _membrane_params(node: nir.NIRNode, name: str, shape: tuple[int, ...], beta: np.ndarray,
                     gain: np.ndarray, bias: np.ndarray, reset: str) -> LeakyParams:
    fire = hasattr(node, "v_threshold")
    n = int(np.prod(shape))
    return LeakyParams(beta, gain, bias,
                       _array(node, "v_threshold", shape, name) if fire else np.zeros(n),
                       _array(node, "v_reset", shape, name) if fire else np.zeros(n),
                       reset == "subtract", fire)


def _reset_of(node: nir.NIRNode, name: str, graph_reset: str, forced: bool) -> str:
    """The node's reset mode: its own metadata unless the caller forced one."""
    meta = node.metadata if isinstance(node.metadata, dict) else {}
    if forced or "reset" not in meta:
        return graph_reset
    mode = _text(meta["reset"])
    if mode not in RESETS:
        raise GraphError(f"node {name!r}: metadata reset must be one of {', '.join(RESETS)}, "
                         f"got {mode!r}", "reset")
    return mode


SUPPORTED = (nir.Input, nir.Output, nir.Flatten, nir.Affine, nir.Linear, nir.Scale,
             nir.Threshold, nir.Conv1d, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d, nir.Delay,
             nir.LIF, nir.LI, nir.IF, nir.I, nir.CubaLIF, nir.CubaLI)


class Op(NamedTuple):
    """One node of the executed graph."""

    name: str
    kind: str                      # the NIR type name
    step: Callable | None          # None: a pass-through (Input, Output, Flatten)
    params: Any
    sources: tuple[str, ...]       # nodes whose outputs add up to this node's input
    shape: tuple[int, ...]         # output shape (unbatched)
    initial: Any                   # state at the start (NoState() when stateless)


def _compile(name: str, node: nir.NIRNode, in_shape: tuple[int, ...], dt: float, reset: str
             ) -> tuple[Callable | None, Any, Any, tuple[int, ...]]:
    """(step, params, initial state, output shape) of one NIR node fed ``in_shape``."""
    n_in = int(np.prod(in_shape))
    kind = type(node).__name__
    if isinstance(node, (nir.Input, nir.Output)):
        return None, None, NoState(), in_shape
    if isinstance(node, nir.Flatten):
        return None, None, NoState(), _flatten_shape(in_shape, int(node.start_dim),
                                                     int(node.end_dim))
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = np.asarray(node.weight, np.float64)
        if w.ndim != 2 or w.shape[1] != n_in:
            raise GraphError(f"node {name!r} ({kind}) has weight {list(w.shape)} for an input "
                             f"of {n_in} values {list(in_shape)}")
        bias = getattr(node, "bias", None)
        b = np.zeros(w.shape[0]) if bias is None else _array(node, "bias", (w.shape[0],), name)
        return affine_step, AffineParams(np.ascontiguousarray(w.T), b), NoState(), (w.shape[0],)
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return _compile_conv(name, node, in_shape)
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        if len(in_shape) != 3:
            raise GraphError(f"node {name!r} ({kind}) needs a (C, H, W) input, got {in_shape}")
        k, s, pad = (_pair(node.kernel_size, "kernel_size", name),
                     _pair(node.stride, "stride", name), _pair(node.padding, "padding", name))
        out = (in_shape[0],) + tuple((in_shape[1 + a] + 2 * pad[a] - k[a]) // s[a] + 1
                                     for a in range(2))
        if min(out) <= 0:
            raise GraphError(f"node {name!r} ({kind}): a {k} window does not fit {in_shape}")
        divisor = float(k[0] * k[1]) if isinstance(node, nir.AvgPool2d) else 1.0
        first, stop = np.zeros(k[1], np.int64), np.zeros(k[1], np.int64)
        for kx in range(k[1]):  # outputs whose column ox * s - pad + kx is inside the input
            inside = [ox for ox in range(out[2]) if 0 <= ox * s[1] - pad[1] + kx < in_shape[2]]
            first[kx], stop[kx] = (inside[0], inside[-1] + 1) if inside else (0, 0)
        return (pool_step, PoolParams(in_shape, out, k, s, pad, first, stop, divisor),
                NoState(), out)

    shape = _neuron_shape(node)
    if int(np.prod(shape)) != n_in:
        raise GraphError(f"node {name!r} ({kind}) has {list(shape)} elements; its input "
                         f"{list(in_shape)}")
    n = int(np.prod(shape))
    if isinstance(node, nir.Scale):
        return scale_step, ScaleParams(_array(node, "scale", shape, name)), NoState(), shape
    if isinstance(node, nir.Threshold):
        return (threshold_step, ThresholdParams(_array(node, "threshold", shape, name)),
                NoState(), shape)
    if isinstance(node, nir.Delay):
        steps = _array(node, "delay", shape, name) / dt
        whole = np.round(steps)
        if np.any(whole < 0) or np.any(np.abs(steps - whole) > 1e-6 * np.maximum(1, whole)):
            raise GraphError(f"node {name!r}: delays must be whole multiples of dt = {dt:g} s, "
                             f"got {np.unique(steps * dt)[:5]} s", "dt")
        steps = whole.astype(np.int64)
        depth = int(steps.max()) if n else 0
        return delay_step, DelayParams(steps), DelayState(np.zeros((depth, n))), shape
    if isinstance(node, (nir.LIF, nir.LI)):
        beta, k = _decay(node, "tau", dt, name, shape)
        p = _membrane_params(node, name, shape, beta, k * _array(node, "r", shape, name),
                             k * _array(node, "v_leak", shape, name), reset)
        return leaky_step, p, LeakyState(np.zeros(n)), shape
    if isinstance(node, (nir.IF, nir.I)):
        p = _membrane_params(node, name, shape, np.ones(n), _array(node, "r", shape, name),
                             np.zeros(n), reset)
        return leaky_step, p, LeakyState(np.zeros(n)), shape
    if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
        alpha, ks = _decay(node, "tau_syn", dt, name, shape)
        beta, km = _decay(node, "tau_mem", dt, name, shape)
        m = _membrane_params(node, name, shape, beta, km * _array(node, "r", shape, name),
                             km * _array(node, "v_leak", shape, name), reset)
        p = CubaParams(alpha, ks * _array(node, "w_in", shape, name), m)
        return cuba_step, p, CubaState(np.zeros(n), np.zeros(n)), shape
    raise AssertionError(kind)  # unreachable: _build admits only SUPPORTED types


def _taps(size: int, size_out: int, k: int, stride: int, pad: int, dilation: int
          ) -> np.ndarray:
    """(size, k) int64: the output index input index ``i`` reaches through kernel tap ``j``
    (``i + pad - j * dilation = o * stride``), -1 where it reaches none."""
    n = np.arange(size)[:, None] + pad - np.arange(k)[None, :] * dilation
    hit = (n >= 0) & (n % stride == 0) & (n // stride < size_out)
    return np.where(hit, n // stride, -1).astype(np.int64)


def _compile_conv(name: str, node: nir.Conv1d | nir.Conv2d, in_shape: tuple[int, ...]
                  ) -> tuple[Callable, ConvParams, NoState, tuple[int, ...]]:
    """A Conv1d as a Conv2d of height 1; padding ``"same"`` / ``"valid"`` resolved as PyTorch."""
    one_d = isinstance(node, nir.Conv1d)
    w = np.asarray(node.weight, np.float64)
    if w.ndim != (3 if one_d else 4) or len(in_shape) != w.ndim - 1:
        raise GraphError(f"node {name!r}: weight {list(w.shape)} for input {list(in_shape)}")
    if one_d:
        w, in3 = w[:, :, None, :], (in_shape[0], 1, in_shape[1])
    else:
        in3 = tuple(in_shape)
    groups = int(np.asarray(node.groups).item())
    c_out, c_in = w.shape[0], in3[0]
    if groups < 1 or c_in % groups or c_out % groups or w.shape[1] != c_in // groups:
        raise GraphError(f"node {name!r}: weight {list(np.shape(node.weight))} with groups="
                         f"{groups} does not fit {c_in} input channels")

    def per_axis(value: Any, field: str, height: int) -> tuple[int, int]:
        """(height, width) values; a 1-D conv's height axis gets ``height``."""
        if one_d:
            return height, _pair(value, field, name)[1]
        return _pair(value, field, name)

    stride, dilation = per_axis(node.stride, "stride", 1), per_axis(node.dilation, "dilation", 1)
    k = w.shape[2:]
    padding = node.padding
    if isinstance(padding, (bytes, np.bytes_, str)):
        padding = _text(padding)
        if padding == "same" and stride != (1, 1):
            raise GraphError(f"node {name!r}: padding 'same' needs stride 1, got {stride}")
        # PyTorch's 'same': dilation * (k - 1) zeros in all, the odd one after the input.
        pad = ((0, 0) if padding == "valid" else
               tuple(dilation[a] * (k[a] - 1) // 2 for a in range(2)))
        if padding == "same":
            out = in3[1:]
        elif padding == "valid":
            out = tuple((in3[1 + a] - dilation[a] * (k[a] - 1) - 1) // stride[a] + 1
                        for a in range(2))
        else:
            raise GraphError(f"node {name!r}: padding must be 'same', 'valid' or ints, "
                             f"got {padding!r}")
    else:
        pad = per_axis(padding, "padding", 0)
        out = tuple((in3[1 + a] + 2 * pad[a] - dilation[a] * (k[a] - 1) - 1) // stride[a] + 1
                    for a in range(2))
    if min(out) <= 0:
        raise GraphError(f"node {name!r}: the kernel does not fit input {list(in_shape)}")
    bias = _array(node, "bias", (c_out,), name)
    out3 = (c_out, int(out[0]), int(out[1]))
    taps = [_taps(in3[1 + a], out3[1 + a], k[a], stride[a], int(pad[a]), dilation[a])
            for a in range(2)]
    params = ConvParams(np.ascontiguousarray(w.transpose(1, 2, 3, 0)), bias,
                        tuple(int(s) for s in in3), out3, taps[0], taps[1], groups)
    shape = (c_out, out3[2]) if one_d else out3
    return conv_step, params, NoState(), shape


def _build(graph: nir.NIRGraph, input_name: str, input_shape: tuple[int, ...], dt: float,
           reset: str, forced: bool) -> list[Op]:
    """The graph's nodes compiled in execution order, every edge's shapes checked."""
    nodes, edges = _inline(graph)
    sources: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        sources[b].append(a)
    if sources[input_name]:
        raise GraphError(f"the Input node {input_name!r} has incoming edges")
    ops: list[Op] = []
    shapes: dict[str, tuple[int, ...]] = {}
    for name in _order(list(nodes), edges, input_name):
        node = nodes[name]
        if not isinstance(node, SUPPORTED):
            raise GraphError(f"node {name!r}: NIR type {type(node).__name__} is not supported; "
                             f"supported: {', '.join(t.__name__ for t in SUPPORTED)}")
        # The depth-first order puts at least one source of every other node before it.
        done = [s for s in sources[name] if s in shapes]
        in_shape = input_shape if name == input_name else shapes[done[0]]
        step, params, initial, shapes[name] = _compile(
            name, node, in_shape, dt, _reset_of(node, name, reset, forced))
        ops.append(Op(name, type(node).__name__, step, params, tuple(sources[name]),
                      shapes[name], initial))
    for op in ops:  # now that the sources closing cycles are known too
        fed = {shapes[s] for s in op.sources}
        if len(fed) > 1:
            raise GraphError(f"type mismatch: node {op.name!r} adds inputs of different shapes: "
                             + ", ".join(f"{s} {list(shapes[s])}" for s in op.sources))
    return ops


# --- the executor -----------------------------------------------------------------------------

class NetworkState(NamedTuple):
    """Everything a network carries from one step to the next."""

    nodes: dict[str, Any]           # per node: its primitive's state
    carried: dict[str, np.ndarray]  # per source of an edge closing a cycle: its last output (1, n)


class Network:
    """A NIR graph compiled for one ``dt`` and reset mode: immutable parameters and a step
    function of the whole graph; the caller owns the state (`initial_state`).

    Parameters
    ----------
    graph : nir.NIRGraph
        The model (as ``nir.read`` gives it).
    dt : float or None
        Step in seconds; None: the graph's metadata ``"dt"``.
    reset : {"zero", "subtract"} or None
        Reset mode of every spiking node; None: each node's metadata ``"reset"``, else the
        graph's, else ``"zero"``.
    output : str or None
        The Output node to return; None: the graph's only one.

    Raises
    ------
    GraphError
        A graph that cannot run (unsupported node, shapes that do not fit, several inputs, dt
        larger than a time constant, delays not whole steps).
    """

    def __init__(self, graph: nir.NIRGraph, dt: float | None = None,
                 reset: str | None = None, output: str | None = None) -> None:
        self.dt, self.reset_mode = timing(graph, dt, reset)
        inputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
        outputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Output)]
        if len(inputs) != 1:
            raise GraphError(f"the graph must have exactly one Input node, it has "
                             f"{len(inputs)} ({', '.join(inputs)})")
        if output is None and len(outputs) != 1:
            raise GraphError(f"the graph has {len(outputs)} Output nodes "
                             f"({', '.join(outputs)}): name one", "output")
        if output is not None and output not in outputs:
            raise GraphError(f"no Output node {output!r}; the graph has {', '.join(outputs)}",
                             "output")
        self.input_name, self.output_name = inputs[0], output or outputs[0]
        self.input_shape = tuple(int(s) for s in np.asarray(
            graph.nodes[self.input_name].input_type["input"]).ravel())
        self.ops = _build(graph, self.input_name, self.input_shape, self.dt, self.reset_mode,
                          reset is not None)
        self.sizes = {op.name: int(np.prod(op.shape)) for op in self.ops}
        position = {op.name: k for k, op in enumerate(self.ops)}
        #: Sources of edges closing a cycle: read one step late, so run step by step.
        self.carried = sorted({s for op in self.ops for s in op.sources
                               if position[s] >= position[op.name]})
        #: Longest block of steps run layer by layer (bounds the memory of long inputs).
        self.block = 32
        self.output_shape = self.ops[position[self.output_name]].shape
        self.input_size = int(np.prod(self.input_shape))
        self.output_size = int(np.prod(self.output_shape))

    def feeding_kind(self, name: str) -> str:
        """The NIR type whose values reach node ``name``: its own, or, through pass-through
        nodes (Output, Flatten, sub-graph ends) and delays, that of the node feeding them."""
        ops = {op.name: op for op in self.ops}
        op = ops[name]
        while (op.step is None or op.kind == "Delay") and len(op.sources) == 1:
            op = ops[op.sources[0]]
        return op.kind

    def initial_state(self) -> NetworkState:
        """The state at time 0: membranes, currents and delay lines at zero, nothing carried
        round a cycle. No call writes it, so it may be kept and reused (that is a reset)."""
        return NetworkState({op.name: op.initial for op in self.ops},
                            {name: np.zeros((1, self.sizes[name])) for name in self.carried})

    def _advance(self, xs: np.ndarray, state: NetworkState) -> tuple[np.ndarray, NetworkState]:
        """A block of steps (T, input_size), node by node; one step at a time on a cycle."""
        out = dict(state.carried)
        nodes = dict(state.nodes)
        for op in self.ops:
            if op.name == self.input_name:
                v = xs
            else:
                v = out[op.sources[0]]
                for s in op.sources[1:]:
                    v = v + out[s]
            if op.step is not None:
                v, nodes[op.name] = op.step(v, nodes[op.name], op.params)
            out[op.name] = v
        return out[self.output_name], NetworkState(nodes, {k: out[k] for k in self.carried})

    def run(self, xs: np.ndarray, state: NetworkState) -> tuple[np.ndarray, NetworkState]:
        """``len(xs)`` time steps.

        Parameters
        ----------
        xs : numpy.ndarray
            One input per step: (T, *input_shape) or (T, input_size).
        state : NetworkState
            The state after the previous step (not modified).

        Returns
        -------
        ys : numpy.ndarray
            The Output node's value at every step, (T, output_size) float64.
        state : NetworkState
            The state after the last step.
        """
        xs = np.ascontiguousarray(xs, np.float64).reshape(len(xs), int(np.prod(xs.shape[1:])))
        if xs.shape[1] != self.input_size:
            raise ValueError(f"input has {xs.shape[1]} values per step, the model's Input "
                             f"{list(self.input_shape)} takes {self.input_size}")
        block = 1 if self.carried else self.block
        ys = np.empty((len(xs), self.output_size))
        for a in range(0, len(xs), block):
            ys[a:a + block], state = self._advance(xs[a:a + block], state)
        return ys, state

    def step(self, x: np.ndarray, state: NetworkState) -> tuple[np.ndarray, NetworkState]:
        """One time step of the whole graph: `run` of one input ``x`` (``input_shape`` or
        flat); returns the Output node's value (``output_size``) and the new state."""
        ys, state = self.run(np.asarray(x)[None], state)
        return ys[0], state

    def warm_up(self) -> None:
        """Compile every kernel (or load it from Numba's cache) on a throw-away state."""
        self.run(np.zeros((1, self.input_size)), self.initial_state())
