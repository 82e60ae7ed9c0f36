"""The motor-imagery networks, their training loop and their export to ONNX (needs ``[train]``).

- `EEGNet`: EEGNet-8,2 (Lawhern et al. 2018, J. Neural Eng. 15:056013): a temporal convolution
  (F1 = 8 filters, half a second long), a depthwise spatial convolution per filter (D = 2), then a
  separable convolution (F2 = 16); batch norm, ELU, average pooling and dropout between them.
  ~3 k parameters for 21 channels.
- `Conformer`: a small EEG Conformer (Song et al. 2023, IEEE TNSRE 31:710): the same kind of
  temporal + spatial convolution as a patch embedding, pooled into tokens of 16 features (the
  paper has 40: 16 costs about what EEGNet costs to train on two cores), then two transformer
  encoder layers (self-attention over time) and a linear read-out.

Both take ``(batch, 1, channels, samples)`` and return logits. Training (`fit`) is plain
AdamW with a one-cycle schedule, seeded and on the CPU; trials longer than the window are seen
as a random crop each pass (augmentation for windows shorter than the trial). `export` writes ONNX (opset 17, dynamic batch axis) with neuroflow's
metadata (`kernels.onnx_session.ModelMeta`), so the ``onnx`` node checks channels, rate and
window length against the stream it is given.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from torch import nn

from kernels.onnx_session import ModelMeta, write_metadata


class EEGNet(nn.Module):
    def __init__(self, channels: int, samples: int, classes: int = 2, f1: int = 8, d: int = 2,
                 f2: int = 16, kernel: int = 80, dropout: float = 0.25) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, f1, (1, kernel), padding=(0, kernel // 2), bias=False),
            nn.BatchNorm2d(f1),
            nn.Conv2d(f1, f1 * d, (channels, 1), groups=f1, bias=False),
            nn.BatchNorm2d(f1 * d), nn.ELU(), nn.AvgPool2d((1, 4)), nn.Dropout(dropout),
            nn.Conv2d(f1 * d, f1 * d, (1, 16), padding=(0, 8), groups=f1 * d, bias=False),
            nn.Conv2d(f1 * d, f2, 1, bias=False),
            nn.BatchNorm2d(f2), nn.ELU(), nn.AvgPool2d((1, 8)), nn.Dropout(dropout),
            nn.Flatten())
        with torch.no_grad():
            n = self.features(torch.zeros(1, 1, channels, samples)).shape[1]
        self.classify = nn.Linear(n, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


class Conformer(nn.Module):
    def __init__(self, channels: int, samples: int, classes: int = 2, emb: int = 16,
                 depth: int = 2, heads: int = 4, dropout: float = 0.5) -> None:
        super().__init__()
        self.embed = nn.Sequential(
            nn.Conv2d(1, emb, (1, 25)), nn.Conv2d(emb, emb, (channels, 1)), nn.BatchNorm2d(emb),
            nn.ELU(), nn.AvgPool2d((1, 75), (1, 15)), nn.Dropout(dropout),
            nn.Conv2d(emb, emb, 1))
        layer = nn.TransformerEncoderLayer(emb, heads, 2 * emb, dropout, batch_first=True,
                                           activation="gelu")
        self.encode = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        with torch.no_grad():
            tokens = self.embed(torch.zeros(1, 1, channels, samples)).shape[-1]
        self.classify = nn.Sequential(nn.Flatten(), nn.Dropout(dropout),
                                      nn.Linear(tokens * emb, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.embed(x).squeeze(2).transpose(1, 2)     # (batch, tokens, emb)
        return self.classify(self.encode(z))


NETS: dict[str, Callable[..., nn.Module]] = {"eegnet": EEGNet, "conformer": Conformer}


def fit(name: str, x: np.ndarray, y: np.ndarray, window: int, seed: int, epochs: int = 60,
        batch: int = 64, lr: float = 1e-3, weight_decay: float = 1e-2) -> nn.Module:
    """Train network ``name`` on trials ``x`` (n, channels, samples >= window), labels ``y``,
    each presented as a random ``window``-sample crop per epoch; returns it in eval mode."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = NETS[name](x.shape[1], window, int(y.max()) + 1)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(x) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    loss = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    net.train()
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            offset = rng.integers(0, x.shape[2] - window + 1, len(idx))
            crop = torch.stack([xt[j, :, o:o + window] for j, o in zip(idx, offset)])[:, None]
            opt.zero_grad()
            loss(net(crop), yt[idx]).backward()
            opt.step()
            sched.step()
    return net.eval()


def predict(net: nn.Module, x: np.ndarray) -> np.ndarray:
    """Logits of ``net`` on windows ``x`` (n, channels, samples)."""
    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(x))[:, None]).numpy()


def export(net: nn.Module, path: str | Path, channels: list[str], srate: float, window: int,
           classes: list[str], doc: str) -> None:
    """Write ``net`` as ONNX with neuroflow's metadata (input ``x``, output ``logits``)."""
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.zeros(1, 1, len(channels), window),), buf, dynamo=False,
                      input_names=["x"], output_names=["logits"], opset_version=17,
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    model = onnx.load_from_string(buf.getvalue())
    model.doc_string = doc
    write_metadata(model, ModelMeta(input_layout=("batch", "1", "channels", "samples"),
                                    channel_names=tuple(channels), srate=srate,
                                    window_samples=window, class_names=tuple(classes),
                                    output="logits"))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
