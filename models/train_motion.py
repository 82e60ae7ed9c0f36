"""Train the shipped event-camera motion classifier (8 directions) on simulated saccades.

Why: ``snn`` needs a real trained network to be more than a format reader, and a user needs a
motion model for event cameras without collecting data. Frames come out of the live chain
(`models.motion`); training is `models.snn_nets.fit`; the same weights are written as NIR (what
the ``snn`` node runs) and as a one-step ONNX model with explicit state.

Held out: new seeds (other paths, noise and sensor mismatch) on the training photographs, and two
photographs never trained on (`models.motion.HELD_OUT_IMAGES`), both streamed through
synthetic_events -> downsample -> event_frames -> snn; scored per frame once a direction has
lasted `models.motion.SETTLE_STEPS` steps.

Writes into ``--out`` (default: this folder): ``motion_snn.nir``, ``motion_snn_step.onnx``,
``motion_snn.json`` (settings, versions, held-out accuracy), and adds both files to
``SHA256SUMS``.

Usage (needs ``[train]``)::

    .venv-train/bin/python models/train_motion.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import motion  # noqa: E402
from models.train_mi import update_checksums  # noqa: E402

TRAIN_SEEDS = range(100, 103)
TEST_SEED = 900
SECONDS = 4.0
SEQUENCE, STRIDE = 20, 5


def held_out(model: Path) -> dict[str, float]:
    """Per-frame accuracy on recordings never trained on, streamed through the chain."""
    cases = [(img, TEST_SEED) for img in motion.TRAIN_IMAGES[:2] + motion.HELD_OUT_IMAGES]
    return {f"{img}/seed{seed}": motion.accuracy(motion.record(img, seed, SECONDS, model))
            for img, seed in cases}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import nir
    import torch

    from models.snn_nets import export_step, fit, to_nir
    torch.set_num_threads(2)
    out = Path(args.out)
    t0 = time.monotonic()
    parts = [motion.sequences(motion.record(img, seed, SECONDS), SEQUENCE, STRIDE)
             for img in motion.TRAIN_IMAGES for seed in TRAIN_SEEDS]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    net = fit(x, y, motion.DT, seed=args.seed, epochs=args.epochs)
    nir_path, onnx_path = out / "motion_snn.nir", out / "motion_snn_step.onnx"
    with tempfile.TemporaryDirectory() as tmp:  # nir.write wants a path; write it whole, once
        nir.write(Path(tmp) / "m.nir", to_nir(net))
        nir_path.write_bytes((Path(tmp) / "m.nir").read_bytes())
    export_step(net, onnx_path, "neuroflow motion SNN, one 5 ms step: x (1, 2, 32, 32) ON/OFF "
                                "counts and membranes v1, v2, v3 in; read-out membrane (8 "
                                "directions, dir000..dir315) and the new membranes out")
    accuracy = held_out(nir_path)
    record = {"task": "motion direction, 8 classes, synthetic_events photographs on saccades",
              "classes": motion.CLASSES, "sensor": motion.SENSOR, "input": [2, motion.SIZE,
                                                                            motion.SIZE],
              "dt_s": motion.DT, "velocity_px_s": motion.VELOCITY, "segment_s": motion.SEGMENT_S,
              "train_images": list(motion.TRAIN_IMAGES), "train_seeds": list(TRAIN_SEEDS),
              "seconds_each": SECONDS, "sequences": int(len(y)), "epochs": args.epochs,
              "seed": args.seed, "torch": torch.__version__,
              "parameters": int(sum(p.numel() for p in net.parameters())),
              "train_seconds": round(time.monotonic() - t0, 1),
              "held_out_accuracy": accuracy, "chance": 1 / len(motion.CLASSES)}
    (out / "motion_snn.json").write_text(json.dumps(record, indent=2) + "\n")
    update_checksums(out, [nir_path, onnx_path])
    print(json.dumps(accuracy, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
