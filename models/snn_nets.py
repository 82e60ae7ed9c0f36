"""A convolutional spiking network for motion direction: training, NIR export, one-step ONNX export
(needs ``[train]``).

The network, one step per event frame (2 x 32 x 32 ON/OFF counts):

    Conv2d(2 -> 8, 5x5, stride 2, pad 2) -> LIF -> Conv2d(8 -> 16, 3x3, stride 2, pad 1) -> LIF
        -> Flatten -> Affine(1024 -> 8) -> LI (the read-out membrane, one per direction)

Neurons are written in NIR's continuous-time terms and stepped as `kernels.snn` steps them
(forward Euler, strict threshold, reset to zero in the step of the spike): with ``r = tau / dt``
an LIF is ``v = beta v + x`` (snnTorch's ``Leaky``), ``beta = 1 - dt / tau``. Training is
back-propagation through time with a fast-sigmoid surrogate gradient for the spike (Zenke &
Ganguli 2018), the loss the cross-entropy of the read-out membrane over the last half of each
sequence (a streaming decoder must be right at every step once it has seen enough).

Exports, from the same trained weights:
- NIR (`to_nir`), with ``dt`` and the reset mode in the graph's metadata: the ``snn`` node runs it;
- ONNX, one time step with explicit state (`export_step`): inputs ``x`` (1, 2, 32, 32) and the
  three membranes, outputs the read-out membrane and the three new membranes, for runtimes that
  keep the state themselves (an edge board's loop, a hardware flow that takes ONNX).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import nir
import numpy as np
import onnx
import torch
from torch import nn

from kernels.snn import set_timing

TAU_HIDDEN = 0.02
TAU_OUT = 0.05
THRESHOLD = 1.0


class _Spike(torch.autograd.Function):
    """Heaviside forward (strict, as NIR), fast-sigmoid derivative backward."""

    @staticmethod
    def forward(ctx, v: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(v)
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (v,) = ctx.saved_tensors
        return grad / (1 + 10 * v.abs()) ** 2


class MotionSNN(nn.Module):
    def __init__(self, classes: int, size: int, dt: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 8, 5, stride=2, padding=2)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * (size // 4) ** 2, classes)
        self.dt, self.size = dt, size
        self.beta_h, self.beta_o = 1 - dt / TAU_HIDDEN, 1 - dt / TAU_OUT

    def initial(self, batch: int) -> tuple[torch.Tensor, ...]:
        s = self.size
        return (torch.zeros(batch, 8, s // 2, s // 2), torch.zeros(batch, 16, s // 4, s // 4),
                torch.zeros(batch, self.fc.out_features))

    def step(self, x: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor, v3: torch.Tensor,
             spike=_Spike.apply) -> tuple[torch.Tensor, ...]:
        """One time step: integrate, fire, reset (to zero), layer after layer."""
        v1 = self.beta_h * v1 + self.conv1(x)
        s1 = spike(v1 - THRESHOLD)
        v1 = v1 * (1 - s1)
        v2 = self.beta_h * v2 + self.conv2(s1)
        s2 = spike(v2 - THRESHOLD)
        v2 = v2 * (1 - s2)
        v3 = self.beta_o * v3 + self.fc(s2.flatten(1))
        return v3, v1, v2, v3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Read-out membranes (time, batch, classes) for inputs (batch, time, 2, H, W)."""
        state = self.initial(x.shape[0])
        outs = []
        for t in range(x.shape[1]):
            out, *state = self.step(x[:, t], *state)
            outs.append(out)
        return torch.stack(outs)


def fit(x: np.ndarray, y: np.ndarray, dt: float, seed: int, epochs: int = 30, batch: int = 32,
        lr: float = 2e-3) -> MotionSNN:
    """Train on sequences ``x`` (n, time, 2, H, W) with classes ``y``; eval mode on return."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = MotionSNN(int(y.max()) + 1, x.shape[-1], dt)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-3)
    steps = epochs * math.ceil(len(x) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    loss = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y).long()
    half = x.shape[1] // 2
    net.train()
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            out = net(xt[idx])[half:]                       # (time, batch, classes)
            opt.zero_grad()
            loss(out.reshape(-1, out.shape[-1]), yt[idx].repeat(out.shape[0])).backward()
            opt.step()
            sched.step()
    return net.eval()


def _lif(n: int | tuple[int, ...], tau: float, dt: float, spiking: bool) -> nir.NIRNode:
    shape = (n,) if isinstance(n, int) else n
    full = lambda v: np.full(shape, v, np.float64)  # noqa: E731
    if spiking:
        return nir.LIF(tau=full(tau), r=full(tau / dt), v_leak=full(0.0),
                       v_threshold=full(THRESHOLD), v_reset=full(0.0))
    return nir.LI(tau=full(tau), r=full(tau / dt), v_leak=full(0.0))


def to_nir(net: MotionSNN) -> nir.NIRGraph:
    """The trained network as a NIR graph, ``dt`` and reset mode in its metadata."""
    s, dt = net.size, net.dt
    w = lambda t: t.detach().double().numpy()  # noqa: E731
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, s, s])}),
        "conv1": nir.Conv2d(input_shape=(s, s), weight=w(net.conv1.weight), stride=2, padding=2,
                            dilation=1, groups=1, bias=w(net.conv1.bias)),
        "lif1": _lif((8, s // 2, s // 2), TAU_HIDDEN, dt, True),
        "conv2": nir.Conv2d(input_shape=(s // 2, s // 2), weight=w(net.conv2.weight), stride=2,
                            padding=1, dilation=1, groups=1, bias=w(net.conv2.bias)),
        "lif2": _lif((16, s // 4, s // 4), TAU_HIDDEN, dt, True),
        "flat": nir.Flatten(input_type={"input": np.array([16, s // 4, s // 4])}, start_dim=0),
        "fc": nir.Affine(weight=w(net.fc.weight), bias=w(net.fc.bias)),
        "li": _lif(net.fc.out_features, TAU_OUT, dt, False),
        "output": nir.Output(output_type={"output": np.array([net.fc.out_features])}),
    }
    order = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])), type_check=False)
    return set_timing(graph, dt, "zero")


class _Step(nn.Module):
    """One time step with its state as inputs and outputs, spikes as a plain comparison."""

    def __init__(self, net: MotionSNN) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor,
                v3: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.net.step(x, v1, v2, v3, spike=lambda v: (v > 0).to(v.dtype))


def export_step(net: MotionSNN, path: str | Path, doc: str) -> None:
    """ONNX of one time step: (x, v1, v2, v3) -> (out, v1, v2, v3), batch axis dynamic."""
    state = net.initial(1)
    names = ["v1", "v2", "v3"]
    buf = io.BytesIO()
    torch.onnx.export(_Step(net), (torch.zeros(1, 2, net.size, net.size), *state), buf,
                      dynamo=False, opset_version=17, input_names=["x", *names],
                      output_names=["out", *(f"{n}_next" for n in names)],
                      dynamic_axes={n: {0: "batch"} for n in
                                    ["x", "out", *names, *(f"{n}_next" for n in names)]})
    model = onnx.load_from_string(buf.getvalue())
    model.doc_string = doc
    onnx.checker.check_model(model)
    onnx.save(model, str(path))

