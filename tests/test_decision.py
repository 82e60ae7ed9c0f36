"""decision: every rule on hand-made probability sequences, with the expected commands written out.

The reference is the list of (window index, command) pairs a person derives from the rules in
`nodes.decision`'s docstring; each sequence is built so that removing the rule under test (or
getting its boundary wrong) changes that list.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pytest
from pydantic import ValidationError

from devices.recorder import read_recording
from nodes.decision import Decision
from pipeline import (Frame, FrameKind, NodeParams, ParamError, Source, StreamInfo,
                      StreamMismatch, config, graph)
from pipeline.clock import now_ns
from pipeline.codec import decode, encode
from pipeline.config import ConfigError
from pipeline.node import Output

CLASSES = ("left", "right", "rest")
L, R, REST = [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]
TIE = [0.45, 0.45, 0.1]


def predictions(classes: Sequence[str] = CLASSES) -> StreamInfo:
    return StreamInfo(FrameKind.PREDICTION, 10.0, dtype="float32", shape=(len(classes),),
                      class_names=tuple(classes), clock="synthetic")


def node(**params: Any) -> Decision:
    d = Decision(Decision.Params(**params), "dec")
    d.setup({"in": predictions()})
    return d


def frames(probs: Sequence[Sequence[float]], times: Sequence[float | None] | None = None,
           origin_ns: Sequence[int] | None = None) -> list[Frame]:
    """One prediction frame per row; t_device 0.0, 0.1, ... unless ``times`` is given."""
    times = times if times is not None else [round(0.1 * k, 10) for k in range(len(probs))]
    origin_ns = origin_ns if origin_ns is not None else [1000 + k for k in range(len(probs))]
    return [Frame(FrameKind.PREDICTION, np.array(p, np.float32), o, seq=k, t_device=t)
            for k, (p, t, o) in enumerate(zip(probs, times, origin_ns))]


def commands(d: Decision, fs: Sequence[Frame]) -> list[tuple[int, str]]:
    """(index of the triggering prediction, command text) for every command ``d`` sends."""
    out = []
    for k, f in enumerate(fs):
        out += [(k, str(c.data[0])) for _, c in d.process("in", f)]
    return out


def run(probs: Sequence[Sequence[float]], times: Sequence[float | None] | None = None,
        **params: Any) -> list[tuple[int, str]]:
    return commands(node(**params), frames(probs, times))


# --- the rules, one at a time -------------------------------------------------------------------

def test_by_default_every_change_of_winner_is_sent_once() -> None:
    got = run([[0.6, 0.3, 0.1], [0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], R])
    assert got == [(0, "left"), (2, "right"), (3, "rest"), (4, "right")]


def test_threshold_is_inclusive_at_float32_and_a_tie_at_the_top_wins_nothing() -> None:
    d = node(threshold=0.7)
    # float32(0.7) is 0.69999999: it must still pass a threshold written as 0.7
    got = commands(d, frames([[0.69, 0.21, 0.1], [0.7, 0.2, 0.1], [0.15, 0.7, 0.15],
                              [0.1, 0.2, 0.7]]))
    assert got == [(1, "left"), (2, "right"), (3, "rest")]
    assert d.figures()["rejected_threshold"] == 1
    d = node()
    got = commands(d, frames([TIE, [0.4, 0.2, 0.4], [0.46, 0.44, 0.1]]))
    assert got == [(2, "left")]
    assert d.figures()["rejected_margin"] == 2


def test_margin_over_the_second_best_is_inclusive() -> None:
    # 0.5 - float32(0.3) is 0.19999999: exactly the margin as written
    got = run([[0.5, 0.3, 0.2], [0.3, 0.49, 0.21], [0.2, 0.6, 0.2]], margin=0.2)
    assert got == [(0, "left"), (2, "right")]


def test_hysteresis_switching_needs_the_higher_threshold_holding_the_lower() -> None:
    probs = [[0.7, 0.2, 0.1],     # left: 0.7 >= 0.6 (nothing decided yet)
             [0.2, 0.7, 0.1],     # right: 0.7 < 0.8 to switch
             [0.65, 0.25, 0.1],   # left holds (0.65 >= 0.6)
             [0.1, 0.8, 0.1],     # right: exactly the switch threshold
             [0.79, 0.11, 0.1],   # left: 0.79 < 0.8
             [0.9, 0.05, 0.05]]   # left switches back
    assert run(probs, threshold=0.6, switch_threshold=0.8) == [(0, "left"), (3, "right"),
                                                              (5, "left")]
    assert run(probs, threshold=0.6) == [(0, "left"), (1, "right"), (2, "left"), (3, "right"),
                                        (4, "left")]


def test_majority_vote_over_the_last_k_windows() -> None:
    d = node(vote=3)  # min_votes: a strict majority, 2
    got = commands(d, frames([L,     # [L]           1 vote
                              R,     # [L R]         1 each
                              L,     # [L R L]       left 2
                              R,     # [R L R]       right 2
                              TIE,   # [L R -]       1 each (the tie cast no vote)
                              R]))   # [R - R]       right 2, already the decision
    assert got == [(2, "left"), (3, "right")]
    fig = d.figures()
    assert (fig["rejected_vote"], fig["rejected_margin"], fig["held"]) == (2, 1, 1)


def test_a_tie_in_the_vote_elects_nobody() -> None:
    assert run([L, R, R, L], vote=2, min_votes=1) == [(0, "left"), (2, "right")]
    # the tie [L R] at 1 elects nobody (not the older ballot), so left's run ends undwelt
    assert run([L, R, R, R], vote=2, min_votes=1, dwell_windows=2) == [(3, "right")]


def test_dwell_windows_restart_when_interrupted() -> None:
    assert run([L, L, R, L, L, L], dwell_windows=3) == [(5, "left")]
    # a window that wins nothing interrupts the run too
    assert run([L, L, [0.5, 0.3, 0.2], L, L, L], threshold=0.6, dwell_windows=3) == [(5, "left")]


def test_dwell_seconds_are_inclusive_on_the_windows_own_times() -> None:
    times = [0.4, 0.5, 0.6, 0.7, 0.8]  # 0.7 - 0.4 is 0.29999999999999993 in float64
    assert run([L, L, L, L, R], times, dwell_s=0.3) == [(3, "left")]
    # time, not window count: one late window completes the dwell
    assert run([L, L], [0.4, 0.75], dwell_s=0.3) == [(1, "left")]
    assert run([L, L, L], [0.4, 0.5, 0.6], dwell_s=0.3) == []


def test_host_clock_times_the_rules_by_t_origin_ns() -> None:
    fs = frames([L] * 5, times=[None] * 5, origin_ns=[k * 100_000_000 for k in range(5)])
    assert commands(node(dwell_s=0.3, clock="host"), fs) == [(3, "left")]
    d = node(dwell_s=0.3)  # device clock, but these predictions carry no device time
    assert commands(d, fs) == []
    assert d.figures()["bad_time"] == 5


def test_refractory_holds_commands_back_and_the_evidence_keeps_counting() -> None:
    times = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]  # 0.7 - 0.2 is 0.49999999999999994
    d = node(refractory_s=0.5, dwell_windows=2)
    # left is sent at 0.2; right has dwelt by 0.4 but is held back until 0.5 s after left
    assert commands(d, frames([L, L, R, R, R, R, R], times)) == [(1, "left"), (6, "right")]
    assert d.figures()["rejected_refractory"] == 3  # at 0.4, 0.5, 0.6 (0.3 was still dwelling)
    # nothing is held back for the current command: it is not a change
    assert run([L, R, L, L], [0.0, 0.1, 0.2, 0.3], refractory_s=1.0) == [(0, "left")]


def test_rest_sends_nothing_but_ends_the_current_command() -> None:
    assert run([L, REST, REST, L, R], rest_class="rest") == [(0, "left"), (3, "left"),
                                                             (4, "right")]
    assert run([L, REST, L], rest_class="rest", emit_rest=True,
               commands={"rest": "STOP"}) == [(0, "left"), (1, "STOP"), (2, "left")]
    # a silent rest is not a command: it does not start, and is not held by, a refractory period
    times = [0.0, 0.1, 0.2, 0.3, 1.0]
    assert run([L, REST, L, L, L], times, rest_class="rest", refractory_s=1.0) == [(0, "left"),
                                                                                   (4, "left")]


def test_repeat_sends_the_command_on_every_window_it_holds() -> None:
    assert run([L, L, L, R, REST], repeat=True, rest_class="rest") == [
        (0, "left"), (1, "left"), (2, "left"), (3, "right")]
    # with a refractory period, repeat becomes a rate
    assert run([L] * 6, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], repeat=True, refractory_s=0.2) == [
        (0, "left"), (2, "left"), (4, "left")]


def test_rules_combined_on_one_sequence() -> None:
    probs = [L, [0.55, 0.35, 0.1], L, L, L,
             [0.3, 0.6, 0.1], R, R, [0.05, 0.9, 0.05],
             REST, REST, REST, L, L, L]
    got = run(probs, threshold=0.6, switch_threshold=0.7, vote=3, min_votes=2, dwell_windows=2,
              rest_class="rest", commands={"left": "L", "right": "R"})
    # index:     0  1  2  3  4  5  6  7  8  9  10 11 12 13 14
    # ballot:    L  -  L  L  L  -  R  R  R  Re Re Re L  L  L   (0.55 < 0.6; 0.6 < 0.7 to switch)
    # candidate: -  -  L  L  L  L  -  R  R  R  Re Re Re L  L   (2 of the last 3)
    # run:       0  0  1  2  3  4  0  1  2  3  1  2  3  1  2   (dwell: 2)
    # sent:               L                 R        (rest)        L
    assert got == [(3, "L"), (8, "R"), (14, "L")]


# --- frames, meta and the stream ----------------------------------------------------------------

def test_a_command_carries_its_window_and_its_latency_and_crosses_the_wire() -> None:
    d = node(commands={"left": "L", "right": "R"}, rest_class="rest")
    t0 = now_ns() - 5_000_000
    f = Frame(FrameKind.PREDICTION, np.array([0.2, 0.7, 0.1], np.float32), t0, seq=41,
              t_device=12.5)
    before = now_ns()
    [(port, c)] = list(d.process("in", f))
    after = now_ns()
    assert port == "out" and c.kind is FrameKind.CONTROL
    assert c.data.dtype.kind == "U" and c.data.tolist() == ["R"]
    assert (c.t_origin_ns, c.t_device) == (t0, 12.5)
    meta = dict(c.meta)
    latency = meta.pop("latency_ms")
    assert (before - t0) / 1e6 <= latency <= (after - t0) / 1e6  # now - t_origin at emission
    assert meta == {"class": "right", "confidence": float(np.float32(0.7)), "votes": 1,
                    "dwell_windows": 1, "window_seq": 41, "window_t_device": 12.5}
    assert decode(encode(c)).same_as(c)


def test_stream_info_lists_the_possible_commands() -> None:
    d = Decision(Decision.Params(commands={"left": "L", "right": "R"}, rest_class="rest"), "d")
    info = d.setup({"in": predictions()})["out"]
    assert (info.kind, info.dtype, info.clock) == (FrameKind.CONTROL, "unicode", "synthetic")
    assert info.extra["commands"] == ["L", "R"]
    d = Decision(Decision.Params(commands={"rest": "STOP"}, rest_class="rest", emit_rest=True))
    assert d.setup({"in": predictions()})["out"].extra["commands"] == ["left", "right", "STOP"]


def test_malformed_predictions_are_counted_and_leave_the_state_alone() -> None:
    d = node(dwell_windows=2, dwell_s=0.1)
    fs = frames([L, [np.nan, 0.5, 0.5], L], [1.0, 1.1, 1.1])
    stale = Frame(FrameKind.PREDICTION, np.array(R, np.float32), 0, t_device=0.5)
    assert commands(d, [fs[0], fs[1], stale, fs[2]]) == [(3, "left")]
    fig = d.figures()
    assert (fig["nonfinite"], fig["bad_time"], fig["commands"], fig["last_command"]) == (1, 1, 1,
                                                                                       "left")
    with pytest.raises(ValueError, match=r"prediction has shape \[2\], the stream 3 classes"):
        list(d.process("in", Frame(FrameKind.PREDICTION, np.zeros(2, np.float32), 0)))


def test_reset_forgets_the_decision_but_keeps_the_counts() -> None:
    d = node(vote=3, min_votes=1)
    assert commands(d, frames([L, L])) == [(0, "left")]
    d.reset()
    assert commands(d, frames([R, L])) == [(0, "right")]  # no leftover left ballots: tie
    assert d.figures()["commands"] == 2


# --- configuration errors -----------------------------------------------------------------------

@pytest.mark.parametrize(("params", "field", "message"), [
    ({"commands": {"left": "L", "up": "U"}}, "commands",
     "no class 'up'; the stream's classes are left, right, rest"),
    ({"rest_class": "idle"}, "rest_class", "no class 'idle'; the stream's classes are left, "
                                           "right, rest"),
    ({"commands": {"left": ""}}, "commands", "empty command text for left"),
    ({"emit_rest": True}, "emit_rest", "emit_rest needs a rest_class"),
    ({"threshold": 0.7, "switch_threshold": 0.6}, "switch_threshold",
     "0.6 is below threshold 0.7"),
    ({"vote": 3, "min_votes": 4}, "min_votes", "4 votes out of vote: 3 windows"),
])
def test_invalid_configs_name_the_field(params: dict, field: str, message: str) -> None:
    with pytest.raises(ParamError, match=message) as e:
        Decision(Decision.Params(**params)).setup({"in": predictions()})
    assert e.value.field == field


def test_out_of_range_values_and_unnamed_classes_are_refused() -> None:
    with pytest.raises(ValidationError, match="threshold"):
        Decision.Params(threshold=1.5)
    with pytest.raises(ValidationError, match="vote"):
        Decision.Params(vote=0)
    with pytest.raises(StreamMismatch, match="class_names"):
        Decision().setup({"in": StreamInfo(FrameKind.PREDICTION, shape=(3,))})


# --- a real graph -------------------------------------------------------------------------------

class ScriptedPredictions(Source):
    """Test plugin (``test_decision:ScriptedPredictions``): replays ``probs`` as prediction
    frames, one per read, ``step`` s apart on a synthetic device clock."""

    class Params(NodeParams):
        classes: list[str]
        probs: list[list[float]]
        step: float = 0.1

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        self.k = 0
        p = self.params
        return {"out": StreamInfo(FrameKind.PREDICTION, 1 / p.step, dtype="float32",
                                  shape=(len(p.classes),), class_names=tuple(p.classes),
                                  clock="synthetic")}

    def read(self) -> list[Output] | None:
        p = self.params
        if self.k == len(p.probs):
            return None
        f = Frame(FrameKind.PREDICTION, np.array(p.probs[self.k], np.float32), now_ns(),
                  t_device=round(self.k * p.step, 10))
        self.k += 1
        return [("out", f)]


GRAPH = """\
name: decide
nodes:
  clf:
    type: "test_decision:ScriptedPredictions"
    classes: [left, right, rest]
    probs: [[.8, .1, .1], [.9, .05, .05], [.1, .1, .8], [.1, .1, .8], [.2, .7, .1],
            [.3, .6, .1], [.1, .85, .05], [.1, .8, .1], [.5, .4, .1], [.45, .45, .1]]
  dec:
    type: decision
    threshold: 0.6
    switch_threshold: 0.75
    dwell_windows: 2
    rest_class: rest
    commands: {left: L, right: R}
  rec: {type: recorder, path: commands.nfr}
edges:
  - {chain: clf -> dec -> rec, policy: lossless}
"""
# left x2 -> L at 1; rest x2 -> silent; right 0.7 and 0.6 < 0.75 (switch) -> nothing;
# right 0.85, 0.8 -> R at 7; 0.5 and the 0.45 tie are below the threshold
EXPECTED = [("L", 1), ("R", 7)]


def test_an_unknown_class_in_a_graph_file_points_at_its_line() -> None:
    text = GRAPH.replace("commands: {left: L, right: R}", "commands: {left: L, up: U}")
    with pytest.raises(ConfigError) as e:
        graph.build(config.loads(text, "g.yaml"))
    assert str(e.value) == ("g.yaml:14: node 'dec' (decision): field 'commands': no class 'up'; "
                            "the stream's classes are left, right, rest")


@pytest.mark.slow
def test_a_graph_run_by_the_cli_records_the_expected_commands(run_graph) -> None:
    g = run_graph(GRAPH)
    assert g.finish() == 0, g.stderr
    rec = read_recording(g.graph.parent / "commands.nfr")
    assert rec.info.kind is FrameKind.CONTROL and rec.info.extra["commands"] == ["L", "R"]
    assert [(str(f.data[0]), f.meta["window_seq"]) for f in rec.frames] == EXPECTED
    assert [f.t_device for f in rec.frames] == [0.1, 0.7]
    assert all(f.meta["latency_ms"] >= 0 for f in rec.frames)
    fig = g.figures()["dec"]["node"]
    assert (fig["commands"], fig["rest"], fig["rejected_threshold"]) == (2, 1, 4)
