"""Two "hosts" on loopback: each runs its part of one graph; cross-host edges use CURVE."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devices.recorder import read_recording

pytestmark = pytest.mark.slow

GRAPH = """\
hosts:
  a: {address: 127.0.0.1, port: %(port)d}
  b: {address: 127.0.0.1, port: %(port)d}
keys: keys
nodes:
  src: {type: synthetic_eeg, srate: 500, chunk: 5, host: a}
  amp: {type: gain, gain: 2, host: a}
  rec: {type: recorder, path: out.nfr, host: b}
edges:
  - src -> amp -> rec
"""


def make_keys(folder: Path, *hosts: str) -> None:
    subprocess.run([sys.executable, "-m", "pipeline.cli", "keys", str(folder / "keys"), *hosts],
                   check=True, capture_output=True)


def test_cross_host_edge_flows_over_curve_and_only_local_nodes_start(run_graph, tmp_path,
                                                                     free_port) -> None:
    text = GRAPH % {"port": free_port}
    (tmp_path / "a").mkdir()
    make_keys(tmp_path / "a", "a", "b")
    shutil.copytree(tmp_path / "a" / "keys", tmp_path / "b" / "keys")
    b = run_graph(text, "--host", "b", where="b")
    a = run_graph(text, "--host", "a", where="a")
    b.wait_for(lambda: (b.figures().get("rec") or {}).get("frames_in", 0) > 50)
    a.interrupt()
    assert a.finish() == 0, a.stderr
    b.wait_for(lambda: b.events("exit"))  # a's end of stream reached b: its part ends too
    assert b.finish() == 0, b.stderr
    assert {e["group"] for e in a.events("started")} == {"src", "amp"}
    assert {e["group"] for e in b.events("started")} == {"rec"}
    rec = read_recording(tmp_path / "b" / "out.nfr")
    seqs = [f.seq for f in rec.frames]
    assert seqs == list(range(len(seqs))) and len(seqs) > 50
    assert b.figures()["rec"]["decode_errors"] == 0


@pytest.mark.parametrize("impostor", ["b", "a"])
def test_a_peer_without_the_right_key_receives_nothing(run_graph, tmp_path, free_port,
                                                       impostor: str) -> None:
    """An impostor consumer (wrong server key) gets no frame; an impostor producer is refused."""
    text = GRAPH % {"port": free_port}
    for host in ("a", "b"):
        (tmp_path / host).mkdir()
        make_keys(tmp_path / host, "a", "b")
    # the honest host gives its public key to the impostor, who made its own key pair
    honest = "a" if impostor == "b" else "b"
    shutil.copy(tmp_path / honest / "keys" / f"{honest}.key", tmp_path / impostor / "keys")
    b = run_graph(text, "--host", "b", where="b")
    a = run_graph(text, "--host", "a", where="a")
    a.wait_for(lambda: (a.figures().get("amp") or {}).get("frames_in", 0) > 100)
    b.wait_for(lambda: b.events("go"))
    a.interrupt()
    b.interrupt()
    assert a.finish() == 0, a.stderr
    assert b.finish() == 0, b.stderr
    assert b.figures()["rec"]["frames_in"] == 0
    assert a.figures()["amp"]["send_drops"] == a.figures()["amp"]["frames_out"] > 100
    assert read_recording(tmp_path / "b" / "out.nfr").frames == []
