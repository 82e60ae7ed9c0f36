"""Motor-imagery decoding (left vs right fist imagined) on EEGMMIDB, scored through the live nodes.

Why: an accuracy is only worth reporting if it is the one a user gets from the graph, so every
score here comes from streaming the test subject's recordings once, in recording order, through
the same node chain a live graph runs (`models.eegmmidb`: eeg_file -> pick -> bandpass ->
standardize -> epoch -> onnx, run in-process by `pipeline.inline`), with the trained network
exported to ONNX and run by the ``onnx`` node. Training data come out of the same chain.

Protocols:
- cross-subject: ``--train-dir`` only: leave one subject out (train on all others, score the
  left-out one, for every subject); with ``--test-dir``: train once on every subject of the
  train directory, score each subject of the test directory.
- within-subject (``--within``): for each subject, each run held out in turn (train on the other
  runs, score the held-out run's trials); the subject's score covers all its trials.

For scale, in the same run and on the same trials and windows (offline, never deployed): MNE's
CSP + LDA and a tangent-space + logistic-regression pipeline (pyRiemann), trained on the same
subjects' trials (the decision window only: these pipelines take no crops).

JSON: ``{"methods": {NAME: {"mean", "per_subject"}}}`` for the first model (``none``: the plain
model; adaptation methods join here), the same under ``models.MODEL.methods`` for every model,
``references``, ``within_subject`` (with ``--within``), paired Wilcoxon tests of each model
against each reference across subjects (``comparisons``), and the settings. Chance is 0.5; with
~45 trials a subject, one subject's accuracy has a standard error of ~0.075.

Usage (needs the ``[train]`` extra: torch, scikit-learn, pyriemann; ~1 h on 2 cores for both
models in leave-one-subject-out)::

    .venv-train/bin/python benchmarks/mi_decoding.py --train-dir ../shared/data/eeg --json OUT
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import eegmmidb as mi  # noqa: E402

#: Adaptation methods: name -> nodes inserted between ``epoch`` and ``onnx``.
METHODS: dict[str, dict[str, dict[str, Any]]] = {"none": {}}
CLEAR_MARGIN = 0.05


class Data:
    """Each subject's training trials, cut once through the node chain."""

    def __init__(self) -> None:
        self.cache: dict[tuple[Path, ...], mi.Trials] = {}

    def trials(self, paths: list[Path]) -> mi.Trials:
        key = tuple(paths)
        if key not in self.cache:
            self.cache[key] = mi.trials(paths)
        return self.cache[key]

    def pooled(self, sessions: list[list[Path]]) -> tuple[np.ndarray, np.ndarray]:
        parts = [self.trials(p) for p in sessions]
        return np.concatenate([t.x for t in parts]), np.concatenate([t.y for t in parts])


def decision_window(x: np.ndarray) -> np.ndarray:
    """The window a model decides on, out of 4 s training trials."""
    a = round(mi.TEST_START_S * mi.SRATE)
    return x[:, :, a:a + mi.WINDOW_SAMPLES]


def train_network(name: str, x: np.ndarray, y: np.ndarray, path: Path, args: argparse.Namespace,
                  note: str) -> Path:
    from models.nets import export, fit
    net = fit(name, x, y, mi.WINDOW_SAMPLES, seed=args.seed, epochs=args.epochs)
    export(net, path, mi.CHANNELS, mi.SRATE, mi.WINDOW_SAMPLES, mi.CLASSES, note)
    return path


def references(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """CSP + LDA and tangent space + logistic regression, fitted on decision windows."""
    import mne
    from mne.decoding import CSP
    from pyriemann.estimation import Covariances
    from pyriemann.tangentspace import TangentSpace
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    w = decision_window(x).astype(np.float64)
    mne.set_log_level("error")
    return {
        "csp_lda": make_pipeline(CSP(n_components=6, log=True), LinearDiscriminantAnalysis())
        .fit(w, y),
        "ts_lr": make_pipeline(Covariances("oas"), TangentSpace(metric="riemann"),
                               LogisticRegression(C=1.0, max_iter=1000)).fit(w, y),
    }


def summary(per_subject: dict[str, float]) -> dict[str, Any]:
    values = np.array(list(per_subject.values()))
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1
            else 0.0, "per_subject": per_subject}


def cross_subject(args: argparse.Namespace, data: Data, tmp: Path) -> dict[str, Any]:
    train = mi.recordings(args.train_dir, args.task)
    test = mi.recordings(args.test_dir, args.task) if args.test_dir else train
    folds = ([(s, [t for t in train if t != s]) for s in test] if not args.test_dir
             else [(s, list(train)) for s in test])
    scores: dict[str, dict[str, dict[str, float]]] = {m: {k: {} for k in METHODS}
                                                       for m in args.models}
    refs: dict[str, dict[str, float]] = {"csp_lda": {}, "ts_lr": {}}
    trained: dict[tuple[str, ...], dict[str, Any]] = {}
    for subject, sources in folds:
        t0 = time.monotonic()
        key = tuple(sources)
        if key not in trained:  # with --test-dir every fold trains on the same subjects
            x, y = data.pooled([train[s] for s in sources])
            models = {m: train_network(m, x, y, tmp / f"{m}-{len(trained)}.onnx", args,
                                       f"EEGMMIDB left/right imagery, trained on {len(sources)} "
                                       f"subjects ({', '.join(sources)})")
                      for m in args.models}
            trained[key] = {"models": models, "refs": references(x, y)}
        fold = trained[key]
        for m, path in fold["models"].items():
            for method, nodes in METHODS.items():
                scores[m][method][subject] = mi.score(test[subject], path, nodes).accuracy
        held = data.trials(test[subject])
        for r, pipe in fold["refs"].items():
            refs[r][subject] = float(np.mean(pipe.predict(decision_window(held.x)
                                                          .astype(np.float64)) == held.y))
        print(f"{subject}: " + "  ".join(f"{m} {scores[m]['none'][subject]:.3f}"
                                          for m in args.models)
              + "  " + "  ".join(f"{r} {refs[r][subject]:.3f}" for r in refs)
              + f"  ({time.monotonic() - t0:.0f} s)", flush=True)
    out = {"protocol": "train/test" if args.test_dir else "leave-one-subject-out",
           "models": {m: {"methods": {k: summary(v) for k, v in scores[m].items()}}
                      for m in args.models},
           "references": {r: summary(v) for r, v in refs.items()}}
    out["methods"] = out["models"][args.models[0]]["methods"]
    return out


def within_subject(args: argparse.Namespace, data: Data, tmp: Path) -> dict[str, Any]:
    """Each run held out in turn; every trial of the subject scored once."""
    out: dict[str, dict[str, float]] = {m: {} for m in args.models}
    for subject, paths in mi.recordings(args.train_dir, args.task).items():
        trials = data.trials(paths)
        for m in args.models:
            hits = np.zeros(len(trials.y), bool)
            for r in range(len(paths)):
                keep = trials.run != r
                path = train_network(m, trials.x[keep], trials.y[keep], tmp / f"{m}-w.onnx", args,
                                     f"EEGMMIDB left/right imagery, {subject} without run {r}")
                scored = mi.score(paths, path)
                hits[~keep] = (scored.y_pred == scored.y_true)[~keep]
            out[m][subject] = float(hits.mean())
        print(f"{subject} within: " + "  ".join(f"{m} {out[m][subject]:.3f}" for m in out),
              flush=True)
    return {m: summary(v) for m, v in out.items()}


def comparisons(results: dict[str, Any]) -> dict[str, Any]:
    """Each model (plain) against each reference: mean difference and a paired Wilcoxon test."""
    from scipy.stats import wilcoxon
    out = {}
    for m, body in results["models"].items():
        a = body["methods"]["none"]["per_subject"]
        for r, ref in results["references"].items():
            b = ref["per_subject"]
            diff = np.array([a[s] - b[s] for s in a])
            p = float(wilcoxon(diff).pvalue) if np.any(diff) and len(diff) > 1 else 1.0
            out[f"{m}_vs_{r}"] = {"mean_difference": float(diff.mean()), "wilcoxon_p": p,
                                  "clearly_better": bool(diff.mean() >= CLEAR_MARGIN and p < 0.05)}
    return out


def report(results: dict[str, Any]) -> None:
    cols = [(f"{m}/{k}", v["per_subject"]) for m, b in results["models"].items()
            for k, v in b["methods"].items()]
    cols += [(r, v["per_subject"]) for r, v in results["references"].items()]
    cols += [(f"{m}/within", v["per_subject"]) for m, v in results.get("within_subject", {}).items()]
    print(f"\n{results['protocol']}: accuracy per subject (chance 0.5)")
    width = max(len(c) for c, _ in cols) + 2
    print("subject  " + "".join(f"{c:>{width}}" for c, _ in cols))
    for s in cols[0][1]:
        print(f"{s:<9}" + "".join(f"{v.get(s, float('nan')):>{width}.3f}" for _, v in cols))
    print("mean     " + "".join(f"{np.mean(list(v.values())):>{width}.3f}" for _, v in cols))
    for name, c in results["comparisons"].items():
        print(f"  {name}: {c['mean_difference']:+.3f}, Wilcoxon p = {c['wilcoxon_p']:.3g}"
              f"{'  (clearly better)' if c['clearly_better'] else ''}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-dir", required=True, help="EEGMMIDB files (S###R##.edf) to train on")
    ap.add_argument("--test-dir", help="score these subjects instead of leaving one out")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON to this file")
    ap.add_argument("--models", default="eegnet,conformer", help="comma-separated: eegnet, conformer")
    ap.add_argument("--task", choices=sorted(mi.RUNS), default="imagined",
                    help="imagined (runs 4, 8, 12) or executed (runs 3, 7, 11) fist movements")
    ap.add_argument("--within", action="store_true", help="also score within-subject (run-wise)")
    ap.add_argument("--epochs", type=int, default=60, help="training passes over the trials")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    import torch
    torch.set_num_threads(2)
    t0 = time.monotonic()
    data = Data()
    with tempfile.TemporaryDirectory() as tmp:
        results = cross_subject(args, data, Path(tmp))
        if args.within:
            results["within_subject"] = within_subject(args, data, Path(tmp))
    results["comparisons"] = comparisons(results)
    results["settings"] = {"channels": mi.CHANNELS, "band_hz": mi.BAND, "srate": mi.SRATE,
                           "window_s": mi.WINDOW_S, "test_window_start_s": mi.TEST_START_S,
                           "epochs": args.epochs, "seed": args.seed,
                           "task": args.task, "train_dir": args.train_dir,
                           "test_dir": args.test_dir}
    results["seconds"] = round(time.monotonic() - t0, 1)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
