"""Class probabilities -> control commands: when is a prediction good enough to move a device?

A decoder emits a probability vector for every window (10 per second with a 0.1 s step). Sent
as is, its winner flickers: a wheelchair would jerk left-right-left on evidence of 0.51. This
node is the post-processing every BCI toolkit puts between classifier and device, as a chain of
explicit, documented rules applied to each prediction in arrival order (no look-ahead):

1. **Confidence** (per window): the top class wins the window if its probability is at least
   ``threshold`` and exceeds the second best by at least ``margin``; an exact tie at the top wins
   nothing. **Hysteresis**: a class other than the current decision needs ``switch_threshold``
   (higher) instead, so that evidence hovering at the threshold does not toggle the output.
2. **Vote** over the last ``vote`` windows (a window that won nothing casts no vote but takes
   its slot): the class with the most votes is the candidate if it has at least ``min_votes``
   (default: a strict majority of ``vote``) and no other class has as many (a tie: no candidate).
   As OpenViBE's Stimulation Voter box (``EEGKit/openvibe-sdk``,
   ``plugins/processing/stimulation/src/box-algorithms/ovpCBoxAlgorithmStimulationVoter.cpp``:
   a minimum vote count over a sliding window), except that ties are refused rather than
   broken at random, so that a replay gives the same commands.
3. **Dwell**: the candidate must stay the same for ``dwell_windows`` consecutive windows and for
   ``dwell_s`` seconds (from the first window of the run to the current one); a window with no
   candidate or another one restarts the run. Townsend, Graimann & Pfurtscheller (2004),
   "Continuous EEG classification during motor imagery — simulation of an asynchronous BCI",
   IEEE TNSRE 12(2), introduced dwell time and refractory period to cut false positives; the
   timeflux ``burst`` project's ``AccumulationSteadyPred`` (``nodes/accumulation/simple.py``)
   does the same with a count of consecutive steady predictions over a threshold and a margin.
4. **Change** (``repeat: false``, the default): a candidate equal to the current decision sends
   nothing (the command holds; counted ``held`` whatever its dwell); ``repeat: true`` sends it
   again for every window it holds once it has dwelt.
5. **Refractory**: no command within ``refractory_s`` of the last one sent (BCI2000's
   ``ControlStateFilter`` ``RefractoryPeriod``). The evidence keeps accumulating meanwhile, so a
   command held back is sent at the first window after the period if it still stands.
6. **Rest**: the ``rest_class`` (idle, no intention) becomes the current decision like any class
   but sends nothing, unless ``emit_rest: true`` makes it a command of its own (then the
   refractory period applies to it too).

A command is a ``control`` frame: data = the command text (the class name, or its entry in
``commands``), ``t_origin_ns`` and ``t_device`` of the prediction that triggered it (latency
counts from acquisition), and ``meta``: ``class``, ``confidence`` (that prediction's probability
of the class), ``votes`` (of the last ``vote`` windows), ``dwell_windows`` (the run's length),
``window_seq`` and ``window_t_device`` (the prediction frame it came from) and ``latency_ms``
(host clock now - ``t_origin_ns`` when the command left).

Time: dwell and refractory periods are measured on the predictions' own times, never a wall
clock: ``clock: device`` (default) uses ``t_device`` (the window's first sample, on the
device's clock), so that a file replayed at ``speed: max`` gives the commands it gives in real
time; ``clock: host`` uses ``t_origin_ns`` (for streams without device times). A prediction
without that time, or older than the previous one, is counted (``bad_time``) and ignored when a
time rule is on. Comparisons are inclusive and forgive ``PROB_TOL`` / ``TIME_TOL``: float32
probabilities and float seconds cannot hold 0.7 or 0.3 s exactly, and a value equal to the
threshold as written must pass it.

Each prediction ends in exactly one outcome, counted in ``figures()``: ``commands`` (sent),
``rejected_threshold``, ``rejected_margin`` (the window's own winner failed and no vote carried
it), ``rejected_vote``, ``rejected_dwell``, ``rejected_refractory``, ``held`` (the current
command stands), ``rest`` (a silent rest decision), ``nonfinite`` / ``bad_time`` (ignored).
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Iterable, Literal, Mapping

import numpy as np
from pydantic import Field

from pipeline import Frame, FrameKind, Node, NodeParams, ParamError, StreamInfo, StreamMismatch
from pipeline.clock import now_ns
from pipeline.node import Figure, Output

#: Slack of probability comparisons (float32 holds 0.7 as 0.69999999).
PROB_TOL = 1e-6
#: Slack of time comparisons, s (float seconds hold 0.7 - 0.4 as 0.29999999999999993).
TIME_TOL = 1e-6
#: Outcomes of a prediction, in the order ``figures()`` lists them.
OUTCOMES = ("commands", "rejected_threshold", "rejected_margin", "rejected_vote", "rejected_dwell",
            "rejected_refractory", "held", "rest", "nonfinite", "bad_time")


def _require_classes(field: str, wanted: Iterable[str], classes: tuple[str, ...]) -> None:
    unknown = [c for c in wanted if c not in classes]
    if unknown:
        raise ParamError(field, f"no class {', '.join(map(repr, unknown))}; the stream's classes "
                                f"are {', '.join(classes)}")


class Decision(Node):
    """Probabilities -> commands: threshold, hysteresis, vote, dwell, refractory period, rest."""

    type_name = "decision"
    accepts = {"in": (FrameKind.PREDICTION,)}

    class Params(NodeParams):
        threshold: float = Field(0.0, ge=0, le=1, description="probability the top class needs "
                                                              "to win a window")
        margin: float = Field(0.0, ge=0, le=1, description="lead the top class needs over the "
                                                           "second (probability)")
        switch_threshold: float | None = Field(
            None, ge=0, le=1, description="hysteresis: probability a class other than the current "
                                          "decision needs (>= threshold; default: threshold)")
        vote: int = Field(1, ge=1, description="majority vote over the last N windows")
        min_votes: int | None = Field(None, ge=1, description="votes a class needs (default: a "
                                                              "strict majority of vote)")
        dwell_windows: int = Field(1, ge=1, description="consecutive windows a candidate must win")
        dwell_s: float = Field(0.0, ge=0, description="time a candidate must keep winning (s)")
        refractory_s: float = Field(0.0, ge=0, description="no command within this time of the "
                                                           "last one (s)")
        rest_class: str | None = Field(None, description="the idle class: winning it sends nothing")
        emit_rest: bool = Field(False, description="send the rest class as a command too")
        repeat: bool = Field(False, description="send the command on every window it holds, not "
                                                "only when it changes")
        commands: dict[str, str] = Field({}, description="command text per class (default: the "
                                                         "class name)")
        clock: Literal["device", "host"] = Field(
            "device", description="times for dwell_s / refractory_s: the windows' t_device, or "
                                  "their t_origin_ns")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        stream, p = info["in"], self.params
        self.classes = stream.class_names
        if not self.classes:
            raise StreamMismatch("decision needs a prediction stream that names its classes "
                                 "(class_names)")
        if stream.shape not in ((), (len(self.classes),)):
            raise StreamMismatch(f"prediction shape {list(stream.shape)} does not match its "
                                 f"{len(self.classes)} class names")
        _require_classes("commands", p.commands, self.classes)
        _require_classes("rest_class", [p.rest_class] if p.rest_class else [], self.classes)
        empty = [c for c, text in p.commands.items() if not text]
        if empty:
            raise ParamError("commands", f"empty command text for {', '.join(empty)}")
        if p.emit_rest and p.rest_class is None:
            raise ParamError("emit_rest", "emit_rest needs a rest_class")
        self.switch = p.threshold if p.switch_threshold is None else p.switch_threshold
        if self.switch < p.threshold:
            raise ParamError("switch_threshold", f"{self.switch:g} is below threshold "
                                                 f"{p.threshold:g}: switching must be harder "
                                                 f"than holding")
        self.min_votes = p.vote // 2 + 1 if p.min_votes is None else p.min_votes
        if self.min_votes > p.vote:
            raise ParamError("min_votes", f"{self.min_votes} votes out of vote: {p.vote} windows "
                                          f"can never be reached")
        self.text = {c: p.commands.get(c, c) for c in self.classes}
        sent = [c for c in self.classes if c != p.rest_class or p.emit_rest]
        self.timed = p.dwell_s > 0 or p.refractory_s > 0
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.last_command: str | None = None
        self.reset()
        possible = list(dict.fromkeys(self.text[c] for c in sent))  # in class order, once each
        return {"out": StreamInfo(FrameKind.CONTROL, dtype="unicode", clock=stream.clock,
                                  extra={"commands": possible})}

    def reset(self) -> None:
        self.ballots: deque[int | None] = deque(maxlen=self.params.vote)  # each window's winner
        self.current: int | None = None       # the last decision (a command sent, or rest)
        self.run: int | None = None           # the candidate of the current run
        self.run_start = 0.0                  # time of the run's first window (s)
        self.run_length = 0                   # windows in the run
        self.last_sent: float | None = None   # time of the last command sent (s)
        self.last_time: float | None = None   # time of the last prediction taken (s)

    def _time(self, frame: Frame) -> float | None:
        """The frame's time in seconds on the chosen clock; None when it has none."""
        if self.params.clock == "host":
            return frame.t_origin_ns / 1e9
        return frame.t_device

    def _window_winner(self, p: np.ndarray) -> tuple[int | None, str]:
        """The class that wins this window alone (None: none) and, if none, why."""
        order = np.argsort(-p, kind="stable")
        top = int(order[0])
        second = float(p[order[1]]) if len(p) > 1 else 0.0
        needed = self.params.threshold if self.current in (None, top) else self.switch
        if float(p[top]) < needed - PROB_TOL:
            return None, "rejected_threshold"
        if float(p[top]) <= second or float(p[top]) - second < self.params.margin - PROB_TOL:
            return None, "rejected_margin"
        return top, ""

    def _candidate(self) -> tuple[int | None, int]:
        """The class the vote elects (None: none) and the leading class's votes."""
        tally = Counter(c for c in self.ballots if c is not None).most_common(2) + [(None, 0)] * 2
        (best, votes), (_, runner_up) = tally[0], tally[1]
        if votes < self.min_votes or runner_up == votes:
            return None, votes
        return best, votes

    def decide(self, p: np.ndarray, t: float) -> tuple[str, int | None, int]:
        """Apply the rules to one prediction ``p`` at time ``t`` (s), advancing the state.

        Returns
        -------
        outcome : str
            One of `OUTCOMES`.
        candidate : int or None
            Index of the class whose command to send (outcome ``commands``), else None.
        votes : int
            The leading class's votes among the last ``vote`` windows.
        """
        prm = self.params
        winner, why = self._window_winner(p)
        self.ballots.append(winner)
        candidate, votes = self._candidate()
        if candidate is None:
            self.run, self.run_length = None, 0
            return why or "rejected_vote", None, votes
        if candidate == self.run:
            self.run_length += 1
        else:
            self.run, self.run_start, self.run_length = candidate, t, 1
        if candidate == self.current and not prm.repeat:
            return "held", None, votes
        if self.run_length < prm.dwell_windows or t - self.run_start < prm.dwell_s - TIME_TOL:
            return "rejected_dwell", None, votes
        silent = self.classes[candidate] == prm.rest_class and not prm.emit_rest
        if silent:
            self.current = candidate
            return "rest", None, votes
        if self.last_sent is not None and t - self.last_sent < prm.refractory_s - TIME_TOL:
            return "rejected_refractory", None, votes
        self.current, self.last_sent = candidate, t
        return "commands", candidate, votes

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        p = frame.data
        if p.shape != (len(self.classes),):
            raise ValueError(f"prediction has shape {list(p.shape)}, the stream "
                             f"{len(self.classes)} classes")
        if not np.all(np.isfinite(p)):
            self.counts["nonfinite"] += 1
            return
        t = self._time(frame) if self.timed else 0.0
        if t is None or (self.last_time is not None and t < self.last_time):
            self.counts["bad_time"] += 1
            return
        self.last_time = t
        outcome, c, votes = self.decide(p, t)
        self.counts[outcome] += 1
        if c is None:
            return
        name = self.classes[c]
        self.last_command = self.text[name]
        yield "out", Frame(FrameKind.CONTROL, np.array([self.last_command]), frame.t_origin_ns,
                           t_device=frame.t_device,
                           meta={"class": name, "confidence": float(p[c]), "votes": votes,
                                 "dwell_windows": self.run_length, "window_seq": frame.seq,
                                 "window_t_device": frame.t_device,
                                 "latency_ms": (now_ns() - frame.t_origin_ns) / 1e6})

    def figures(self) -> dict[str, Figure]:
        return {**self.counts, "last_command": self.last_command}
