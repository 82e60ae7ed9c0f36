"""Lab Streaming Layer in and out: ``lsl_inlet`` (a source) and ``lsl_outlet`` (a sink), via pylsl.

LSL is how most EEG amplifiers, stimulus programs and recorders (LabRecorder) talk on a lab
network; these nodes make a graph one more LSL citizen.

Clocks (DESIGN.md §6). LSL stamps every sample with the producer's ``local_clock()``, which on
one host is this host's monotonic clock (``time.monotonic``, the clock of ``t_origin_ns``). The inlet
puts ``t_device`` on *this* host's LSL clock (StreamInfo ``clock: lsl``):

- ``clock: lsl`` (default): ``stamp + time_correction()``, the offset liblsl measures to the
  producer's host in its own thread, off the data path, refreshed at most once a second;
- ``clock: arrival``: for a producer whose stamps are not on its ``local_clock`` (a device's own
  clock, a deliberate offset): ``stamp + offset`` with the offset estimated from arrival times by
  the minimum-delay filter of `devices.timing.StreamTiming`.

Measured vs nominal rate, gaps, the clock offset and the arrival lag are live figures. The outlet
stamps samples with their ``t_device`` when that is already on the LSL clock, else with their
acquisition time (``t_origin_ns``, the same monotonic clock), so a consumer sees when the data was
acquired, not when it left the graph.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Iterable, Literal, Mapping

import numpy as np
import pylsl
from pylsl.util import LostError, TimeoutError as LSLTimeout
from pydantic import Field

from devices.timing import StreamTiming
from nodes.checks import check_channels
from pipeline.units import from_lsl, to_lsl
from pipeline import Frame, FrameKind, NodeParams, ParamError, Sink, Source, StreamInfo
from pipeline.clock import now_ns
from pipeline.node import Figure, Output

log = logging.getLogger(__name__)

#: Longest a ``read`` blocks waiting for the first sample, so that a stop is seen promptly.
WAIT_S = 0.1
#: Seconds between two looks at liblsl's clock offset (it re-measures in its own thread).
CORRECTION_EVERY_S = 1.0
#: Back-off between attempts to find a lost stream again: doubles up to this many seconds.
MAX_BACKOFF_S = 5.0
#: How long resolution keeps listening after a first match, to catch a second one.
DUPLICATE_WAIT_S = 1.0


#: Our parameter for each LSL stream property (``type`` names the node type in a graph file).
_PROPERTY = {"name": "name", "stream_type": "type", "source_id": "source_id"}


def _predicate(wanted: Mapping[str, str]) -> str:
    """An LSL XPath query from ``{parameter: value}``; refuses quotes it could not escape."""
    for field, value in wanted.items():
        if "'" in value:
            raise ParamError(field, f"{value!r}: quotes are not allowed in an LSL query")
    return " and ".join(f"{_PROPERTY[k]}='{v}'" for k, v in wanted.items())


def describe(info: pylsl.StreamInfo) -> str:
    """One line naming an LSL stream the way a user would recognise it."""
    rate = f"{info.nominal_srate():g} Hz" if info.nominal_srate() else "irregular"
    return (f"'{info.name()}' (type '{info.type()}', {info.channel_count()} ch @ {rate}, "
            f"source_id '{info.source_id()}', on {info.hostname()})")


def resolve(wanted: Mapping[str, str], timeout: float, field: str) -> pylsl.StreamInfo:
    """The one LSL stream matching ``wanted``; a `ParamError` on ``field`` naming what was looked for
    and what was found when there is none or more than one."""
    query = _predicate(wanted)
    found = pylsl.resolve_bypred(query, 1, timeout)  # returns as soon as one answers...
    if found:  # ...so listen a little longer for a second one: reading the wrong amplifier is worse
        found += pylsl.resolve_bypred(query, 2, DUPLICATE_WAIT_S)
    unique = list({s.uid(): s for s in found}.values())
    if len(unique) > 1:
        raise ParamError(field, f"{len(unique)} LSL streams match {query}: "
                                f"{'; '.join(describe(s) for s in unique)}; add source_id to choose")
    if not unique:
        seen = pylsl.resolve_streams(wait_time=1.0)
        listing = "; ".join(describe(s) for s in seen) if seen else "none"
        raise ParamError(field, f"no LSL stream matches {query} within {timeout:g} s; "
                                f"streams seen: {listing}")
    return unique[0]


def same_shape(a: pylsl.StreamInfo, b: pylsl.StreamInfo) -> bool:
    """Whether stream ``b`` can stand in for ``a`` (a producer that came back): same channel count,
    format and rate, so every frame still fits the stream info the graph was built with."""
    return (a.channel_count(), a.channel_format(), a.nominal_srate()) == \
        (b.channel_count(), b.channel_format(), b.nominal_srate())


class LSLInlet(Source):
    """Samples or markers from an LSL stream, found by name / type / source_id."""

    type_name = "lsl_inlet"
    outputs = ("out",)

    class Params(NodeParams):
        name: str | None = Field(None, description="stream name to look for")
        stream_type: str | None = Field(None, description="stream type to look for ('EEG', 'Markers'); "
                                        "not 'type', which names the node type")
        source_id: str | None = Field(None, description="stream source_id to look for")
        timeout: float = Field(10.0, gt=0, description="seconds to wait for the stream to appear")
        max_chunk: int = Field(1024, ge=1, description="most samples per frame")
        clock: Literal["lsl", "arrival"] = Field(
            "lsl", description="'lsl': stamps + time_correction(); 'arrival': stamps mapped "
                               "onto this host by arrival times (producers off their clock)")
        dejitter: bool = Field(False, description="smooth stamps of a regular stream "
                                                  "(liblsl's proc_dejitter)")
        buffer_s: float = Field(30.0, gt=0, description="seconds liblsl buffers while the graph "
                                                        "is busy (older data is dropped)")
        stall: float = Field(2.0, ge=0, description="regular streams: seconds of silence after "
                                                    "which the stream counts as lost and is "
                                                    "looked for again (0: never)")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        p = self.params
        wanted = {k: getattr(p, k) for k in _PROPERTY if getattr(p, k) is not None}
        if not wanted:
            raise ParamError("name", "give the name, stream_type or source_id of the LSL stream "
                                     "to read")
        self.wanted, self.field = wanted, next(iter(wanted))
        self.lsl_info = resolve(wanted, p.timeout, self.field)
        # resolution carries no meta-data: the channel labels come with the full header
        full = pylsl.StreamInlet(self.lsl_info).info(timeout=p.timeout)
        self.strings = self.lsl_info.channel_format() == pylsl.cf_string
        self.srate = self.lsl_info.nominal_srate()
        n = self.lsl_info.channel_count()
        extra = {"lsl": describe(self.lsl_info), "lsl_clock": p.clock}
        if self.strings:
            return {"out": StreamInfo(FrameKind.MARKERS, self.srate, dtype="unicode", clock="lsl",
                                      extra=extra)}
        labels = full.get_channel_labels() or []
        names = tuple(lab or f"ch{i + 1}" for i, lab in enumerate(labels)) if len(labels) == n \
            else tuple(f"ch{i + 1}" for i in range(n))
        units = full.get_channel_units() or []
        units = tuple(from_lsl(u) for u in units) if len(units) == n else ()
        return {"out": StreamInfo(FrameKind.SAMPLES, self.srate, names, units, "float32", (n,),
                                  clock="lsl", extra=extra)}

    def open(self) -> None:
        self.inlet: pylsl.StreamInlet | None = None
        self.timing = StreamTiming(self.srate)
        self.reconnects = 0
        self.retry_at = 0.0
        self.backoff = 0.1
        self.finder = ThreadPoolExecutor(1, thread_name_prefix=f"lsl:{self.name}")
        self.job: Future[tuple[pylsl.StreamInlet, float] | None] | None = None
        self._use(*self._connect(self.lsl_info))

    def _connect(self, info: pylsl.StreamInfo) -> tuple[pylsl.StreamInlet, float]:
        """An open inlet on ``info`` and liblsl's first clock offset to it (blocks up to twice
        ``timeout``: called from ``open`` or the finder thread, never from ``read``)."""
        p = self.params
        flags = (pylsl.proc_dejitter | pylsl.proc_monotonize) if p.dejitter else 0
        inlet = pylsl.StreamInlet(info, max_buflen=int(np.ceil(p.buffer_s)), recover=True,
                                  processing_flags=flags)
        inlet.open_stream(timeout=p.timeout)
        correction = inlet.time_correction(timeout=p.timeout) if p.clock == "lsl" else 0.0
        return inlet, correction

    def _use(self, inlet: pylsl.StreamInlet, correction: float) -> None:
        self.correction, self.corrected_at = correction, time.monotonic()
        self.last_data = time.monotonic()
        dtype = np.float32 if inlet.np_dtype is None else inlet.np_dtype
        self.buffer = np.empty((self.params.max_chunk, inlet.channel_count), dtype)
        self.inlet = inlet

    def _lost(self, error: Exception | str) -> None:
        log.warning("lsl_inlet %r: stream lost (%s); looking for %s again", self.name, error,
                    _predicate(self.wanted))
        self.inlet.close_stream()  # type: ignore[union-attr]
        self.inlet = None
        self.retry_at = time.monotonic()

    def _find(self) -> tuple[pylsl.StreamInlet, float] | None:
        """In the finder thread: the stream again (maybe under a new uid), if it has the shape the
        graph was built for; None when it is not (back) yet."""
        for info in pylsl.resolve_bypred(_predicate(self.wanted), 1, 1.0):
            if same_shape(self.lsl_info, info):
                return self._connect(info)
            log.warning("lsl_inlet %r: %s came back with another shape (was %s); still looking",
                        self.name, describe(info), describe(self.lsl_info))
        return None

    def _reconnect(self) -> None:
        """One step of finding the lost stream, never blocking ``read`` longer than WAIT_S."""
        if self.job is None and time.monotonic() >= self.retry_at:
            self.job = self.finder.submit(self._find)
        if self.job is None:  # backing off
            time.sleep(WAIT_S)
            return
        if not self.job.done():
            wait([self.job], timeout=WAIT_S)
            return
        job, self.job = self.job, None
        try:
            found = job.result()
        except (LostError, LSLTimeout, RuntimeError) as e:
            log.warning("lsl_inlet %r: reconnect failed: %s", self.name, e)
            found = None
        if found is None:
            self.retry_at = time.monotonic() + self.backoff
            self.backoff = min(2 * self.backoff, MAX_BACKOFF_S)
            return
        self._use(*found)
        self.reconnects += 1
        self.backoff = 0.1
        log.warning("lsl_inlet %r: reconnected", self.name)

    def _refresh_correction(self) -> None:
        """liblsl's latest offset estimate (cached by liblsl: no network round trip here)."""
        if self.params.clock == "lsl" and time.monotonic() - self.corrected_at > CORRECTION_EVERY_S:
            self.corrected_at = time.monotonic()
            try:
                self.correction = self.inlet.time_correction(timeout=0.0)  # type: ignore[union-attr]
            except LSLTimeout:
                pass  # keep the last estimate; liblsl is re-measuring

    def read(self) -> list[Output] | None:
        if self.inlet is None:
            self._reconnect()
            return []
        try:
            if self.strings:
                values, stamps = self.inlet.pull_chunk(WAIT_S, self.params.max_chunk,
                                                       min_samples=1)
            else:
                values, stamps = None, self.inlet.pull_chunk(
                    WAIT_S, self.params.max_chunk, dest_obj=self.buffer, min_samples=1)[1]
        except LostError as e:
            self._lost(e)
            return []
        if not len(stamps):
            # liblsl waits for a lost producer silently (pylsl gives every stream a source_id);
            # silence on a regular stream is how a producer that died or changed shape shows
            silent = time.monotonic() - self.last_data
            if self.srate and self.params.stall and silent > self.params.stall:
                self._lost(f"no data for {silent:.1f} s")
            return []
        t0 = now_ns()
        self.last_data = t0 / 1e9
        self._refresh_correction()
        stamps = np.asarray(stamps, np.float64)
        if self.params.clock == "lsl":
            self.timing.update(stamps, t0 / 1e9, self.correction)
            times = stamps + self.correction
        else:
            self.timing.update(stamps, t0 / 1e9)
            times = stamps + self.timing.offset
        if self.strings:
            return [("out", Frame(FrameKind.MARKERS, np.array(v, dtype=str), t0,
                                  t_device=float(t))) for v, t in zip(values, times)]
        # a copy always (one-sample chunks would otherwise be a view of the reused buffer)
        data = np.array(self.buffer[:len(stamps)].T, dtype=np.float32, order="C")
        return [("out", Frame(FrameKind.SAMPLES, data, t0, t_device=float(times[0])))]

    def figures(self) -> dict[str, Figure]:
        timing = getattr(self, "timing", None)
        out = timing.figures() if timing is not None else {}
        out["connected"] = getattr(self, "inlet", None) is not None
        out["reconnects"] = getattr(self, "reconnects", 0)
        if self.params.clock == "lsl":
            out["time_correction_ms"] = round(getattr(self, "correction", 0.0) * 1e3, 3)
        return out

    def close(self) -> Iterable[Output]:
        if getattr(self, "finder", None) is not None:
            self.finder.shutdown(wait=False, cancel_futures=True)  # a search ends on its own
        if getattr(self, "inlet", None) is not None:
            self.inlet.close_stream()  # type: ignore[union-attr]
            self.inlet = None
        return ()


class LSLOutlet(Sink):
    """Publish samples, or markers / commands, as an LSL stream with full channel meta-data."""

    type_name = "lsl_outlet"
    accepts = {"in": (FrameKind.SAMPLES, FrameKind.MARKERS, FrameKind.CONTROL)}

    class Params(NodeParams):
        name: str | None = Field(None, description="stream name (default: the node's name)")
        stream_type: str | None = Field(None, description="stream type (default 'EEG' for samples, "
                                                          "'Markers' for strings)")
        source_id: str | None = Field(None, description="unique id, so that inlets recover after "
                                                        "a restart (default: neuroflow-NAME)")
        channel_type: str | None = Field(None, description="type of each channel in the meta-data "
                                                           "(default: the stream type)")
        chunk_size: int = Field(0, ge=0, description="samples per network packet (0: as pushed)")
        max_buffered: float = Field(60.0, gt=0, description="seconds kept for a slow consumer")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        stream, p = info["in"], self.params
        self.strings = stream.kind is not FrameKind.SAMPLES
        self.stream = stream
        name = p.name or self.name
        kind = p.stream_type or ("Markers" if self.strings else "EEG")
        n = 1 if self.strings else stream.n_channels
        self.lsl_info = pylsl.StreamInfo(name, kind, n, 0.0 if self.strings else stream.srate,
                                         pylsl.cf_string if self.strings else pylsl.cf_float32,
                                         p.source_id or f"neuroflow-{name}")
        if not self.strings:
            channels = self.lsl_info.desc().append_child("channels")
            units = stream.units or ("",) * n
            for label, unit in zip(stream.channel_names or [f"ch{i + 1}" for i in range(n)], units):
                ch = channels.append_child("channel")
                ch.append_child_value("label", label)
                ch.append_child_value("unit", to_lsl(unit))
                ch.append_child_value("type", p.channel_type or kind)
        acq = self.lsl_info.desc().append_child("acquisition")
        acq.append_child_value("manufacturer", "neuroflow")
        acq.append_child_value("node", self.name)
        self.on_lsl_clock = stream.clock == "lsl"
        return {}

    def open(self) -> None:
        """The outlet appears on the network now, before the first frame, so consumers can
        connect in time for it."""
        self.outlet = pylsl.StreamOutlet(self.lsl_info, self.params.chunk_size,
                                         int(np.ceil(self.params.max_buffered)))

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        x = frame.data
        if self.strings:
            t = frame.t_device if self.on_lsl_clock and frame.t_device is not None \
                else frame.t_origin_ns / 1e9
            for value in x:
                self.outlet.push_sample([str(value)], t)
            return ()
        check_channels(x, self.stream.n_channels)
        n = x.shape[1]
        if self.on_lsl_clock and frame.t_device is not None and self.stream.srate:
            last = frame.t_device + (n - 1) / self.stream.srate
        else:
            last = frame.t_origin_ns / 1e9  # acquisition of the chunk: its newest sample
        self.outlet.push_chunk(np.ascontiguousarray(x.T), last)
        return ()

    def close(self) -> Iterable[Output]:
        self.outlet = None  # liblsl withdraws the stream when the outlet is freed
        return ()
