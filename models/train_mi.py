"""Train the shipped motor-imagery decoders (left vs right fist imagined) on EEGMMIDB.

Why these files exist: ``configs/demo.yaml`` and any user graph need a working decoder without
torch or a training run. This script makes them reproducibly: the same recordings, the same node
chain as the live graph (`models.eegmmidb`), fixed seeds, and it records what it did.

Subjects S017-S020 are never trained on (chosen before any result was seen): the tests and the
EEG replay demo decode them, so what they show is held-out accuracy, not recall of training data.

Writes, into ``--out`` (default: this folder):
- ``mi_eegnet.onnx``, ``mi_conformer.onnx``: logits for (left, right) from 4 s windows of the 21
  sensorimotor channels at 160 Hz, standardized (see `models.eegmmidb`), with neuroflow metadata;
- ``mi_models.json``: training subjects, settings, versions, and the held-out subjects' accuracy
  scored through the live chain;
- ``SHA256SUMS``: checksums of the model files (``sha256sum -c SHA256SUMS``).

Usage (needs ``[train]``)::

    .venv-train/bin/python models/train_mi.py --data ../shared/data/eeg
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import eegmmidb as mi  # noqa: E402

HELD_OUT = ("S017", "S018", "S019", "S020")
NETWORKS = ("eegnet", "conformer")
EPOCHS = 60
SEED = 0


def update_checksums(folder: Path, files: list[Path]) -> None:
    """Put ``files``' SHA-256 into ``folder/SHA256SUMS`` (``sha256sum -c`` format), keeping the
    other models' lines."""
    sums = folder / "SHA256SUMS"
    names = {f.name for f in files}
    kept = [line for line in sums.read_text().splitlines()
            if line.split("  ")[-1] not in names] if sums.exists() else []
    lines = kept + [f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}" for f in files]
    sums.write_text("".join(f"{line}\n" for line in sorted(lines, key=lambda x: x.split("  ")[-1])))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"
                                          / "eeg"), help="folder of EEGMMIDB S###R##.edf files")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent))
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    import onnxruntime
    import torch

    from models.nets import export, fit
    torch.set_num_threads(2)
    out = Path(args.out)
    sessions = mi.recordings(args.data)
    train = [s for s in sessions if s not in HELD_OUT]
    held = [s for s in sessions if s in HELD_OUT]
    parts = [mi.trials(sessions[s]) for s in train]
    x, y = np.concatenate([t.x for t in parts]), np.concatenate([t.y for t in parts])
    record = {"task": "EEGMMIDB imagined left vs right fist (runs 4, 8, 12; T1 left, T2 right)",
              "train_subjects": train, "held_out_subjects": held, "trials": int(len(y)),
              "channels": mi.CHANNELS, "srate": mi.SRATE, "band_hz": list(mi.BAND),
              "standardize": mi.STANDARDIZE, "window_samples": mi.WINDOW_SAMPLES,
              "epochs": args.epochs, "seed": args.seed, "torch": torch.__version__,
              "onnxruntime": onnxruntime.__version__, "models": {}}
    for name in NETWORKS:
        t0 = time.monotonic()
        net = fit(name, x, y, mi.WINDOW_SAMPLES, seed=args.seed, epochs=args.epochs)
        path = out / f"mi_{name}.onnx"
        export(net, path, mi.CHANNELS, mi.SRATE, mi.WINDOW_SAMPLES, mi.CLASSES,
               f"neuroflow {name}: EEGMMIDB left/right fist imagery, trained on {', '.join(train)}"
               f"; input: the 21 sensorimotor channels, 4-40 Hz IIR band-pass, exponential moving "
               f"standardization (factor_new 1e-3), 4 s windows at 160 Hz (models/README.md)")
        accuracy = {s: mi.score(sessions[s], path).accuracy for s in held}
        record["models"][path.name] = {
            "network": name, "parameters": int(sum(p.numel() for p in net.parameters())),
            "train_seconds": round(time.monotonic() - t0, 1), "held_out_accuracy": accuracy,
            "held_out_mean": float(np.mean(list(accuracy.values()))) if accuracy else None}
        print(f"{path.name}: held-out accuracy {accuracy}", flush=True)
    (out / "mi_models.json").write_text(json.dumps(record, indent=2) + "\n")
    update_checksums(out, [out / f for f in record["models"]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
