"""The benchmarks' graphs stay valid as nodes evolve (a renamed parameter must fail here, not in a
benchmark run). Nothing is timed: benchmarks report figures, tests never judge them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from pipeline import config, graph

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # as when run

import eeg_latency  # noqa: E402  (needs the path above, like its own `from hop_latency import`)


@pytest.mark.parametrize("fused, processes", [(True, 1), (False, 5)])
def test_eeg_latency_graph_builds_with_the_placement_it_claims(tmp_path: Path, fused: bool,
                                                               processes: int) -> None:
    spec = eeg_latency.front_end_graph("eeg", tmp_path / "probe.npy", fused=fused)
    g = graph.build(config.loads(yaml.safe_dump(spec, sort_keys=False), "eeg.yaml"))
    assert g.order == ["src", "band", "notch", "win", "sink"]
    assert len(set(g.group_of.values())) == processes
    window = g.outputs["win"]["out"]
    assert window.shape == (64, 1000) and window.extra["step_s"] == 0.062  # 62.5 ms -> 62 samples


def test_event_throughput_graph_builds_in_two_processes(tmp_path: Path) -> None:
    import event_throughput
    from devices.event_npy import NpyEventWriter

    NpyEventWriter(tmp_path / "events.npy", (1280, 720, 2), "file").close()  # setup opens it
    spec = event_throughput.event_graph("ev", tmp_path / "events.npy", tmp_path / "probe.npy",
                                        "max", False, "lossless")
    g = graph.build(config.loads(yaml.safe_dump(spec, sort_keys=False), "ev.yaml"))
    assert g.order == ["src", "den", "vox", "probe"]
    assert len(set(g.group_of.values())) == 2
    assert g.outputs["vox"]["out"].shape == (5, 720, 1280)


def test_inference_snn_section_runs_its_network(tmp_path: Path) -> None:
    """The benchmark's network is a valid NIR graph the snn node runs (rates are not judged)."""
    import argparse

    import inference

    out = inference.snn_section(argparse.Namespace(steps=20, rounds=1), tmp_path)
    assert out["snn_steps_per_s"] > 0 and out["snn"]["node_steps_per_s"] > 0
    assert out["snn"]["steps"] == 20


def test_inference_hd_snn_section_runs_its_detector(tmp_path: Path) -> None:
    import argparse

    import inference

    out = inference.hd_snn_section(argparse.Namespace(hd_events=2000, rounds=1), tmp_path)
    assert out["hd_snn_mev_s"] > 0 and out["hd_snn"]["synops_per_event"] > 0
