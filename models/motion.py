"""Motion direction from events, through neuroflow's own nodes: the data, the chain, the scores.

Why one module: the training script (`models/train_motion.py`) and the tests must see what a live
graph sees, so frames and labels come from the node chain run in-process (`pipeline.inline`):

    synthetic_events (a photograph along a saccade-like path, 8 directions) -> downsample (x2)
        -> event_frames (5 ms, ON/OFF counts) [-> snn]

The task is Grimaldi & Perrinet's (Biol. Cybern. 2023, section 2.1): which way is the image
moving? The sensor is 64 x 64 px, seen at 32 x 32 after the downsample, one SNN time step per
5 ms frame. Each frame is labelled by the class of the segment its window starts in (the
``labels`` markers, `devices.synthetic_events`). Training and held-out data differ by seed
(path, sensor noise, threshold mismatch) and, for the held-out images, by the photograph.

This module needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.inline import collect

SENSOR = 64
FACTOR = 2
SIZE = SENSOR // FACTOR
STEP_US = 5_000
DT = STEP_US * 1e-6
N_DIRECTIONS = 8
VELOCITY = 160.0      # px/s on the 64 px sensor: 0.8 px (0.4 input px) per step
SEGMENT_S = 0.3
CLASSES = [f"dir{k * 360 // N_DIRECTIONS:03d}" for k in range(N_DIRECTIONS)]
TRAIN_IMAGES = ("astronaut", "brick", "camera", "coffee", "chelsea", "coins", "grass", "rocket")
HELD_OUT_IMAGES = ("gravel", "moon")
#: Steps after a change of direction during which a frame is not scored (the membranes still
#: hold the previous motion: the read-out's time constant).
SETTLE_STEPS = 10


def chain(image: str, seed: int, duration_s: float, model: str | Path | None = None
          ) -> dict[str, Any]:
    """The graph as the dict a YAML file would hold."""
    nodes: dict[str, Any] = {
        "cam": {"type": "synthetic_events", "width": SENSOR, "height": SENSOR, "pattern": image,
                "motion": "saccades", "n_directions": N_DIRECTIONS, "velocity": VELOCITY,
                "segment_s": SEGMENT_S, "seed": seed, "speed": "max", "duration_s": duration_s,
                "batch_us": 20_000},
        "down": {"type": "downsample", "factor": FACTOR},
        "frames": {"type": "event_frames", "window_us": STEP_US},
    }
    edges = ["cam -> down -> frames"]
    if model is not None:
        nodes["model"] = {"type": "snn", "model": str(model), "class_names": CLASSES,
                          "readout": "softmax"}
        edges.append("frames -> model")
    return {"name": "motion", "nodes": nodes, "edges": edges}


@dataclass
class Recording:
    """One simulated recording: ``x`` (steps, 2, SIZE, SIZE) counts, ``y`` the class per step,
    ``settled`` whether the step is scored, ``pred`` (with a model) the class per step (-1: the
    model said nothing for that step)."""

    x: np.ndarray
    y: np.ndarray
    settled: np.ndarray
    pred: np.ndarray | None = None


def record(image: str, seed: int, duration_s: float, model: str | Path | None = None) -> Recording:
    taps = [("frames", "out"), ("cam", "labels")] + ([("model", "out")] if model else [])
    seen = collect(chain(image, seed, duration_s, model), taps, "motion")
    frames = seen[("frames", "out")]
    changes = np.array([f.t_device for f in seen[("cam", "labels")]])
    classes = np.array([CLASSES.index(str(f.data[0])) for f in seen[("cam", "labels")]])
    t = np.array([f.t_device for f in frames])
    segment = np.searchsorted(changes, t + 1e-9, side="right") - 1
    since = np.round((t - changes[segment]) / DT)
    pred = None
    if model is not None:  # each decision placed at the step its window starts
        pred = np.full(len(frames), -1)
        for f in seen[("model", "out")]:
            pred[int(round(f.t_device / DT))] = f.meta["index"]
    return Recording(np.stack([f.data for f in frames]), classes[segment],
                     since >= SETTLE_STEPS, pred)


def sequences(rec: Recording, length: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Training sequences (n, length, 2, SIZE, SIZE) that lie inside one segment, and their class."""
    xs, ys = [], []
    for a in range(0, len(rec.y) - length + 1, stride):
        if np.all(rec.y[a:a + length] == rec.y[a]):
            xs.append(rec.x[a:a + length])
            ys.append(rec.y[a])
    return np.stack(xs), np.array(ys)


def accuracy(rec: Recording) -> float:
    """Per-frame accuracy of the streamed predictions on settled frames."""
    assert rec.pred is not None
    return float(np.mean(rec.pred[rec.settled] == rec.y[rec.settled]))
