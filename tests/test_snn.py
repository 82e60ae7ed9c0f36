"""snn: every NIR primitive equals a plainly written NumPy reference step for step (the NIR
equations discretised by forward Euler, convolutions by scipy.signal.correlate, pools and delays
by slicing); whole graphs built with ``nir``, written with ``nir.write`` and read back through
the node spike for spike; zero vs subtract reset; dt and reset from the file's metadata or the
params; a stream cut into frames anywhere gives the spikes of one run; ``reset()`` goes back to
time 0; and a model that does not fit its stream fails ``setup`` naming both shapes.

Tolerances: the kernels compute ``beta v + gain x + bias`` and scatter convolutions input by
input, the references ``v + dt/tau (v_leak - v + r x)`` and gather them: the same float64 values
to a few ulps (rtol 1e-12 on values). Spikes are compared exactly: a spike could only differ
for a membrane within ~1e-15 of its threshold, which random continuous weights never give.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nir
import numpy as np
import pytest
from scipy.signal import correlate

from kernels.snn import GraphError, Network, set_timing
from nodes.snn import SNN
from pipeline import Frame, FrameKind, ParamError, StreamInfo

DT = 1e-3
RTOL = ATOL = 1e-12  # float64 sums in another order (see the module docstring)


# --- references -------------------------------------------------------------------------------

def ref_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride, padding, dilation,
             groups: int) -> np.ndarray:
    """PyTorch's conv2d of one (C, H, W) input: zero-pad, dilate the kernel, correlate 'valid'
    per channel pair of each group, keep every stride-th output."""
    c_out, cin_g, kh, kw = w.shape
    (sy, sx), (dy, dx) = stride, dilation
    if padding == "same":  # PyTorch: the odd zero goes after the input
        pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for d, k in ((dy, kh), (dx, kw))]
    else:
        pads = [(padding[0], padding[0]), (padding[1], padding[1])]
    xp = np.pad(x, [(0, 0), *pads])
    kd = np.zeros((c_out, cin_g, (kh - 1) * dy + 1, (kw - 1) * dx + 1))
    kd[:, :, ::dy, ::dx] = w
    cout_g = c_out // groups
    out = []
    for co in range(c_out):
        g = co // cout_g
        acc = sum(correlate(xp[g * cin_g + c], kd[co, c], mode="valid") for c in range(cin_g))
        out.append(acc[::sy, ::sx] + b[co])
    return np.stack(out)


def ref_pool(x: np.ndarray, k, s, p, average: bool) -> np.ndarray:
    """Sum (or mean over the whole window, padding included) of each window, by slicing."""
    xp = np.pad(x, [(0, 0), (p[0], p[0]), (p[1], p[1])])
    ho, wo = (xp.shape[1] - k[0]) // s[0] + 1, (xp.shape[2] - k[1]) // s[1] + 1
    out = np.empty((x.shape[0], ho, wo))
    for i in range(ho):
        for j in range(wo):
            window = xp[:, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]]
            out[:, i, j] = window.sum(axis=(1, 2))
    return out / (k[0] * k[1]) if average else out


def fire(v: np.ndarray, thr: np.ndarray, v_reset: np.ndarray, mode: str):
    z = v > thr
    return z.astype(float), np.where(z, v - thr if mode == "subtract" else v_reset, v)


def ref_lif(xs, tau, r, v_leak, thr=None, v_reset=0.0, mode="zero", dt=DT):
    """LIF (LI when thr is None): tau dv/dt = v_leak - v + r x, Euler, then fire and reset."""
    v, out = np.zeros(xs.shape[1:]), []
    for x in xs:
        v = v + dt / tau * (v_leak - v + r * x)
        if thr is None:
            out.append(v)
        else:
            z, v = fire(v, thr, v_reset, mode)
            out.append(z)
    return np.array(out)


def ref_cuba(xs, tau_syn, tau_mem, r, v_leak, w_in, thr=None, v_reset=0.0, mode="zero", dt=DT):
    """CubaLIF (CubaLI when thr is None): the current first, the membrane from the new one."""
    i, v, out = np.zeros(xs.shape[1:]), np.zeros(xs.shape[1:]), []
    for x in xs:
        i = i + dt / tau_syn * (-i + w_in * x)
        v = v + dt / tau_mem * (v_leak - v + r * i)
        if thr is None:
            out.append(v)
        else:
            z, v = fire(v, thr, v_reset, mode)
            out.append(z)
    return np.array(out)


def ref_if(xs, r, thr=None, v_reset=0.0, mode="zero"):
    """IF (I when thr is None): v += r x, then fire and reset."""
    v, out = np.zeros(xs.shape[1:]), []
    for x in xs:
        v = v + r * x
        if thr is None:
            out.append(v)
        else:
            z, v = fire(v, thr, v_reset, mode)
            out.append(z)
    return np.array(out)


def ref_delay(xs, steps):
    """y[t, k] = x[t - steps[k], k], zeros before the start."""
    ys = np.zeros_like(xs)
    for k, d in enumerate(steps):
        ys[d:, k] = xs[:len(xs) - d, k]
    return ys


# --- helpers ----------------------------------------------------------------------------------

def run_alone(node: nir.NIRNode, xs: np.ndarray, **kw) -> np.ndarray:
    """``xs`` (T, *shape) through Input -> node -> Output, in uneven blocks (1, 2, 7, ...)."""
    # no NIR type check: nir 1.0.8 takes a grouped conv's weight.shape[1] for its input channels
    graph = nir.NIRGraph.from_list(nir.Input(np.array(xs.shape[1:])), node, type_check=False)
    net = Network(graph, dt=kw.pop("dt", DT), **kw)
    state, ys, a = net.initial_state(), [], 0
    for size in [1, 2, 7, 1, 40] * 100:
        if a >= len(xs):
            break
        y, state = net.run(xs[a:a + size], state)
        ys.append(y)
        a += size
    return np.concatenate(ys).reshape(len(xs), *net.output_shape)


def lif(shape, tau=5e-3, thr=0.3) -> nir.LIF:
    """A LIF layer with one time constant and threshold, r = 1, v_leak = v_reset = 0."""
    return nir.LIF(tau=np.full(shape, tau), r=np.ones(shape), v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, thr))


def spikes(rng: np.random.Generator, shape, p: float = 0.2) -> np.ndarray:
    return (rng.random(shape) < p).astype(float)


def make_node(path: Path, shape: tuple[int, ...], **params) -> tuple[SNN, StreamInfo]:
    node = SNN(SNN.Params(model=str(path), **params), "snn")
    info = node.setup({"in": StreamInfo(FrameKind.TENSOR, 100.0, shape=shape)})["out"]
    node.open()
    return node, info


def feed(node: SNN, frames) -> list[Frame]:
    return [f for k, x in enumerate(frames)
            for _, f in node.process("in", Frame(FrameKind.TENSOR, x, k, t_device=k / 100))]


def active(z: np.ndarray, low: float = 0.02, high: float = 0.8) -> None:
    """The test means something: the spike train is neither silent nor saturated."""
    assert low < z.mean() < high, z.mean()


# --- primitives -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["zero", "subtract"])
def test_lif_and_li(mode):
    rng = np.random.default_rng(1)
    shape, xs = (3, 5), rng.normal(0.6, 1.0, (200, 3, 5))
    tau, r = rng.uniform(2e-3, 2e-2, shape), rng.uniform(0.5, 2, shape)
    v_leak = rng.normal(0, .1, shape)
    thr, v_reset = rng.uniform(.1, .4, shape), rng.uniform(-.1, .05, shape)
    node = nir.LIF(tau=tau, r=r, v_leak=v_leak, v_threshold=thr, v_reset=v_reset)
    z = run_alone(node, xs, reset=mode)
    assert np.array_equal(z, ref_lif(xs, tau, r, v_leak, thr, v_reset, mode))
    active(z)
    li = run_alone(nir.LI(tau=tau, r=r, v_leak=v_leak), xs)
    np.testing.assert_allclose(li, ref_lif(xs, tau, r, v_leak), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mode", ["zero", "subtract"])
def test_cuba_lif_and_cuba_li(mode):
    rng = np.random.default_rng(2)
    n, xs = 12, spikes(rng, (300, 12), 0.3)
    tau_syn, tau_mem = rng.uniform(2e-3, 1e-2, n), rng.uniform(5e-3, 3e-2, n)
    r, v_leak, w_in = rng.uniform(1, 20, n), rng.normal(0, .05, n), rng.uniform(.5, 2, n)
    thr = rng.uniform(.2, .5, n)
    node = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=r, v_leak=v_leak, v_threshold=thr,
                       w_in=w_in)
    z = run_alone(node, xs, reset=mode)
    assert np.array_equal(z, ref_cuba(xs, tau_syn, tau_mem, r, v_leak, w_in, thr, 0.0, mode))
    active(z)
    li = run_alone(nir.CubaLI(tau_syn=tau_syn, tau_mem=tau_mem, r=r, v_leak=v_leak, w_in=w_in), xs)
    np.testing.assert_allclose(li, ref_cuba(xs, tau_syn, tau_mem, r, v_leak, w_in),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mode", ["zero", "subtract"])
def test_if_and_i(mode):
    rng = np.random.default_rng(3)
    xs, r = rng.normal(0.1, 0.5, (150, 9)), rng.uniform(.5, 1.5, 9)
    thr = rng.uniform(.5, 1.5, 9)
    z = run_alone(nir.IF(r=r, v_threshold=thr, v_reset=np.full(9, -.2)), xs, reset=mode)
    assert np.array_equal(z, ref_if(xs, r, thr, -.2, mode))
    active(z)
    np.testing.assert_allclose(run_alone(nir.I(r=r), xs), ref_if(xs, r), rtol=RTOL, atol=1e-10)


def test_reset_modes_differ_as_defined():
    """One neuron, constant drive: zero reset restarts at v_reset, subtract keeps the excess."""
    xs = np.full((6, 1), 0.75)
    node = lambda: nir.IF(r=np.ones(1), v_threshold=np.ones(1), v_reset=np.full(1, 0.1))  # noqa
    # zero: v = .75, 1.5 -> spike, v = .1; .85; 1.6 -> spike, .1; .85
    assert run_alone(node(), xs, reset="zero")[:, 0].tolist() == [0, 1, 0, 1, 0, 1]
    # subtract: .75; 1.5 -> spike, .5; 1.25 -> spike, .25; 1.0 (exact: not > 1); 1.75 -> spike,
    # .75; 1.5 -> spike
    assert run_alone(node(), xs, reset="subtract")[:, 0].tolist() == [0, 1, 1, 0, 1, 1]


def test_affine_linear_scale_threshold():
    rng = np.random.default_rng(4)
    xs = spikes(rng, (50, 30), 0.1) * rng.uniform(0.5, 2, (50, 30))  # sparse, graded
    w, b = rng.normal(size=(7, 30)), rng.normal(size=7)
    np.testing.assert_allclose(run_alone(nir.Affine(weight=w, bias=b), xs), xs @ w.T + b,
                               rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(run_alone(nir.Linear(weight=w), xs), xs @ w.T, rtol=RTOL, atol=ATOL)
    s = rng.normal(size=30)
    np.testing.assert_array_equal(run_alone(nir.Scale(scale=s), xs), xs * s)
    thr = rng.uniform(0, 1, 30)
    np.testing.assert_array_equal(run_alone(nir.Threshold(threshold=thr), xs), xs > thr)


@pytest.mark.parametrize("stride,padding,dilation,groups", [
    ((1, 1), (0, 0), (1, 1), 1), ((2, 1), (1, 2), (1, 1), 1), ((1, 1), "same", (2, 1), 2),
    ((3, 2), (2, 0), (2, 3), 2), ((1, 1), "valid", (1, 1), 4), ((1, 1), "same", (1, 1), 1)])
def test_conv2d(stride, padding, dilation, groups):
    rng = np.random.default_rng(5)
    c_in, c_out, h, w = 4, 8, 13, 11
    weight = rng.normal(size=(c_out, c_in // groups, 3, 4))
    bias = rng.normal(size=c_out)
    xs = spikes(rng, (6, c_in, h, w), 0.3)
    xs[2] = rng.normal(size=(c_in, h, w))  # dense and graded too
    node = nir.Conv2d(input_shape=(h, w), weight=weight, stride=stride, padding=padding,
                      dilation=dilation, groups=groups, bias=bias)
    want = np.array([ref_conv(x, weight, bias, stride, "same" if padding == "same" else
                              (0, 0) if padding == "valid" else padding, dilation, groups)
                     for x in xs])
    np.testing.assert_allclose(run_alone(node, xs), want, rtol=RTOL, atol=ATOL)


def test_conv1d():
    rng = np.random.default_rng(6)
    weight, bias = rng.normal(size=(6, 1, 5)), rng.normal(size=6)
    xs = spikes(rng, (5, 3, 40), 0.3)
    node = nir.Conv1d(input_shape=40, weight=weight, stride=2, padding=3, dilation=2, groups=3,
                      bias=bias)
    want = np.array([ref_conv(x[:, None], weight[:, :, None], bias, (1, 2), (0, 3), (1, 2), 3)[:, 0]
                     for x in xs])
    np.testing.assert_allclose(run_alone(node, xs), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("cls", [nir.SumPool2d, nir.AvgPool2d])
@pytest.mark.parametrize("k,s,p", [((2, 2), (2, 2), (0, 0)), ((3, 2), (2, 3), (1, 1))])
def test_pools(cls, k, s, p):
    rng = np.random.default_rng(7)
    xs = rng.normal(size=(4, 3, 10, 9))
    node = cls(kernel_size=np.array(k), stride=np.array(s), padding=np.array(p))
    want = np.array([ref_pool(x, k, s, p, cls is nir.AvgPool2d) for x in xs])
    np.testing.assert_allclose(run_alone(node, xs), want, rtol=RTOL, atol=ATOL)


def test_delay_whole_steps_only():
    rng = np.random.default_rng(8)
    steps = np.array([0, 1, 3, 3, 7, 2])
    xs = rng.normal(size=(60, 6))
    node = lambda d: nir.Delay(delay=d)  # noqa: E731
    np.testing.assert_array_equal(run_alone(node(steps * DT), xs), ref_delay(xs, steps))
    np.testing.assert_array_equal(run_alone(node(np.zeros(6)), xs), xs)
    with pytest.raises(GraphError, match="whole multiples of dt") as e:
        run_alone(node(steps * DT + 0.4 * DT), xs)
    assert e.value.about == "dt"


def test_steps_do_not_write_their_arguments():
    """Pure steps: the state handed in is unchanged after a run (so it can be kept, reused)."""
    rng = np.random.default_rng(9)
    graph = nir.NIRGraph.from_list(
        nir.Input(np.array([6])), nir.Affine(weight=rng.normal(size=(6, 6)), bias=np.zeros(6)),
        nir.CubaLIF(tau_syn=np.full(6, 4e-3), tau_mem=np.full(6, 8e-3), r=np.full(6, 8.0),
                    v_leak=np.zeros(6), v_threshold=np.full(6, .1)),
        nir.Delay(delay=np.arange(6) * DT), lif((6,)))
    net = Network(graph, dt=DT)
    xs = spikes(rng, (30, 6), .5)
    _, state = net.run(xs, net.initial_state())
    kept, given = copy.deepcopy(state), xs.copy()
    net.run(xs, state)
    assert np.array_equal(xs, given)
    for name in state.nodes:
        for a, b in zip(state.nodes[name], kept.nodes[name]):
            assert np.array_equal(a, b), name


# --- whole graphs through the node ------------------------------------------------------------

def conv_graph(rng: np.random.Generator):
    """Input -> Conv2d -> LIF -> SumPool2d -> Flatten -> Affine -> LIF -> Output, and the
    parameters the reference needs."""
    w1, b1 = rng.normal(0, .8, (4, 2, 3, 3)), rng.normal(0, .1, 4)
    w2, b2 = rng.normal(0, .6, (5, 4 * 6 * 6)), rng.normal(0, .1, 5)
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(np.array([2, 12, 12])),
        "conv": nir.Conv2d(input_shape=(12, 12), weight=w1, stride=1, padding=1, dilation=1,
                           groups=1, bias=b1),
        "lif1": lif((4, 12, 12), tau=4e-3, thr=0.25),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                              padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([4, 6, 6])}, start_dim=0),
        "fc": nir.Affine(weight=w2, bias=b2),
        "lif2": lif((5,), tau=8e-3, thr=0.4),
        "output": nir.Output(np.array([5]))},
        edges=[("input", "conv"), ("conv", "lif1"), ("lif1", "pool"), ("pool", "flat"),
               ("flat", "fc"), ("fc", "lif2"), ("lif2", "output")])

    def reference(xs, mode="zero", dt=DT):
        c = np.array([ref_conv(x, w1, b1, (1, 1), (1, 1), (1, 1), 1) for x in xs])
        z1 = ref_lif(c, 4e-3, 1.0, 0.0, 0.25, 0.0, mode, dt)
        pooled = np.array([ref_pool(z, (2, 2), (2, 2), (0, 0), False) for z in z1])
        z2 = ref_lif(pooled.reshape(len(xs), -1) @ w2.T + b2, 8e-3, 1.0, 0.0, 0.4, 0.0, mode, dt)
        return z1, z2

    return graph, reference


@pytest.mark.parametrize("mode", ["zero", "subtract"])
def test_conv_graph_from_file_spike_for_spike(tmp_path, mode):
    rng = np.random.default_rng(10)
    graph, reference = conv_graph(rng)
    nir.write(tmp_path / "conv.nir", set_timing(graph, DT, mode))
    xs = spikes(rng, (120, 2, 12, 12), 0.15)
    z1, z2 = reference(xs, mode)
    active(z1), active(z2)
    node, info = make_node(tmp_path / "conv.nir", (-1, 2, 12, 12))  # dt, reset: the metadata
    assert info.kind is FrameKind.TENSOR and info.shape == (-1, 5)
    assert (info.extra["dt"], info.extra["reset"]) == (DT, mode)
    out = feed(node, [xs])
    assert len(out) == 1 and out[0].data.dtype == np.float32
    np.testing.assert_array_equal(out[0].data, z2)
    assert node.figures()["steps"] == 120


def test_cuba_delay_li_graph_from_file(tmp_path):
    """Input -> Affine -> CubaLIF -> Delay -> Affine -> LI -> Output, one step per frame."""
    rng = np.random.default_rng(11)
    n_in, n_hid, n_out = 20, 16, 6
    w1, w2 = rng.normal(0, .5, (n_hid, n_in)), rng.normal(0, 1, (n_out, n_hid))
    b1 = rng.normal(0, .05, n_hid)
    tau_syn, tau_mem = rng.uniform(3e-3, 6e-3, n_hid), rng.uniform(6e-3, 12e-3, n_hid)
    r, w_in, thr = tau_mem / DT, rng.uniform(.5, 1.5, n_hid), np.full(n_hid, .3)
    steps = rng.integers(0, 5, n_hid)
    tau_o, r_o = np.full(n_out, 1e-2), np.full(n_out, 2.0)
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(np.array([n_in])), "fc1": nir.Affine(weight=w1, bias=b1),
        "cuba": nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=r, v_leak=np.zeros(n_hid),
                            v_threshold=thr, w_in=w_in),
        "delay": nir.Delay(delay=steps * DT), "fc2": nir.Linear(weight=w2),
        "li": nir.LI(tau=tau_o, r=r_o, v_leak=np.full(n_out, .05)),
        "output": nir.Output(np.array([n_out]))},
        edges=[("input", "fc1"), ("fc1", "cuba"), ("cuba", "delay"), ("delay", "fc2"),
               ("fc2", "li"), ("li", "output")])
    nir.write(tmp_path / "cuba.nir", graph)  # no metadata: dt from the params
    xs = spikes(rng, (200, n_in), 0.2)
    z = ref_cuba(xs @ w1.T + b1, tau_syn, tau_mem, r, 0.0, w_in, thr)
    active(z)
    want = ref_lif(ref_delay(z, steps) @ w2.T, tau_o, r_o, .05)
    node, info = make_node(tmp_path / "cuba.nir", (n_in,), dt=DT)
    assert info.shape == (1, n_out)
    got = np.concatenate([f.data for f in feed(node, xs)])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # float32 out of float64


def test_recurrent_and_nested_graph(tmp_path):
    """A recurrent CubaLIF as snnTorch exports RSynaptic (a sub-graph whose Linear feeds its
    neuron back): the edge closing the cycle carries the previous step's spikes."""
    rng = np.random.default_rng(12)
    n_in, n = 5, 8
    w_in, w_rec = rng.normal(0, .8, (n, n_in)), rng.normal(0, .5, (n, n))
    tau_syn, tau_mem, thr = np.full(n, 5e-3), np.full(n, 1e-2), np.full(n, .5)
    sub = nir.NIRGraph(nodes={
        "input": nir.Input(np.array([n])),
        "lif": nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / DT,
                           v_leak=np.zeros(n), v_threshold=thr),
        "w_rec": nir.Linear(weight=w_rec), "output": nir.Output(np.array([n]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([n_in])),
                                "fc": nir.Affine(weight=w_in, bias=np.zeros(n)), "rsyn": sub,
                                "output": nir.Output(np.array([n]))},
                         edges=[("input", "fc"), ("fc", "rsyn"), ("rsyn", "output")],
                         metadata={"dt": DT})
    nir.write(tmp_path / "rec.nir", graph)
    xs = spikes(rng, (150, n_in), 0.3)
    i, v, z, want = np.zeros(n), np.zeros(n), np.zeros(n), []
    for x in xs:
        i = i + DT / tau_syn * (-i + w_in @ x + w_rec @ z)
        v = v + DT / tau_mem * (-v + tau_mem / DT * i)
        z, v = fire(v, thr, 0.0, "zero")
        want.append(z)
    active(np.array(want))
    node, _ = make_node(tmp_path / "rec.nir", (-1, n_in))
    cuts = [0, 1, 2, 40, 41, 150]
    got = np.concatenate([f.data for f in feed(node, [xs[a:b] for a, b in zip(cuts, cuts[1:])])])
    np.testing.assert_array_equal(got, want)


def test_frames_cut_anywhere_and_reset(tmp_path):
    rng = np.random.default_rng(13)
    graph, _ = conv_graph(rng)
    nir.write(tmp_path / "g.nir", set_timing(graph, DT))
    xs = spikes(rng, (90, 2, 12, 12), 0.15)
    xs.flags.writeable = False  # as a frame off the wire: the node must not write it
    node, _ = make_node(tmp_path / "g.nir", (-1, 2, 12, 12))
    whole = feed(node, [xs])[0].data
    node.reset()
    cuts = np.sort(rng.integers(0, 91, 12))
    parts = [xs[a:b] for a, b in zip([0, *cuts], [*cuts, 90])]  # empty frames included
    assert np.array_equal(np.concatenate([f.data for f in feed(node, parts)]), whole)
    node.reset()
    fresh = node.net.initial_state()
    assert all(np.array_equal(a, b) for k in fresh.nodes
               for a, b in zip(node.state.nodes[k], fresh.nodes[k]))
    one, _ = make_node(tmp_path / "g.nir", (2, 12, 12))  # one step per frame
    assert np.array_equal(np.concatenate([f.data for f in feed(one, xs)]), whole)
    assert np.array_equal(np.concatenate([f.data for f in feed(node, [xs[:30]])]), whole[:30])


def test_prediction_rate_readout_and_steps_per_frame(tmp_path):
    rng = np.random.default_rng(14)
    graph, reference = conv_graph(rng)
    nir.write(tmp_path / "g.nir", set_timing(graph, DT))
    frames = spikes(rng, (7, 2, 12, 12), 0.15)
    names = list("abcde")
    node, info = make_node(tmp_path / "g.nir", (2, 12, 12), steps_per_frame=10, class_names=names)
    assert info.kind is FrameKind.PREDICTION and info.class_names == tuple(names)
    out = feed(node, frames)
    _, z = reference(np.repeat(frames, 10, axis=0))
    for k, f in enumerate(out):
        counts = z[10 * k:10 * k + 10].sum(axis=0)
        assert f.kind is FrameKind.PREDICTION and f.t_origin_ns == k and f.t_device == k / 100
        assert f.meta["steps"] == 10 and f.meta["spikes"] == counts.sum()
        want = counts / counts.sum() if counts.sum() else np.full(5, .2)
        np.testing.assert_allclose(f.data, want, rtol=1e-6)
        assert f.meta["index"] == int(np.argmax(want)) and f.meta["label"] == names[f.meta["index"]]
    assert len({f.meta["label"] for f in out}) > 1  # the frames differ, so do the predictions


def test_dt_and_reset_params_override_the_metadata(tmp_path):
    rng = np.random.default_rng(15)
    graph, reference = conv_graph(rng)
    nir.write(tmp_path / "g.nir", set_timing(graph, 2e-3, "zero"))
    xs = spikes(rng, (60, 2, 12, 12), 0.15)
    node, info = make_node(tmp_path / "g.nir", (-1, 2, 12, 12), dt=DT, reset="subtract")
    assert (info.extra["dt"], info.extra["reset"]) == (DT, "subtract")
    assert np.array_equal(feed(node, [xs])[0].data, reference(xs, "subtract", DT)[1])
    node, _ = make_node(tmp_path / "g.nir", (-1, 2, 12, 12))
    assert np.array_equal(feed(node, [xs])[0].data, reference(xs, "zero", 2e-3)[1])


def test_node_metadata_reset_overrides_the_graph():
    xs = np.full((6, 1), 0.75)
    one = lambda meta: nir.NIRGraph.from_list(  # noqa: E731
        nir.Input(np.array([1])), nir.IF(r=np.ones(1), v_threshold=np.ones(1), metadata=meta))
    graph = set_timing(one({"reset": "subtract"}), DT, "zero")
    z = Network(graph).run(xs, Network(graph).initial_state())[0][:, 0]
    assert z.tolist() == [0, 1, 1, 0, 1, 1]  # subtract, as the node says
    z = Network(graph, reset="zero").run(xs, Network(graph).initial_state())[0][:, 0]
    assert z.tolist() == [0, 1, 0, 1, 0, 1]  # the caller's choice wins


def test_nonfinite_input_counts_as_no_input(tmp_path):
    rng = np.random.default_rng(16)
    graph, reference = conv_graph(rng)
    nir.write(tmp_path / "g.nir", set_timing(graph, DT))
    xs = spikes(rng, (40, 2, 12, 12), 0.15)
    bad = xs.copy()
    bad[5, 0, :3, 0] = np.nan
    bad[9, 1, 4, 4] = np.inf
    node, _ = make_node(tmp_path / "g.nir", (-1, 2, 12, 12))
    clean = np.where(np.isfinite(bad), bad, 0.0)
    assert np.array_equal(feed(node, [bad])[0].data, reference(clean)[1])
    assert node.figures()["nonfinite"] == 4
    with pytest.raises(ValueError, match=r"frame has shape \[40, 2, 12, 13\]"):
        feed(node, [np.zeros((40, 2, 12, 13))])


# --- errors that name what to fix -------------------------------------------------------------

def test_setup_errors_name_the_field(tmp_path):
    rng = np.random.default_rng(17)
    graph, _ = conv_graph(rng)
    nir.write(tmp_path / "bare.nir", graph)
    nir.write(tmp_path / "g.nir", set_timing(conv_graph(rng)[0], DT))

    def error(path, shape, **params) -> ParamError:
        with pytest.raises(ParamError) as e:
            make_node(tmp_path / path, shape, **params)
        return e.value

    e = error("g.nir", (2, 34, 34))
    assert e.field == "model" and "[2, 12, 12]" in str(e) and "[2, 34, 34]" in str(e)
    assert error("bare.nir", (2, 12, 12)).field == "dt"
    assert error("g.nir", (2, 12, 12), dt=5e-3).field == "dt"  # dt > tau = 4 ms: unstable
    assert error("g.nir", (2, 12, 12), class_names=["a", "b"]).field == "class_names"
    assert error("g.nir", (2, 12, 12), output="nope").field == "output"
    assert error("missing.nir", (2, 12, 12)).field == "model"
    (tmp_path / "junk.nir").write_bytes(b"not hdf5")
    assert "junk.nir" in str(error("junk.nir", (2, 12, 12)))


def test_rate_readout_needs_spikes(tmp_path):
    graph = nir.NIRGraph.from_list(nir.Input(np.array([3])),
                                   nir.LI(tau=np.full(3, 1e-2), r=np.ones(3), v_leak=np.zeros(3)))
    nir.write(tmp_path / "li.nir", set_timing(graph, DT))
    with pytest.raises(ParamError) as e:
        make_node(tmp_path / "li.nir", (3,), class_names=["a", "b", "c"])
    assert e.value.field == "readout"
    node, info = make_node(tmp_path / "li.nir", (3,), class_names=["a", "b", "c"],
                           readout="softmax", steps_per_frame=4)
    x = np.array([1.0, 3.0, 2.0])
    f = feed(node, [x])[0]
    mean = ref_lif(np.repeat(x[None], 4, 0), 1e-2, 1.0, 0.0).mean(axis=0)
    np.testing.assert_allclose(f.data, np.exp(mean) / np.exp(mean).sum(), rtol=1e-6)
    assert f.meta["label"] == "b"
