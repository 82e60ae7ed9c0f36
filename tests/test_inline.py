"""pipeline.inline runs a graph in the calling process exactly as the runtime runs it in workers:
the same frames, sequence numbers, times and metadata on every output, and the same end-of-stream
flushes. Offline scores (benchmarks/mi_decoding.py) rest on that equality."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import edf_files
from devices.recorder import read_recording
from pipeline.config import loads
from pipeline.graph import build
from pipeline.inline import InlineRun


def graph_text(path: Path, folder: Path) -> str:
    """A replay cut into marker-locked epochs and sliding windows, every branch recorded."""
    return f"""\
        name: inline
        nodes:
          eeg: {{type: eeg_file, path: "{path}", speed: max, chunk: 23}}
          pick: {{type: pick, channels: ["C3..", "Cz..", "C4.."]}}
          band: {{type: bandpass, low: 8, high: 30}}
          epoch: {{type: epoch, tmin: -0.5, tmax: 2.0, events: {{T1: left, T2: right}}}}
          win: {{type: window, length: 1.0, step: 0.25}}
          epochs: {{type: recorder, path: "{folder}/epochs.nfr"}}
          windows: {{type: recorder, path: "{folder}/windows.nfr"}}
          marks: {{type: recorder, path: "{folder}/marks.nfr"}}
        edges:
          - {{chain: eeg -> pick -> band -> epoch -> epochs, policy: lossless}}
          - {{chain: eeg.markers -> epoch.markers, policy: lossless}}
          - {{chain: band -> win -> windows, policy: lossless}}
          - {{chain: eeg.markers -> marks, policy: lossless}}
        groups:
          a: [eeg]
          b: [pick, band, win]
          c: [epoch, epochs, windows, marks]
        """


def test_a_graph_run_inline_records_what_its_worker_processes_record(run_graph, tmp_path: Path) -> None:
    path = edf_files()[0]
    live = run_graph(graph_text(path, tmp_path / "live"), where="live")
    assert live.finish() == 0, live.stderr
    (tmp_path / "inline").mkdir()
    seen = []
    graph = build(loads(textwrap.dedent(graph_text(path, tmp_path / "inline"))))
    InlineRun(graph, {("epoch", "out"): seen.append}).run()
    for name in ("epochs", "windows", "marks"):
        a = read_recording(tmp_path / "live" / f"{name}.nfr").frames
        b = read_recording(tmp_path / "inline" / f"{name}.nfr").frames
        assert len(a) == len(b) > 0, name
        for fa, fb in zip(a, b):
            assert (fa.seq, fa.t_device, fa.meta) == (fb.seq, fb.t_device, fb.meta), name
            assert fa.data.tobytes() == fb.data.tobytes(), name
    assert [f.seq for f in seen] == list(range(len(seen))) and len(seen) == 30 - 15  # T0 ignored
    assert graph.nodes["epoch"].figures()["epochs"] == len(seen)


def test_a_tap_must_name_an_output_port() -> None:
    graph = build(loads(yaml.safe_dump({
        "nodes": {"eeg": {"type": "synthetic_eeg", "speed": "max", "max_frames": 3},
                  "sink": {"type": "null"}},
        "edges": ["eeg -> sink"]})))
    with pytest.raises(KeyError, match="eeg.nope"):
        InlineRun(graph, {("eeg", "nope"): print})
    got = []
    InlineRun(graph, {("eeg", "out"): got.append}).run()
    assert [f.seq for f in got] == [0, 1, 2]
