"""Marker-locked epochs: the samples from ``tmin`` to ``tmax`` around each marker, as MNE cuts them.

Why a node of its own: in a live graph the markers (cues from a stimulus program, annotations of
a replayed file) travel on their own edge and do not arrive in step with the samples — they come
late, out of order, or before the samples they point at. This node keeps the last samples in a
ring buffer long enough for an epoch plus ``max_wait`` seconds of marker lateness, keeps the
markers that cannot be cut yet in a pending list sorted by the sample that completes them, and
emits each epoch as soon as that sample has arrived (output order: by completion). A marker may
arrive up to ``max_wait`` after both its own sample and its epoch's last sample (the buffer holds
the epoch plus that much); a source sending markers after its sample chunk counts in that.

An epoch is what ``mne.Epochs(raw, events, tmin=tmin, tmax=tmax, baseline=baseline)`` holds for
that event: samples ``round(tmin * srate) .. round(tmax * srate)`` around the marker's sample,
both ends included, minus the per-channel mean of the ``baseline`` interval (MNE's rule for
which samples it spans). Its ``t_device`` is the time of its first sample; its ``t_origin_ns``
the stamp of the frame that completed it (the samples, or the marker when that came later).

Where a marker falls (its sample):
- ``meta["sample"]``, as is, when the markers' and the samples' StreamInfo carry the same
  ``extra["sample_clock"]`` token: the source that numbered the markers numbers these samples
  (`devices.eeg_file`, `devices.brainflow_board`). Their times cannot say as much: BrainFlow
  stamps samples as they reach the host, in bursts (a Cyton behind its USB dongle: 4 samples
  every 16 ms), so a marked sample's stamp is a few samples off ``chunk time + k / srate``. A
  node that renumbers the samples (resample) builds a new ``extra`` without the token.
- Without that token, ``meta["sample"]`` only when markers and samples are on the same named clock
  and the marker's ``t_device`` agrees with it to half a sample; the disagreement (a stream
  resampled or cut on the way) is counted (``sample_mismatch``) and the time is used instead.
- Otherwise its ``t_device`` (LSL string streams), on the samples' clock: the nearest sample,
  each chunk's samples being at its ``t_device + k / srate`` (an index <-> time map of the
  chunks still buffered, so chunk time stamps with jitter or gaps are followed).

Counted, never fatal (``figures()``): markers not in ``events`` (``ignored``), without a time or
a usable sample (``unlocated``), before the stream or whose epoch starts before its first sample
(``out_of_range``), arriving after their samples have left the buffer (``too_late``), and still
pending at the end of the stream (``incomplete``). An epoch spanning a gap in the samples (frames
dropped on a realtime edge) is cut across it, and sample numbers after the gap point past their
sample: use lossless edges for epochs.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
from pydantic import Field

from nodes.checks import check_channels, require_srate
from pipeline import Frame, FrameKind, Node, NodeParams, ParamError, StreamInfo, StreamMismatch
from pipeline.node import Figure, Output


class SampleRing:
    """The last ``size`` samples of a stream, addressed by their index since the start."""

    def __init__(self, channels: int, size: int) -> None:
        self.data = np.zeros((channels, size), np.float32)
        self.size = size
        self.end = 0  # index of the next sample to arrive

    @property
    def oldest(self) -> int:
        """Index of the oldest sample still held."""
        return max(0, self.end - self.size)

    def write(self, x: np.ndarray) -> None:
        k = x.shape[1]
        kept = x[:, max(0, k - self.size):]
        self.data[:, np.arange(self.end + k - kept.shape[1], self.end + k) % self.size] = kept
        self.end += k

    def get(self, a: int, b: int) -> np.ndarray:
        """Samples ``a .. b - 1`` (a copy); they must be held: ``oldest <= a``, ``b <= end``."""
        return self.data[:, np.arange(a, b) % self.size]


class ChunkClock:
    """Index <-> time of a sample stream, from each chunk's first-sample ``t_device``.

    Sample ``i`` of the chunk starting at index ``s`` with time ``t`` is at ``t + (i - s) /
    srate``; between chunks (jitter, gaps) a time maps to the nearest sample of either side.
    """

    def __init__(self, srate: float) -> None:
        self.srate = srate
        self.starts: list[int] = []
        self.times: list[float] = []

    def __bool__(self) -> bool:
        return bool(self.starts)

    def add(self, start: int, t: float) -> None:
        self.starts.append(start)
        self.times.append(t)

    def forget(self, before: int) -> None:
        """Drop the chunks that end before sample ``before``."""
        k = bisect_right(self.starts, before) - 1
        if k > 0:
            del self.starts[:k], self.times[:k]

    def time_of(self, i: int) -> float:
        """Time of sample ``i`` (extrapolated from the nearest chunk outside the known ones)."""
        k = max(0, bisect_right(self.starts, i) - 1)
        return self.times[k] + (i - self.starts[k]) / self.srate

    def index_of(self, t: float, end: int) -> int:
        """The sample nearest to time ``t`` among samples ``.. end - 1``: in the last chunk
        stamped at or before ``t``, or the next chunk's first (a gap, or jitter); negative when
        ``t`` is before the first known chunk (extrapolated)."""
        k = max(0, bisect_right(self.times, t) - 1)
        stop = self.starts[k + 1] if k + 1 < len(self.starts) else end
        i = min(self.starts[k] + round((t - self.times[k]) * self.srate), stop - 1)
        later = k + 1 < len(self.starts)
        if i == stop - 1 and later and self.times[k + 1] - t < t - self.time_of(i):
            return stop
        return i


@dataclass
class Marker:
    """One marker waiting for its sample, or for its epoch's last sample."""

    text: str
    label: str
    t: float | None          # its t_device
    hint: int | None         # meta["sample"], when usable
    order: int               # arrival order: ties between epochs completing together


class Epoch(Node):
    """Epochs ``tmin`` .. ``tmax`` s around each marker, as (channels x times) float32 tensors."""

    type_name = "epoch"
    inputs = ("in", "markers")
    accepts = {"in": (FrameKind.SAMPLES,), "markers": (FrameKind.MARKERS,)}

    class Params(NodeParams):
        tmin: float = Field(-0.2, description="epoch start relative to the marker (s)")
        tmax: float = Field(0.5, description="epoch end relative to the marker (s), included")
        baseline: tuple[float | None, float | None] | None = Field(
            None, description="(a, b) s: subtract each channel's mean over a..b (None: the "
                              "epoch's start / end), as MNE; none by default")
        events: dict[str, str] | list[str] | None = Field(
            None, description="markers to cut epochs at: a list, or a map marker -> label "
                              "({T1: left, T2: right}); default every marker, labelled by itself")
        max_wait: float = Field(1.0, ge=0, description="how late (s) a marker may arrive, after "
                                                       "its epoch's last sample and its own, and "
                                                       "still get its epoch")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        stream, marks, p = info["in"], info["markers"], self.params
        require_srate(stream, self.type_name)
        if p.tmax < p.tmin:
            raise ParamError("tmax", f"tmax ({p.tmax:g} s) must not be before tmin ({p.tmin:g} s)")
        if stream.clock and marks.clock and stream.clock != marks.clock:
            raise StreamMismatch(f"the markers' times are on clock {marks.clock!r}, the samples' "
                                 f"on {stream.clock!r}: markers cannot be placed in the samples")
        self.srate = stream.srate
        self.first = round(p.tmin * stream.srate)   # samples from the marker, as MNE rounds
        self.last = round(p.tmax * stream.srate)
        n_times = self.last - self.first + 1
        self.span = self._baseline_span(np.arange(self.first, self.last + 1) / stream.srate)
        token = marks.extra.get("sample_clock")
        self.trust_hint = token is not None and token == stream.extra.get("sample_clock")
        self.use_hint = self.trust_hint or (bool(stream.clock) and stream.clock == marks.clock)
        if isinstance(p.events, dict):
            self.labels: dict[str, str] | None = dict(p.events)
        else:
            self.labels = None if p.events is None else {e: e for e in p.events}
        if self.labels is not None and not self.labels:
            raise ParamError("events", "no marker to cut epochs at")
        classes = (tuple(dict.fromkeys(self.labels.values())) if self.labels is not None
                   else tuple(marks.extra.get("descriptions", ())))
        # held: the epoch, plus max_wait after both its last sample and the marker's own
        self.size = n_times + math.ceil(p.max_wait * stream.srate) + max(0, -self.last)
        self.channels = stream.n_channels
        self.reset()
        self.counts = dict.fromkeys(("epochs", "ignored", "unlocated", "out_of_range", "too_late",
                                     "incomplete", "sample_mismatch"), 0)
        extra = {"tmin": self.first / stream.srate, "tmax": self.last / stream.srate,
                 "srate": stream.srate, "baseline": list(p.baseline) if p.baseline else None,
                 "buffer_s": self.size / stream.srate, "labels": self.labels}
        return {"out": StreamInfo(FrameKind.TENSOR, 0.0, stream.channel_names, stream.units,
                                  "float32", (self.channels, n_times), class_names=classes,
                                  clock=stream.clock, extra=extra)}

    def _baseline_span(self, times: np.ndarray) -> slice | None:
        """The epoch samples the baseline mean is taken over: MNE's rule (from the first time
        >= a to the last time <= b; None ends mean the epoch's ends; one sample of slack)."""
        if self.params.baseline is None:
            return None
        a, b = self.params.baseline
        a = times[0] if a is None else a
        b = times[-1] if b is None else b
        step = 1.0 / self.srate
        if a > b or a < times[0] - step or b > times[-1] + step:
            raise ParamError("baseline", f"({a:g}, {b:g}) s must be an interval inside the epoch "
                                         f"({times[0]:g} .. {times[-1]:g} s)")
        inside = np.flatnonzero((times >= a) & (times <= b))
        if not inside.size:
            raise ParamError("baseline", f"({a:g}, {b:g}) s holds no sample at {self.srate:g} Hz")
        return slice(int(inside[0]), int(inside[-1]) + 1)

    def reset(self) -> None:
        self.ring = SampleRing(self.channels, self.size)
        self.clock = ChunkClock(self.srate)
        self.waiting: list[Marker] = []    # not placed yet: their sample has not arrived
        # heap of (last sample, arrival order, marker's sample, marker): cut in that order
        self.ready: list[tuple[int, int, int, Marker]] = []
        self.arrived = 0

    def figures(self) -> dict[str, Figure]:
        return {**self.counts, "pending": len(self.waiting) + len(self.ready)}

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        if port == "markers":
            self._markers(frame)
            self._place(self.ring.end)
            yield from self._complete(frame.t_origin_ns)
            return
        x = frame.data
        check_channels(x, self.channels)
        if _finite(frame.t_device) and x.shape[1]:
            self.clock.add(self.ring.end, frame.t_device)
        self._place(self.ring.end + x.shape[1])  # markers inside this chunk included
        # write the chunk up to each epoch's last sample and cut it there, so that a chunk
        # longer than the buffer never overwrites an epoch before it is cut
        i = 0
        while True:
            yield from self._complete(frame.t_origin_ns)
            if i == x.shape[1]:
                break
            stop = x.shape[1] if not self.ready else \
                min(x.shape[1], i + self.ready[0][0] + 1 - self.ring.end)
            self.ring.write(x[:, i:stop])
            i = stop
        self.clock.forget(self.ring.oldest)

    def close(self) -> Iterable[Output]:
        """End of stream: what is still pending can never complete."""
        self.counts["incomplete"] += len(self.waiting) + len(self.ready)
        self.waiting, self.ready = [], []
        return ()

    def _markers(self, frame: Frame) -> None:
        t = frame.t_device if _finite(frame.t_device) else None
        hint = (frame.meta or {}).get("sample")
        if not self.use_hint or not isinstance(hint, int) or isinstance(hint, bool):
            hint = None
        for text in frame.data:
            text = str(text)
            label = text if self.labels is None else self.labels.get(text)
            if label is None:
                self.counts["ignored"] += 1
            elif t is None and hint is None:
                self.counts["unlocated"] += 1
            else:
                self.waiting.append(Marker(text, label, t, hint, self.arrived))
                self.arrived += 1

    def _place(self, end: int) -> None:
        """Give each waiting marker whose sample is before ``end`` its index, then drop it
        (counted) or queue it by its epoch's last sample."""
        still = []
        for m in self.waiting:
            if m.hint is None and end and not self.clock:
                self.counts["unlocated"] += 1  # samples without times: a time alone is nowhere
                continue
            index = self._locate(m, end)
            if index is None:
                still.append(m)
            elif index < 0 or index + self.first < 0:
                self.counts["out_of_range"] += 1
            elif index + self.first < self.ring.oldest:
                self.counts["too_late"] += 1
            else:
                heapq.heappush(self.ready, (index + self.last, m.order, index, m))
        self.waiting = still

    def _locate(self, m: Marker, end: int) -> int | None:
        """The marker's sample, or None while it cannot be told yet (no samples; a time after
        the last sample)."""
        if not end:
            return None
        if m.hint is not None:  # placed at once: its epoch waits for its last sample anyway
            if self.trust_hint or m.t is None or not self.clock \
                    or abs(self.clock.time_of(m.hint) - m.t) <= 0.5 / self.srate:
                return m.hint
            self.counts["sample_mismatch"] += 1
            m.hint = None
        assert m.t is not None  # markers with neither were counted unlocated on arrival
        if m.t > self.clock.time_of(end - 1) + 0.5 / self.srate:
            return None
        return self.clock.index_of(m.t, end)

    def _complete(self, t_origin_ns: int) -> Iterable[Output]:
        """Cut every queued epoch whose last sample has arrived, in order of that sample."""
        while self.ready and self.ready[0][0] < self.ring.end:
            _, _, index, m = heapq.heappop(self.ready)
            yield "out", self._cut(m, index, t_origin_ns)

    def _cut(self, m: Marker, index: int, t_origin_ns: int) -> Frame:
        start = index + self.first
        x = self.ring.get(start, index + self.last + 1)
        if self.span is not None:
            x64 = x.astype(np.float64)
            x = (x64 - x64[:, self.span].mean(axis=1, keepdims=True)).astype(np.float32)
        self.counts["epochs"] += 1
        t_marker = m.t if m.t is not None else (self.clock.time_of(index) if self.clock else None)
        return Frame(FrameKind.TENSOR, x, t_origin_ns,
                     t_device=self.clock.time_of(start) if self.clock else None,
                     meta={"label": m.label, "marker": m.text, "sample": index,
                           "t_marker": t_marker})


def _finite(t: float | None) -> bool:
    """A usable time stamp (a device may send NaN for "unknown")."""
    return t is not None and math.isfinite(t)
