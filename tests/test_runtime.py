"""The runtime end to end: real supervisors, real worker processes, real ZeroMQ sockets."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
import zmq

from devices.recorder import read_recording

pytestmark = pytest.mark.slow

def demo_text() -> str:
    """configs/demo.yaml, runnable from another folder (its lsl_config and model made absolute)."""
    configs = Path(__file__).resolve().parents[1] / "configs"
    return (configs / "demo.yaml").read_text().replace(
        "lsl_config: lsl_api.cfg", f"lsl_config: {configs / 'lsl_api.cfg'}").replace(
        "model: models/", f"model: {configs.parent / 'models'}/")


def test_demo_config_decodes_for_its_duration_and_exits_cleanly(run_graph) -> None:
    g = run_graph(demo_text(), "--duration", "7")
    assert g.finish() == 0, g.stderr
    fig = g.figures()
    assert fig["eeg"]["frames_out"] > 0
    # lossless edge into the recorder: it holds every frame the filter emitted
    rec = read_recording(g.graph.parent / "demo-recording.nfr")
    assert len(rec.frames) == fig["band"]["frames_out"] == fig["rec"]["frames_in"]
    assert [f.seq for f in rec.frames] == list(range(len(rec.frames)))
    # 4 s windows every 0.25 s: the decoder has decided some by 7 s, and the score saw them
    assert fig["decoder"]["frames_out"] > 0 and fig["score"]["frames_in"] > 0
    assert fig["score"]["node"]["predicted"] in ("left", "right")
    # percentiles are per second: the last second of a node may be empty, any second is not
    ticks = [r["nodes"] for r in g.records() if "nodes" in r]
    assert any(t["decoder"].get("lat_p50_ms") is not None for t in ticks)
    assert any(t["band"].get("proc_p50_us") is not None for t in ticks)


def test_fused_groups_run_the_same_graph_in_fewer_processes(run_graph) -> None:
    demo = demo_text().replace("dsp: [pick, band, ems, win]",
                               "dsp: [eeg, pick, band, ems, win, rec, decoder, decide, score, show]")
    g = run_graph(demo, "--duration", "2")
    assert g.finish() == 0, g.stderr
    assert sorted(e["group"] for e in g.events("started")) == ["dsp", "lsl"]
    fig = g.figures()
    rec = read_recording(g.graph.parent / "demo-recording.nfr")
    assert len(rec.frames) == fig["band"]["frames_out"] == fig["rec"]["frames_in"] > 0
    assert [f.seq for f in rec.frames] == list(range(len(rec.frames)))


def test_sigint_during_a_lossless_run_drains_every_frame_into_the_recorder(run_graph) -> None:
    g = run_graph("""\
        nodes:
          src: {type: synthetic_eeg, channels: 16, srate: 2000, chunk: 4}
          amp: {type: gain, gain: 3}
          rec: {type: recorder, path: out.nfr}
        edges:
          - {chain: src -> amp -> rec, policy: lossless}
        """)
    g.wait_for(lambda: (g.figures().get("rec") or {}).get("frames_in", 0) > 200)
    g.interrupt()
    assert g.finish() == 0, g.stderr
    emitted = g.figures()["src"]["frames_out"]
    rec = read_recording(g.graph.parent / "out.nfr")
    assert not rec.truncated
    assert [f.seq for f in rec.frames] == list(range(emitted))
    assert [e["rc"] for e in g.events("exit")] == [0, 0, 0]


def test_kill_9_of_a_worker_restarts_it_while_the_other_branch_flows(run_graph) -> None:
    g = run_graph("""\
        nodes:
          src: {type: synthetic_eeg, srate: 500, chunk: 5}
          a: {type: gain}
          a_out: {type: "null"}
          b: {type: gain}
          b_out: {type: "null"}
        edges:
          - src -> a -> a_out
          - src -> b -> b_out
        supervisor: {backoff: 0.1}
        """, "--duration", "30")
    g.wait_for(lambda: g.events("go"))
    g.wait_for(lambda: (g.figures().get("a_out") or {}).get("frames_in", 0) > 50)
    pid = next(e["pid"] for e in g.events("started") if e["group"] == "a")
    b_before = g.figures()["b_out"]["frames_in"]
    os.kill(pid, signal.SIGKILL)
    exit_event = g.wait_for(lambda: [e for e in g.events("exit") if e["group"] == "a"])[0]
    assert exit_event["rc"] == -9
    restarted = g.wait_for(lambda: [e for e in g.events("started")
                                    if e["group"] == "a" and e["restarts"] == 1])[0]
    # the other branch keeps flowing (and, below, loses nothing across a's death)
    g.wait_for(lambda: g.figures()["b_out"]["frames_in"] > b_before)
    # 'a' works again: its sink sees the restarted producer (a new sequence) and new frames
    g.wait_for(lambda: g.figures()["a_out"].get("resets", 0) >= 1)
    a_after = g.figures()["a_out"]["frames_in"]
    g.wait_for(lambda: g.figures()["a_out"]["frames_in"] > a_after + 20)
    g.interrupt()
    assert g.finish() == 0, g.stderr
    fig = g.figures()
    assert fig["a"]["restarts"] == 1 and fig["b"]["restarts"] == 0
    # the gap is counted: what 'src' could not deliver to the dead 'a' is in its send drops
    assert fig["src"]["send_drops"] > 0
    assert fig["b_out"]["frames_in"] == fig["src"]["frames_out"]  # b lost nothing
    print(f"kill -9 -> restarted worker started after {restarted['t'] - exit_event['t']:.3f} s")


def _send_garbage(sock: zmq.Socket, n: int) -> None:
    rng = random.Random(99)
    for i in range(n):
        kind = i % 3
        if kind == 0:    # right part count, random bytes
            parts = [b"x", rng.randbytes(rng.randrange(64)), rng.randbytes(rng.randrange(64))]
        elif kind == 1:  # a plausible header prefix
            parts = [b"x", b"NF\x01" + rng.randbytes(rng.randrange(60)), rng.randbytes(8)]
        else:            # wrong number of parts
            parts = [rng.randbytes(rng.randrange(1, 9)) + b"!" for _ in range(rng.choice([1, 2, 4]))]
        sock.send_multipart(parts)


def test_ten_thousand_malformed_frames_are_counted_and_the_graph_keeps_running(run_graph) -> None:
    g = run_graph("""\
        nodes:
          src: {type: synthetic_eeg, srate: 500, chunk: 5}
          sink: {type: "null"}
        edges:
          - src -> sink
        """)
    plan_path = g.wait_for(lambda: g.events("plan"))[0]["path"]
    g.wait_for(lambda: (g.figures().get("sink") or {}).get("frames_in", 0) > 10)
    plan = json.loads(Path(plan_path).read_text())
    endpoint = plan["edges"][0]["connect"]
    with zmq.Context() as ctx, ctx.socket(zmq.PUSH) as sock:
        sock.connect(endpoint)
        _send_garbage(sock, 10_000)
        # stay connected until all were taken: ZeroMQ loses what is in flight when a peer leaves
        g.wait_for(lambda: g.figures()["sink"]["decode_errors"] >= 10_000)
    before = g.figures()["sink"]["frames_in"]
    g.wait_for(lambda: g.figures()["sink"]["frames_in"] > before + 20)
    g.interrupt()
    assert g.finish() == 0, g.stderr
    fig = g.figures()
    assert fig["sink"]["decode_errors"] == 10_000
    assert fig["sink"]["frames_in"] == fig["src"]["frames_out"]


def test_a_slow_consumer_drops_oldest_on_its_realtime_edge_and_the_fast_branch_loses_nothing(
        run_graph) -> None:
    g = run_graph("""\
        nodes:
          src: {type: synthetic_eeg, srate: 500, chunk: 5}
          fast: {type: "null"}
          slow: {type: "null", delay: 0.2}
        edges:
          - src -> fast
          - {chain: src -> slow, queue: 4}
        """, "--duration", "3")
    assert g.finish() == 0, g.stderr
    fig = g.figures()
    emitted = fig["src"]["frames_out"]
    assert fig["fast"]["frames_in"] == emitted
    assert fig["fast"]["queue_drops"] == fig["fast"]["drops"] == 0
    slow = fig["slow"]
    assert slow["queue_drops"] > 0
    # every frame is accounted for: processed, or dropped (oldest in the queue, or a gap)
    assert slow["frames_in"] + slow["queue_drops"] + slow["drops"] == emitted
    assert slow["frames_in"] < emitted / 5


def test_a_node_error_is_counted_and_survived(run_graph) -> None:
    g = run_graph("""\
        nodes:
          src: {type: synthetic_eeg, srate: 500, chunk: 5, max_frames: 60}
          flaky: {type: "plugins:Explode", bad: [5, 9]}
          sink: {type: "null"}
          odd: {type: "plugins:Explode", bad: [3], wrong_port: true}
          sink2: {type: "null"}
        edges:
          - {chain: src -> flaky -> sink, policy: lossless}
          - {chain: src -> odd -> sink2, policy: lossless}
        """)
    assert g.finish() == 0, g.stderr
    fig = g.figures()
    assert fig["flaky"]["errors"] == 2 and fig["odd"]["errors"] == 1
    assert fig["sink"]["frames_in"] == 58 and fig["sink2"]["frames_in"] == 59
    assert "RuntimeError: boom at seq 5" in g.stderr
    assert "node 'odd' emitted ('nope', Frame(samples, seq=3" in g.stderr


def test_node_figures_reach_the_metrics_file(run_graph) -> None:
    # two all-NaN chunks reach the filter: every channel's state is restarted twice, and the
    # filter says so in its own figures, next to the runtime's
    g = run_graph("""\
        nodes:
          src: {type: synthetic_eeg, channels: 3, srate: 500, chunk: 5, max_frames: 40}
          nan: {type: "plugins:NaNBurst", bad: [10, 20]}
          band: {type: bandpass, low: 1, high: 40}
          sink: {type: "null"}
        edges:
          - {chain: src -> nan -> band -> sink, policy: lossless}
        groups: {one: [src, nan], two: [band, sink]}
        """)
    assert g.finish() == 0, g.stderr
    fig = g.figures()
    assert fig["band"]["node"] == {"nan_resets": 6}
    assert fig["sink"]["frames_in"] == 40


def test_a_node_that_keeps_failing_ends_the_run_with_its_name_and_traceback(run_graph) -> None:
    g = run_graph("""\
        nodes:
          src: {type: synthetic_eeg, srate: 5000, chunk: 1}
          boom: {type: "plugins:Explode"}
          sink: {type: "null"}
        edges:
          - src -> boom -> sink
        supervisor: {max_restarts: 1, backoff: 0.05}
        """, "--duration", "60")
    rc = g.finish()
    assert rc == 1
    assert "group 'boom' (nodes boom) failed for good after 1 restarts in a row" in g.stdout + g.stderr
    assert "node 'boom' raised on 100 frames in a row" in g.stderr
    assert "RuntimeError: boom at seq" in g.stderr
    assert [e["group"] for e in g.events("started")].count("boom") == 2


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_workers_block_instead_of_spinning(run_graph) -> None:
    """A graph at 1 frame/s: a polling loop would burn a core; blocking receives cost ~0."""
    g = run_graph("""\
        nodes:
          src: {type: synthetic_eeg, srate: 1, chunk: 1}
          amp: {type: gain, gain: 2}
          sink: {type: "null"}
        edges:
          - src -> amp -> sink
        """)
    g.wait_for(lambda: g.events("go"))
    pids = [e["pid"] for e in g.events("started")]
    before = [_cpu_seconds(p) for p in pids]
    wall = 2.0
    time.sleep(wall)
    used = [_cpu_seconds(p) - b for p, b in zip(pids, before)]
    g.interrupt()
    assert g.finish() == 0, g.stderr
    # 25% of a core is far above what blocking costs and far below what a spin costs (100%)
    assert max(used) < 0.25 * wall, used


def test_a_frozen_worker_misses_its_heartbeats_and_is_replaced(run_graph) -> None:
    g = run_graph("""\
        nodes:
          src: {type: synthetic_eeg, srate: 500, chunk: 5}
          a: {type: gain}
          out: {type: "null"}
        edges:
          - src -> a -> out
        supervisor: {heartbeat_timeout: 1.5, backoff: 0.05}
        """, "--duration", "30")
    g.wait_for(lambda: (g.figures().get("out") or {}).get("frames_in", 0) > 20)
    pid = next(e["pid"] for e in g.events("started") if e["group"] == "a")
    os.kill(pid, signal.SIGSTOP)  # alive but silent, as a worker stuck in a C call would be
    lost = g.wait_for(lambda: g.events("heartbeat_lost"))[0]
    assert (lost["group"], lost["pid"]) == ("a", pid)
    g.wait_for(lambda: [e for e in g.events("started") if e["group"] == "a" and e["restarts"] == 1])
    before = g.figures()["out"]["frames_in"]
    g.wait_for(lambda: g.figures()["out"]["frames_in"] > before + 20)
    g.interrupt()
    assert g.finish() == 0, g.stderr
