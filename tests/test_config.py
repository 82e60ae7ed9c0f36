"""Graph files: every user error names the file, the line, the node and the field."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline import FrameKind, config, graph
from pipeline.config import ConfigError


def build(text: str, sets: list[str] | None = None) -> graph.Graph:
    return graph.build(config.loads(textwrap.dedent(text), "g.yaml", sets))


def error_of(text: str, sets: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        build(text, sets)
    return str(e.value)


GOOD = """\
name: t
nodes:
  eeg: {type: synthetic_eeg, channels: 4, srate: 100}
  amp: {type: gain, gain: 2}
  out: {type: "null"}
edges:
  - eeg -> amp -> out
"""


def test_a_good_graph_propagates_stream_infos() -> None:
    g = build(GOOD)
    assert g.order == ["eeg", "amp", "out"]
    info = g.outputs["amp"]["out"]
    assert (info.kind, info.n_channels, info.srate) == (FrameKind.SAMPLES, 4, 100.0)
    assert info.channel_names == ("EEG001", "EEG002", "EEG003", "EEG004")
    assert g.inputs["out"]["in"] is info
    assert [e.label for e in g.edges] == ["eeg.out -> amp.in", "amp.out -> out.in"]


@pytest.mark.parametrize("text, expected", [
    # unknown parameter: line of the key, node, field, what is allowed
    (GOOD.replace("gain: 2}", "gain: 2, gian: 3}"),
     "g.yaml:4: node 'amp' (gain): unknown field 'gian'; allowed: gain"),
    # wrong type
    (GOOD.replace("channels: 4", "channels: four"),
     "g.yaml:3: node 'eeg' (synthetic_eeg): field 'channels': Input should be a valid integer"),
    # out of range
    (GOOD.replace("srate: 100", "srate: -5"),
     "g.yaml:3: node 'eeg' (synthetic_eeg): field 'srate': Input should be greater than 0"),
    # unknown node type, with the registered ones listed
    (GOOD.replace("type: gain", "type: gainz"),
     "g.yaml:4: node 'amp': unknown node type 'gainz'; registered types: "),
    # plugin path that does not import
    (GOOD.replace("type: gain", "type: nosuchpkg.mod:Thing"),
     "g.yaml:4: node 'amp': cannot import node type 'nosuchpkg.mod:Thing'"),
    # edge to a missing port
    (GOOD.replace("eeg -> amp -> out", "eeg -> amp.sideways"),
     "g.yaml:7: edge eeg.out -> amp.sideways: amp (gain) has no input 'sideways'; inputs: in"),
    # edge to a missing node
    (GOOD.replace("amp -> out", "amp -> outt"), "g.yaml:7: edge amp -> outt: no node 'outt'"),
    # an input left unconnected
    (GOOD.replace("eeg -> amp -> out", "eeg -> amp"),
     "g.yaml:5: node 'out' (null): input 'in' is not connected"),
    # a missing type
    (GOOD.replace('{type: "null"}', "{}"), "g.yaml:5: node 'out': missing field 'type'"),
    # an unknown top-level key
    (GOOD + "edgez: []\n", "g.yaml:8: unknown top-level key 'edgez'"),
    # duplicate keys are an error, not a silent override
    (GOOD.replace("  out:", "  amp: {type: gain}\n  out:"), "g.yaml:5: duplicate key 'amp' (first on line 4)"),
    # YAML syntax
    (GOOD.replace("gain: 2}", "gain: 2"), "g.yaml:5: YAML syntax error"),
    # edge options
    (GOOD.replace("- eeg -> amp -> out", "- {chain: eeg -> amp -> out, policy: fast}"),
     "g.yaml:7: edge policy 'fast' is not one of realtime, lossless"),
    (GOOD.replace("- eeg -> amp -> out", "- {chain: eeg -> amp -> out, queue: 0}"),
     "g.yaml:7: edge queue must be an integer >= 1"),
    # groups
    (GOOD + "groups:\n  g1: [eeg, nope]\n", "g.yaml:9: group 'g1': no node 'nope'"),
    (GOOD + "groups:\n  g1: [eeg]\n  g2: [eeg, amp]\n", "g.yaml:10: node 'eeg' is in groups 'g1' and 'g2'"),
    # hosts: a host must be declared; edges between hosts need keys
    (GOOD.replace("type: gain, gain: 2", "type: gain, host: elsewhere"),
     "g.yaml:4: host 'elsewhere' of 'amp' is not under 'hosts:' (none: one host, local)"),
    ("hosts:\n  a: {}\n  b: {}\n" + GOOD.replace("type: gain, gain: 2", "type: gain, host: b"),
     "g.yaml:1: edge eeg.out -> amp.in crosses hosts: give 'keys:'"),
    (GOOD + "groups:\n  g1: [[eeg]]\n", "g.yaml:9: group 'g1': no node ['eeg']"),
    (GOOD.replace("name: t", "? [a, b]\n: t"), "g.yaml:1: a key must be a plain name, got LineList"),
    (GOOD.replace("name: t", "name: t\x07"), "g.yaml: YAML error"),
    # supervisor settings
    (GOOD + "supervisor: {max_restarts: -1}\n",
     "g.yaml:8: supervisor: field 'max_restarts': Input should be greater than or equal to 0"),
])
def test_errors_name_file_line_node_and_field(text: str, expected: str) -> None:
    assert error_of(text).startswith(expected), error_of(text)


def test_a_cycle_is_reported_with_its_path_and_line() -> None:
    text = """\
    nodes:
      src: {type: synthetic_eeg}
      a: {type: plugins:Merge}
      b: {type: gain}
      c: {type: gain}
    edges:
      - src -> a.a
      - a -> b -> c
      - c -> a.b
    """
    msg = error_of(text)
    assert msg.startswith("g.yaml:9: cycle ") and "a -> b -> c -> a" in msg, msg


def test_incompatible_stream_kinds_name_both_ends_of_the_edge() -> None:
    msg = error_of(GOOD.replace('type: "null"', "type: plugins:EventsOnly"))
    assert msg == ("g.yaml:7: edge amp.out -> out.in: out (plugins:EventsOnly) input 'in' accepts "
                   "events, but amp.out produces samples 4 ch @ 100 Hz float32")


def test_a_setup_mismatch_names_the_node_and_the_upstream_stream() -> None:
    msg = error_of(GOOD.replace("type: gain, gain: 2", "type: plugins:NeedsEightChannels"))
    assert msg == ("g.yaml:4: node 'amp' (plugins:NeedsEightChannels) cannot take eeg.out -> amp.in "
                   "(samples 4 ch @ 100 Hz float32): needs 8 channels, got 4")


def test_multi_port_nodes_need_named_ports() -> None:
    text = GOOD.replace("type: gain, gain: 2", "type: plugins:Merge")
    assert "node 'amp' has input ports a, b; name one as amp.a" in error_of(text)


def test_an_input_cannot_be_fed_twice() -> None:
    text = GOOD + "  - eeg -> out\n"
    assert error_of(text).startswith("g.yaml:8: edge eeg.out -> out.in: input out.in is already "
                                     "fed by amp.out -> out.in (line 7)")


def test_set_replaces_a_whole_node_keeping_its_name_and_edges() -> None:
    g = build(GOOD, ["eeg={type: synthetic_eeg, mode: realistic, channels: 3, names: [C3, Cz, C4]}"])
    assert g.outputs["eeg"]["out"].channel_names == ("C3", "Cz", "C4")
    assert g.nodes["eeg"].params.srate == 250.0  # the old node's params are gone with it
    assert [(e.src, e.dst) for e in g.edges] == [("eeg", "amp"), ("amp", "out")]
    assert error_of(GOOD, ["eeg={type: gain, gain: 1}"]).startswith("g.yaml:")


def test_set_overrides_params_with_yaml_values() -> None:
    g = build(GOOD, ["eeg.channels=16", "amp.gain=0.5"])
    assert g.outputs["eeg"]["out"].n_channels == 16
    assert g.nodes["amp"].params.gain == 0.5
    assert "--set nope.x=1: no node 'nope'" in error_of(GOOD, ["nope.x=1"])
    assert "expected node.param=value" in error_of(GOOD, ["eeg.=3"])
    assert "a whole node is a mapping with a 'type'" in error_of(GOOD, ["eeg=3"])
    assert error_of(GOOD, ["eeg.channels=many"]).startswith(
        "g.yaml:3: node 'eeg' (synthetic_eeg): field 'channels'")


def test_ungrouped_nodes_get_their_own_process_and_groups_fuse() -> None:
    g = build(GOOD + "groups:\n  dsp: [amp, out]\n")
    assert g.spec.groups == {"dsp": ["amp", "out"], "eeg": ["eeg"]}
    assert g.group_of == {"amp": "dsp", "out": "dsp", "eeg": "eeg"}


def test_validate_cli_exits_non_zero_with_the_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("channels: 4", "channels: four"))
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "validate", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert f"{bad}:3: node 'eeg' (synthetic_eeg): field 'channels'" in r.stderr
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "validate", str(good)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "amp.out: samples 4 ch @ 100 Hz float32" in r.stdout


def test_a_graph_names_its_lsl_configuration_and_the_cli_applies_it(tmp_path: Path) -> None:
    cfg = tmp_path / "site" / "lsl.cfg"
    cfg.parent.mkdir()
    cfg.write_text((Path(__file__).resolve().parents[1] / "configs" / "lsl_api.cfg").read_text())
    path = tmp_path / "g.yaml"
    path.write_text("name: l\nlsl_config: site/lsl.cfg\nnodes:\n"
                    "  inlet: {type: lsl_inlet, name: nobody-here, timeout: 0.2}\n"
                    "  out: {type: \"null\"}\nedges:\n  - inlet -> out\n")
    assert config.load(path).lsl_config == tmp_path / "site" / "lsl.cfg"  # next to the graph
    env = {k: v for k, v in os.environ.items() if k != "LSLAPICFG"}
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "validate", str(path)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2
    assert f"Configuration loaded from {cfg}" in r.stderr          # liblsl's own log line
    assert f"{path}:4: node 'inlet' (lsl_inlet): field 'name': no LSL stream matches " \
           f"name='nobody-here' within 0.2 s" in r.stderr
    path.write_text(path.read_text().replace("site/lsl.cfg", "nowhere.cfg"))
    with pytest.raises(ConfigError, match=r"g.yaml:2: lsl_config: .*nowhere.cfg: no such file"):
        config.load(path)


def test_shipped_configs_validate() -> None:
    root = Path(__file__).resolve().parents[1] / "configs"
    for path in sorted(root.glob("*.yaml")):
        graph.build(config.load(path))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True,
                          text=True)


def test_nodes_cli_lists_every_type_with_params_defaults_and_docs() -> None:
    r = cli("nodes")
    assert r.returncode == 0, r.stderr
    for name in ("synthetic_eeg", "gain", "console", "null", "recorder"):
        assert f"\n{name}  [in:" in "\n" + r.stdout
    assert "    srate: float, default 250.0 — sampling rate (Hz)" in r.stdout
    assert "    path: str, required — output file: .nfr" in r.stdout
    assert "\nrecorder  [in: in, markers?; out: -]" in r.stdout  # '?': an optional input
    one = cli("nodes", "gain")
    assert one.stdout.startswith("gain  [in: in; out: out]  Scale samples or tensors")


def test_graph_cli_shows_groups_endpoints_and_stream_infos(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(GOOD + "groups:\n  dsp: [amp, out]\n")
    r = cli("graph", str(path))
    assert r.returncode == 0, r.stderr
    assert "  dsp on local: amp, out" in r.stdout
    assert "    out out: samples 4 ch @ 100 Hz float32" in r.stdout
    assert "  eeg.out -> amp.in  [realtime, queue 64, ipc] ipc://" in r.stdout
    assert "  amp.out -> out.in  [realtime, queue 64, local] in-process call" in r.stdout
    plan = __import__("json").loads(cli("graph", str(path), "--json").stdout)
    assert plan["nodes"]["amp"]["inputs"]["in"]["channel_names"][0] == "EEG001"


def test_keys_cli_writes_a_curve_pair_per_host(tmp_path: Path) -> None:
    r = cli("keys", str(tmp_path / "k"), "a", "b")
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in (tmp_path / "k").iterdir())
    assert files == ["a.key", "a.key_secret", "b.key", "b.key_secret"]
    assert (tmp_path / "k" / "a.key_secret").stat().st_mode & 0o077 == 0
