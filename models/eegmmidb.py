"""EEGMMIDB motor imagery through neuroflow's own nodes: which files, which chain, which epochs.

Why one module: the training script (`models/train_mi.py`) and the benchmark
(`benchmarks/mi_decoding.py`) must see exactly what a live graph sees, so both build their data
from the same node chain, run in-process by `pipeline.inline`:

    eeg_file (one subject's runs, back to back) -> pick -> bandpass -> standardize
        -> epoch (T1: left, T2: right) [-> method nodes] [-> onnx]

The EEG Motor Movement/Imagery Dataset (Schalk et al. 2004, PhysioNet) names its files
``S<subject>R<run>.edf``. In runs 4, 8 and 12 the subject imagines opening and closing the left
(T1) or the right (T2) fist; runs 3, 7 and 11 are the executed movements with the same codes.
Other runs use T1/T2 for other tasks (both fists / both feet) and are never mixed in.

Preprocessing, all causal: the 21 sensorimotor channels (FC5..FC6, C5..C6, CP5..CP6, where the
mu/beta desynchronisation of hand imagery shows), a 4-40 Hz IIR band-pass, and braindecode's
exponential moving standardisation (per channel, time constant ~6 s at 160 Hz), which puts every
subject and headset on one amplitude scale without looking ahead. A model decides on 4 s windows,
scored per trial on the window that starts at the cue (the whole imagery period: in this
dataset's leave-one-subject-out, 4 s windows beat 3 s and 2 s ones for EEGNet and for the
tangent-space reference alike, 0.60 / 0.56 / 0.49 on four folds).

This module needs no torch: only the node chain and the file layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mne
import numpy as np

from pipeline.inline import collect

#: Runs by task: in both, T1 = left fist, T2 = right fist.
RUNS = {"imagined": (4, 8, 12), "executed": (3, 7, 11)}
EVENTS = {"T1": "left", "T2": "right"}
CLASSES = ["left", "right"]
CHANNELS = ["FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6",
            "C5", "C3", "C1", "Cz", "C2", "C4", "C6",
            "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6"]
SRATE = 160.0
BAND = (4.0, 40.0)
#: braindecode's usual factor: the moving statistics' time constant is 1000 samples.
STANDARDIZE = {"factor_new": 1e-3}
#: Trials as cut for training (s after the cue, both ends in samples as MNE rounds).
TRIAL = (0.0, 4.0 - 1 / SRATE)
#: The window a model decides on, starting at the cue when scored per trial.
WINDOW_S = 4.0
WINDOW_SAMPLES = round(WINDOW_S * SRATE)
TEST_START_S = 0.0
_NAME = re.compile(r"^S(\d{3})R(\d{2})\.edf$", re.IGNORECASE)


def recordings(directory: str | Path, task: str = "imagined") -> dict[str, list[Path]]:
    """Each subject's runs of ``task`` in ``directory``, in recording order (``S001`` -> paths)."""
    runs = RUNS[task]
    found: dict[str, list[tuple[int, Path]]] = {}
    for path in sorted(Path(directory).iterdir()):
        m = _NAME.match(path.name)
        if m and int(m.group(2)) in runs:
            found.setdefault(f"S{m.group(1)}", []).append((int(m.group(2)), path))
    if not found:
        raise FileNotFoundError(f"{directory}: no EEGMMIDB {task} runs (S###R{runs[0]:02d}.edf, ...)")
    return {s: [p for _, p in sorted(runs_)] for s, runs_ in sorted(found.items())}


def chain(paths: list[Path], tmin: float, tmax: float, after_epoch: dict[str, dict[str, Any]]
          | None = None, model: str | Path | None = None) -> dict[str, Any]:
    """The graph, as the dict a YAML file would hold: preprocessing, epochs, then ``after_epoch``
    nodes in order (e.g. ``{"align": {"type": "align"}}``), then the model when given."""
    nodes: dict[str, Any] = {
        "src": {"type": "eeg_file", "path": [str(p) for p in paths], "speed": "max", "chunk": 32},
        "pick": {"type": "pick", "standardize": True, "channels": CHANNELS},
        "band": {"type": "bandpass", "low": BAND[0], "high": BAND[1]},
        "ems": {"type": "standardize", **STANDARDIZE},
        "epoch": {"type": "epoch", "tmin": tmin, "tmax": tmax, "events": EVENTS},
    }
    nodes.update(after_epoch or {})
    if model is not None:
        nodes["clf"] = {"type": "onnx", "model": str(model)}
    names = ["epoch", *(after_epoch or {}), *(["clf"] if model is not None else [])]
    return {"name": "eegmmidb", "nodes": nodes,
            "edges": ["src -> pick -> band -> ems -> epoch", "src.markers -> epoch.markers",
                      *(f"{a} -> {b}" for a, b in zip(names, names[1:]))]}


@dataclass
class Trials:
    """Epochs of one subject: ``x`` (n, channels, samples) float32, ``y`` class indices, ``run``
    the index of the recording (in the paths given) each came from."""

    x: np.ndarray
    y: np.ndarray
    run: np.ndarray


def trials(paths: list[Path], tmin: float = TRIAL[0], tmax: float = TRIAL[1]) -> Trials:
    """Every left/right trial of ``paths`` (played back to back), as the chain cuts them."""
    epochs = collect(chain(paths, tmin, tmax), [("epoch", "out")], "eegmmidb")[("epoch", "out")]
    # which run each trial came from: the runs' first samples, in the joined stream's numbering
    starts = np.cumsum([0] + [_n_times(p) for p in paths[:-1]])
    return Trials(np.stack([f.data for f in epochs]).astype(np.float32),
                  np.array([CLASSES.index(f.meta["label"]) for f in epochs]),
                  np.searchsorted(starts, [f.meta["sample"] for f in epochs], side="right") - 1)


def _n_times(path: Path) -> int:
    return int(mne.io.read_raw(path, preload=False, verbose="error").n_times)


@dataclass
class Scored:
    """One subject's trials as a model decided them through the live chain."""

    y_true: np.ndarray
    y_pred: np.ndarray       # -1: the trial got no decision (e.g. an adaptation warm-up)
    proba: np.ndarray        # (n, classes); NaN where no decision

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.y_pred == self.y_true))


def score(paths: list[Path], model: str | Path,
          after_epoch: dict[str, dict[str, Any]] | None = None,
          start: float = TEST_START_S) -> Scored:
    """Stream ``paths`` once, in order, through the chain ending in the ``onnx`` node, and pair
    each trial's true label with the decision on its window (matched by the window's time).
    A trial the chain does not decide counts as an error."""
    tmin, tmax = start, start + (WINDOW_SAMPLES - 1) / SRATE
    frames = collect(chain(paths, tmin, tmax, after_epoch, model),
                     [("epoch", "out"), ("clf", "out")], "eegmmidb")
    decided = {f.t_device: f for f in frames[("clf", "out")]}
    y_true, y_pred, proba = [], [], []
    for f in frames[("epoch", "out")]:
        y_true.append(CLASSES.index(f.meta["label"]))
        d = decided.get(f.t_device)
        y_pred.append(d.meta["index"] if d is not None else -1)
        proba.append(d.data if d is not None else np.full(len(CLASSES), np.nan, np.float32))
    return Scored(np.array(y_true), np.array(y_pred), np.stack(proba))
