"""Artifact guard: flag or drop frames whose channels are broken, so a decoder (or an online
alignment reference) never learns from a loose electrode, a clipped amplifier or a NaN burst.

Each frame is checked per channel for four reasons, all thresholds in µV:

- ``nonfinite``: a NaN or an infinity in the frame (a dropped packet, a driver glitch);
- ``flat``: peak-to-peak below ``flat`` (a disconnected electrode; MNE's customary EEG ``flat``
  criterion is 1 µV);
- ``amplitude``: peak-to-peak above ``amplitude`` (movement, electrode pops, large eye movements;
  peak-to-peak rather than |x| so that a DC offset does not count). The default 500 µV is a
  gross-artifact level, not MNE's 100-150 µV epoch rejection for clean band-passed EEG:
  unfiltered EEGMMIDB has a median 2-s peak-to-peak of 170 µV per channel, and the defaults flag
  36% of its unfiltered 2-s windows (eye movements below 2 Hz on frontal channels, one channel of
  60 Hz noise) but 3.6% after an 8-30 Hz band-pass: put the guard after the band-pass;
- ``saturation``: a sample at or beyond ``saturation`` in magnitude (the amplifier's rail, when
  known), or ``repeats`` identical consecutive samples (a stuck or clipping converter; clean
  EEGMMIDB at 1 µV resolution repeats a value at most 18 times in a row, and its recordings end
  with 80 zero samples of padding, which this catches).

Windows (``tensor``, channels x samples) are judged on their own samples. A ``samples`` stream is
judged chunk by chunk: NaN and saturation on the chunk itself (runs of repeats carried across
chunks), the peak-to-peak tests on the last ``span`` seconds ending at the chunk's last sample
(the whole chunk if longer), so that a 1-sample chunk is not "flat"; ``flat`` is only judged
once a full span has been seen. A spike is therefore flagged in every chunk for ``span`` s.

``action: flag`` passes the frame on with ``meta["artifact"]`` (the reasons) and
``meta["bad_channels"]`` (names); ``action: drop`` does not emit it (on a samples stream this
leaves a gap, which a window node joins: prefer dropping windows). Clean frames pass untouched.
Every detection is counted per reason, with the channels involved, in ``figures()``. A stream
whose units are known and not µV is refused while a µV threshold is on.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Literal, Mapping

import numpy as np
from pydantic import Field

from nodes.checks import check_channels, check_window, require_srate
from pipeline import Frame, FrameKind, Node, NodeParams, ParamError, StreamInfo, StreamMismatch
from pipeline.node import Figure, Output
from pipeline.units import MICROVOLTS

#: Detection reasons, in the order they are reported.
REASONS = ("nonfinite", "flat", "amplitude", "saturation")
#: Channels named per reason in ``figures()`` (the most frequent first).
FIGURE_NAMES = 8


def peak_to_peak(x: np.ndarray) -> np.ndarray:
    """Per-channel max - min of ``x`` (channels x n >= 1); NaN where a channel holds a NaN or an
    infinity (judged as ``nonfinite`` only)."""
    with np.errstate(invalid="ignore"):  # inf - inf
        ptp = x.max(axis=1) - x.min(axis=1)
    return np.where(np.isfinite(ptp), ptp, np.nan)


def repeat_runs(x: np.ndarray, last: np.ndarray, run: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longest run of identical consecutive samples per channel in ``x`` (channels x n, n >= 1),
    counting a run that started before ``x``.

    Parameters
    ----------
    x : numpy.ndarray
        The samples.
    last, run : numpy.ndarray
        Per channel, the sample before ``x`` and the length of the run it ended (0: none).

    Returns
    -------
    longest : numpy.ndarray
        Longest run (samples) ending inside ``x``, per channel.
    trailing : numpy.ndarray
        Length of the run ending at ``x``'s last sample: the next call's ``run``.
    """
    n = x.shape[1]
    prev = np.concatenate([last[:, None], x[:, :-1]], axis=1)
    starts = x != prev  # NaN never repeats
    index = np.arange(n)
    # start of the run holding each sample; -run where it began before x
    start = np.maximum.accumulate(np.where(starts, index, -run[:, None]), axis=1)
    length = index - start + 1
    return length.max(axis=1), length[:, -1]


class ArtifactGuard(Node):
    """Flag or drop frames with NaN, flat, too large or saturated channels."""

    type_name = "artifact_guard"
    accepts = {"in": (FrameKind.SAMPLES, FrameKind.TENSOR)}

    class Params(NodeParams):
        action: Literal["flag", "drop"] = Field("flag", description="'flag': pass on with meta "
                                                "artifact / bad_channels; 'drop': do not emit")
        flat: float | None = Field(1.0, gt=0, description="peak-to-peak below this is flat (µV); "
                                                          "null: off")
        amplitude: float | None = Field(500.0, gt=0, description="peak-to-peak above this is an "
                                                                 "artifact (µV); null: off")
        saturation: float | None = Field(None, gt=0, description="|x| at or above this is "
                                                                 "clipped (µV: the rail); "
                                                                 "null: off")
        repeats: int | None = Field(32, ge=2, description="this many identical consecutive "
                                                          "samples are clipping; null: off")
        span: float = Field(0.5, gt=0, description="samples streams: seconds judged by the "
                                                   "peak-to-peak tests")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        stream, p = info["in"], self.params
        self.tensor = stream.kind is FrameKind.TENSOR
        if self.tensor and len(stream.shape) != 2:
            raise StreamMismatch(f"artifact_guard needs (channels x samples) windows; the stream "
                                 f"is {stream.describe()}")
        self.shape = stream.shape
        self.channels = stream.n_channels
        self.names = stream.channel_names or tuple(str(i) for i in range(self.channels))
        thresholds = [f for f in ("flat", "amplitude", "saturation") if getattr(p, f) is not None]
        odd = [f"{n} ({u})" for n, u in zip(self.names, stream.units) if u not in MICROVOLTS]
        if odd and thresholds:
            raise ParamError(thresholds[0], f"thresholds are in µV but channels {', '.join(odd)} "
                                            f"are not: pick the EEG channels first")
        self.span = 0
        if not self.tensor:
            self.span = max(1, round(p.span * require_srate(stream, self.type_name)))
        self.frames = self.artifact_frames = 0
        self.counts = {r: 0 for r in REASONS}
        self.bad = {r: Counter() for r in REASONS}
        self.reset()
        return {"out": stream}

    def reset(self) -> None:
        # samples streams only: the last `span` samples, the last sample and its run of repeats
        self.tail = np.zeros((self.channels, 0), np.float32)
        self.last = np.full(self.channels, np.nan, np.float32)
        self.run = np.zeros(self.channels, np.int64)

    def detect(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Per reason, which channels of frame ``x`` (channels x n, n >= 1) are bad (one bool
        per channel). Advances a samples stream's history."""
        p = self.params
        span, full = x, True
        if not self.tensor:
            joined = np.concatenate([self.tail, x], axis=1)
            span = joined[:, -max(self.span, x.shape[1]):]
            full = joined.shape[1] >= self.span
            self.tail = joined[:, -self.span:]
        ptp = peak_to_peak(span)
        off = np.zeros(self.channels, bool)
        with np.errstate(invalid="ignore"):  # NaN compares False: judged as nonfinite only
            flat = ptp < p.flat if p.flat is not None and full else off
            large = ptp > p.amplitude if p.amplitude is not None else off
            clipped = (np.abs(x) >= p.saturation).any(axis=1) if p.saturation is not None else off
        if p.repeats is not None:
            if self.tensor:  # each window on its own: windows overlap
                longest, _ = repeat_runs(x, np.full(self.channels, np.nan, x.dtype),
                                         np.zeros(self.channels, np.int64))
            else:
                longest, self.run = repeat_runs(x, self.last, self.run)
                self.last = x[:, -1].copy()
            clipped = clipped | (longest >= p.repeats)
        return {"nonfinite": ~np.isfinite(x).all(axis=1), "flat": flat, "amplitude": large,
                "saturation": clipped}

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        x = frame.data
        if self.tensor:
            check_window(x, self.shape)
        else:
            check_channels(x, self.channels)
        self.frames += 1
        if not x.shape[1]:
            yield "out", frame
            return
        bad = self.detect(x)
        reasons = [r for r in REASONS if bad[r].any()]
        if not reasons:
            yield "out", frame
            return
        self.artifact_frames += 1
        for r in reasons:
            self.counts[r] += 1
            self.bad[r].update(self.names[i] for i in np.flatnonzero(bad[r]))
        if self.params.action == "flag":
            channels = np.logical_or.reduce([bad[r] for r in reasons])
            meta = dict(frame.meta or {})
            meta["artifact"] = reasons
            meta["bad_channels"] = [self.names[i] for i in np.flatnonzero(channels)]
            yield "out", Frame(frame.kind, x, frame.t_origin_ns, frame.seq, frame.t_device, meta)

    def figures(self) -> dict[str, Figure]:
        out: dict[str, Figure] = {"frames": self.frames, "artifact_frames": self.artifact_frames}
        for r in REASONS:
            out[r] = self.counts[r]
            # read from the metrics thread while process() may add channels: work on one
            # C-level copy (most_common would iterate the live Counter in Python)
            ranked = sorted(dict(self.bad[r]).items(), key=lambda item: -item[1])
            out[f"{r}_channels"] = ", ".join(f"{name}:{n}" for name, n in ranked[:FIGURE_NAMES])
        return out
