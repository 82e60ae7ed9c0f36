"""Predictions scored against the cues as they happen: what a BCI experimenter watches live.

Why: during a calibration or feedback run, or a replay of a recorded session, the question on
screen is "is the decoder following the cues?". This sink takes the cue markers (from the
headset's marker channel, an LSL stimulus stream or a file's annotations) and the decoder's
predictions (``onnx`` node: their ``meta["label"]``) or commands (``decision`` node: their
``meta["class"]``, else the command text), and keeps the running score in its
live figures, which the terminal view shows and ``--metrics`` writes once a second.

A cue listed in ``events`` (``{T1: left, T2: right}``: cue text -> the class it asks for) opens a
trial at its time; other cues (rest) open none. Each prediction is placed by its ``t_device`` (a
window's first sample, on the cues' clock): one whose window starts between ``tmin`` and
``tmax`` s after a cue votes in that cue's trial. Placement is by time, not by arrival: a window
that starts at a cue completes seconds later, often after the next cue has arrived. A trial is
scored once a prediction arrives for a window starting after its span (or at the end of the
stream): its decision is the class with the most votes (a tie is no decision, counted wrong),
compared with the cue's class. A cue must arrive before the windows that start after it are
decided (true of a file's annotations and of live stimulus markers).

Figures: ``cue`` (the class the latest cue asked for, ``-`` after a rest cue), ``predicted`` (the latest
prediction's class), ``trials``, ``correct``, ``accuracy`` (per trial), ``window_accuracy``
(predictions inside trial spans that named the cue's class), and ``unscored`` (trials with no
prediction in their span: the decoder fell behind or the span does not fit the windows).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from pydantic import Field

from pipeline import Frame, FrameKind, NodeParams, ParamError, Sink, StreamInfo, StreamMismatch
from pipeline.node import Figure, Output


@dataclass
class Trial:
    onset: float
    wanted: str
    votes: Counter[str] = field(default_factory=Counter)


class CueScore(Sink):
    """Running per-trial accuracy of predictions against cue markers."""

    type_name = "cue_score"
    inputs = ("in", "markers")
    accepts = {"in": (FrameKind.PREDICTION, FrameKind.CONTROL), "markers": (FrameKind.MARKERS,)}

    class Params(NodeParams):
        events: dict[str, str] = Field(description="cue text -> the class it asks for")
        tmin: float = Field(0.0, description="first window start (s after the cue) that votes in "
                                             "its trial")
        tmax: float = Field(2.0, description="last window start (s after the cue) that votes in "
                                             "its trial")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        stream, marks, p = info["in"], info["markers"], self.params
        if p.tmax < p.tmin:
            raise ParamError("tmax", f"tmax ({p.tmax:g} s) must not be before tmin ({p.tmin:g} s)")
        if not p.events:
            raise ParamError("events", "no cue to score against")
        if stream.kind == FrameKind.PREDICTION and stream.class_names:
            unknown = sorted(set(p.events.values()) - set(stream.class_names))
            if unknown:
                raise ParamError("events", f"class {', '.join(unknown)} is not one the decoder "
                                           f"predicts ({', '.join(stream.class_names)})")
        if stream.clock and marks.clock and stream.clock != marks.clock:
            raise StreamMismatch(f"the predictions' times are on clock {stream.clock!r}, the "
                                 f"cues' on {marks.clock!r}: they cannot be matched")
        self.reset()
        return {}

    def reset(self) -> None:
        self.pending: list[Trial] = []     # by onset: trials whose span may still get votes
        self.cue = "-"
        self.predicted = "-"
        self.trials = self.correct = self.unscored = 0
        self.windows = self.windows_correct = 0

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        t = frame.t_device
        if port == "markers":
            for text in frame.data:
                wanted = self.params.events.get(str(text))
                self.cue = wanted or "-"
                if wanted is not None and t is not None:
                    self.pending.append(Trial(t, wanted))
            return ()
        if frame.kind == FrameKind.CONTROL:  # decision's commands name their class in meta
            label = (frame.meta or {}).get("class", str(frame.data[0]))
        else:
            label = (frame.meta or {}).get("label")
        if label is None or t is None:
            return ()
        self.predicted = label
        p = self.params
        while self.pending and t > self.pending[0].onset + p.tmax:
            self._score(self.pending.pop(0))
        for trial in self.pending:
            if trial.onset + p.tmin <= t <= trial.onset + p.tmax:
                trial.votes[label] += 1
                self.windows += 1
                self.windows_correct += label == trial.wanted
                break
        return ()

    def _score(self, trial: Trial) -> None:
        if not trial.votes:
            self.unscored += 1
            return
        top = trial.votes.most_common(2)
        decided = top[0][0] if len(top) == 1 or top[0][1] > top[1][1] else None
        self.trials += 1
        self.correct += decided == trial.wanted

    def close(self) -> Iterable[Output]:
        for trial in self.pending:
            self._score(trial)
        self.pending = []
        return ()

    def figures(self) -> dict[str, Figure]:
        return {"cue": self.cue, "predicted": self.predicted,
                "trials": self.trials, "correct": self.correct,
                "accuracy": round(self.correct / self.trials, 3) if self.trials else None,
                "window_accuracy": round(self.windows_correct / self.windows, 3)
                if self.windows else None, "unscored": self.unscored}
