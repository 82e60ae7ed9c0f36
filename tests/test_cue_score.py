"""cue_score: predictions placed in the trial their window starts in, each trial decided by its
majority, scored against the cue; rest cues and the end of the stream close trials."""

from __future__ import annotations

import numpy as np
import pytest

from nodes.cue_score import CueScore
from pipeline import Frame, FrameKind, ParamError, StreamInfo, StreamMismatch

PRED = StreamInfo(FrameKind.PREDICTION, shape=(2,), class_names=("left", "right"), clock="file")
MARKS = StreamInfo(FrameKind.MARKERS, dtype="unicode", clock="file")


def node(**params: object) -> CueScore:
    n = CueScore(CueScore.Params(events={"T1": "left", "T2": "right"}, **params), "score")
    n.setup({"in": PRED, "markers": MARKS})
    return n


def cue(text: str, t: float) -> tuple[str, Frame]:
    return "markers", Frame(FrameKind.MARKERS, np.array([text]), 0, t_device=t)


def pred(label: str, t: float) -> tuple[str, Frame]:
    p = np.array([0.8, 0.2] if label == "left" else [0.2, 0.8], np.float32)
    return "in", Frame(FrameKind.PREDICTION, p, 0, t_device=t, meta={"label": label})


def test_each_trial_is_decided_by_the_windows_starting_in_its_span() -> None:
    n = node(tmin=0.5, tmax=2.0)
    stream = [
        cue("T1", 10.0), pred("right", 10.25),            # before tmin: not a vote
        pred("left", 10.5), pred("left", 11.0), pred("right", 11.5), pred("left", 12.0),
        pred("right", 12.5),                               # after its span: trial 1 scored (left)
        cue("T0", 14.2),                                   # rest: no trial
        cue("T2", 18.4), pred("left", 19.0), pred("right", 19.5),   # a tie: no decision, wrong
        cue("T0", 22.6),
        cue("T2", 26.8), pred("right", 27.5),              # open at the end: scored by close()
    ]
    seen = []
    for port, frame in stream:
        assert list(n.process(port, frame)) == []
        seen.append(n.figures())
    assert seen[0]["cue"] == "left" and seen[1]["predicted"] == "right"
    assert seen[8]["cue"] == "right"
    list(n.close())
    f = n.figures()
    assert (f["trials"], f["correct"], f["accuracy"], f["unscored"]) == (3, 2, round(2 / 3, 3), 0)
    # votes: trial 1 three of four left, trial 2 one of two, trial 3 one of one
    assert f["window_accuracy"] == round(5 / 7, 3)
    assert f["cue"] == "right" and f["predicted"] == "right"


def test_windows_decided_after_the_next_cue_still_vote_in_their_own_trial() -> None:
    # 4 s windows: the one starting at a cue completes after the rest cue 4.1 s later
    n = node(tmin=0.0, tmax=0.5)
    for port, frame in [cue("T1", 0.0), cue("T0", 4.1), pred("left", 0.0), pred("left", 0.25),
                        cue("T2", 8.3), pred("right", 0.5), pred("right", 0.75),
                        cue("T0", 12.4), pred("right", 8.5), pred("left", 9.0)]:
        n.process(port, frame)
    assert n.figures()["cue"] == "-"
    list(n.close())
    f = n.figures()
    assert (f["trials"], f["correct"], f["unscored"], f["window_accuracy"]) == (2, 2, 0, 0.75)


def test_a_trial_without_predictions_is_unscored_and_commands_count_like_predictions() -> None:
    n = CueScore(CueScore.Params(events={"T1": "go-left"}), "score")
    n.setup({"in": StreamInfo(FrameKind.CONTROL, dtype="unicode", clock="file"),
             "markers": MARKS})
    n.process(*cue("T1", 0.0))
    n.process(*cue("T1", 5.0))                             # nothing came for the first one
    n.process("in", Frame(FrameKind.CONTROL, np.array(["go-left"]), 0, t_device=5.5))
    n.process("in", Frame(FrameKind.CONTROL, np.array(["L"]), 0, t_device=6.0,
                          meta={"class": "go-left"}))  # a command text mapped from its class
    list(n.close())
    f = n.figures()
    assert (f["trials"], f["correct"], f["unscored"], f["window_accuracy"]) == (1, 1, 1, 1.0)


def test_setup_refuses_classes_the_decoder_lacks_and_mixed_clocks() -> None:
    with pytest.raises(ParamError) as e:
        CueScore(CueScore.Params(events={"T1": "feet"}), "s").setup({"in": PRED, "markers": MARKS})
    assert e.value.field == "events" and "feet" in str(e.value) and "left, right" in str(e.value)
    with pytest.raises(StreamMismatch, match="clock 'file'.*'lsl'"):
        node().setup({"in": PRED, "markers": StreamInfo(FrameKind.MARKERS, clock="lsl")})
    with pytest.raises(ParamError) as e:
        node(tmin=2.0, tmax=1.0)
    assert e.value.field == "tmax"
