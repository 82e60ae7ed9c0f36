"""Replay an event-camera recording as if the camera were streaming it.

Formats: Prophesee RAW (EVT 2.0, EVT 3.0) and DAT, and N-MNIST ``.bin``, through our own Numba
decoders (`devices.event_formats`: the common Python decoder for them is GPL); AEDAT4 (iniVation)
through dv-processing (`devices.aedat4`); our own ``.npy`` event arrays (`devices.event_npy`).
The file is decoded in blocks, never whole, so its length does not bound memory.

Events are released in batches cut either by recording time (``window_us``: every batch spans
that much of the recording's clock; an empty stretch sends nothing) or by ``count``. A batch goes
out when the recording's time reaches its end, on the recording's own schedule (``speed:
realtime`` or a multiple), or as fast as the graph takes it (``speed: max``: use lossless edges).
Times are the recording's own µs (``clock: file``); with ``loop`` every pass is shifted to start
1 µs after the previous one ended, so time keeps increasing. A batch's ``t_device`` is its first
event's time in seconds.

The decoders count what they could not decode (a truncated last word, unknown words); those
counts are this node's live figures. Times going backwards in a file are passed on as they are
(the event nodes downstream count them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Mapping

import numpy as np
from pydantic import Field, model_validator

from devices.aedat4 import Aedat4Reader
from devices.event_formats import EventReader, open_reader
from devices.event_npy import NpyEventReader
from devices.pacing import Speed, speed_factor, wait_until
from pipeline import Frame, FrameKind, NodeParams, ParamError, Source, StreamInfo
from pipeline.clock import now_ns
from pipeline.frame import EVENT_DTYPE, concat_events, copy_events
from pipeline.node import Figure, Output

#: Events asked of a decoder at a time (a batch may need several reads).
READ_EVENTS = 1 << 16
#: Most reads in one ``read`` call (a long batch, or a looped file shorter than a window, takes
#: several calls, so that a stop request is seen in between).
READS_PER_CALL = 64
NOT_YET = object()
Format = Literal["auto", "evt2", "evt3", "dat", "nmnist", "aedat4", "npy"]


def open_events(path: Path, fmt: str = "auto") -> EventReader:
    """A reader for ``path``: by ``fmt``, or by the suffix and header (``auto``).

    Raises
    ------
    ValueError
        Naming the file, for a missing file, an unknown format or an unreadable header.
    """
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if fmt == "aedat4" or (fmt == "auto" and suffix == ".aedat4"):
        return Aedat4Reader(path)
    if fmt == "npy" or (fmt == "auto" and suffix == ".npy"):
        return NpyEventReader(path)
    return open_reader(path, None if fmt == "auto" else fmt)


class EventFile(Source):
    """An event recording (RAW EVT2/EVT3, DAT, N-MNIST, AEDAT4, .npy) replayed in real time or
    faster, in batches cut by time or by count."""

    type_name = "event_file"
    outputs = ("out",)

    class Params(NodeParams):
        path: str = Field(description="recording: .raw (Prophesee EVT2/EVT3), .dat, .bin "
                                      "(N-MNIST), .aedat4, .npy (EVENT_DTYPE or t/x/y/p fields)")
        format: Format = Field("auto", description="file format; auto: by suffix and header")
        speed: Speed = "realtime"
        window_us: int | None = Field(1000, ge=1, description="batch by recording time: µs per "
                                                              "batch (unless count is given)")
        count: int | None = Field(None, ge=1, le=50_000_000, description="batch by count: events "
                                                                         "per batch")
        sensor_size: tuple[int, int] | None = Field(
            None, description="(width, height) for a file whose header has none; overrides the "
                              "header's")
        loop: bool = Field(False, description="start again at the end (times keep increasing)")

        @model_validator(mode="after")
        def _one_slicing(self) -> EventFile.Params:
            if self.count is None and self.window_us is None:
                raise ValueError("give window_us or count")
            return self

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        p = self.params
        try:
            self.reader = open_events(Path(p.path), p.format)
        except ValueError as e:
            raise ParamError("path", str(e)) from None
        size = p.sensor_size or self.reader.sensor_size
        if size is None:
            raise ParamError("sensor_size", f"{p.path}: the file does not say its sensor size; "
                                            f"give sensor_size: [width, height]")
        if min(size) <= 0:
            raise ParamError("sensor_size", f"sensor size must be > 0, got {list(size)}")
        self.speed = speed_factor(p.speed)
        self.reset()
        return {"out": StreamInfo(FrameKind.EVENTS, dtype="events",
                                  sensor_size=(int(size[0]), int(size[1]), 2), clock="file",
                                  extra={"file": str(p.path)})}

    def reset(self) -> None:
        self.reader.rewind()
        self.pending = np.empty(0, EVENT_DTYPE)  # decoded, not yet sent (times shifted)
        self.eof = False
        self.shift = 0           # µs added to the file's times on this pass (loop)
        self.first_t: int | None = None  # the file's first time (pacing origin, loop shift)
        self.last_t: int | None = None   # last time sent, shifted
        self.window_end: int | None = None
        self.ready: tuple[np.ndarray, int] | None = None  # the batch waiting for its time
        self.t_start: int | None = None
        self.events = 0
        self.laps = 0

    def _fill(self, need: int | None, until_t: int | None) -> bool:
        """Decode until ``pending`` holds ``need`` events or an event at or after ``until_t``, or
        the file (with ``loop``: a pass) ends; True when that is so, False when READS_PER_CALL
        reads were not enough (the caller comes back: a stop request is seen in between)."""
        parts = [self.pending]
        have = len(self.pending)
        last = int(self.pending["t"][-1]) if have else None
        done = False
        for _ in range(READS_PER_CALL):
            done = self.eof or (need is not None and have >= need) \
                or (until_t is not None and last is not None and last >= until_t)
            if done:
                break
            block = self.reader.read(READ_EVENTS)
            if block is None:
                if not self.params.loop or self.first_t is None:
                    self.eof = True
                    continue
                tail = parts[-1]["t"][-1] if have else self.last_t
                self.shift = int(tail) + 1 - self.first_t  # next pass starts 1 µs later
                self.reader.rewind()
                self.laps += 1
                continue
            if not len(block):
                continue
            if self.first_t is None:
                self.first_t = int(block["t"][0])
            if self.shift:
                block = copy_events(block)
                block["t"] += self.shift
            parts.append(block)
            have += len(block)
            last = int(block["t"][-1])
        if len(parts) > 1:
            self.pending = concat_events(parts)
        return done

    def _next_batch(self) -> tuple[np.ndarray, int] | None | object:
        """The next batch to send and the recording time (µs, shifted) at which it is complete;
        None at the end of the file; NOT_YET when more reads are needed to know."""
        p = self.params
        if p.count is not None:
            if not self._fill(p.count, None):
                return NOT_YET
            if not len(self.pending):
                return None
            batch = self.pending[:p.count]
            return batch, int(batch["t"][-1])
        w = p.window_us
        while True:
            if self.window_end is None:
                if not self._fill(1, None):
                    return NOT_YET
                if not len(self.pending):
                    return None
                self.window_end = int(self.pending["t"][0]) + w
            if not self._fill(None, self.window_end):
                return NOT_YET
            if not len(self.pending):
                return None
            end = self.window_end
            n = int(np.searchsorted(self.pending["t"], end, side="left"))
            if n == 0:  # an empty stretch: on to the window that holds the next event
                self.window_end += ((int(self.pending["t"][0]) - end) // w + 1) * w
                continue
            self.window_end += w
            return self.pending[:n], end

    def read(self) -> list[Output] | None:
        if self.t_start is None:
            self.t_start = now_ns()
        if self.ready is None:
            found = self._next_batch()
            if found is None:
                return None
            if found is NOT_YET:
                return []
            self.ready = found
        batch, complete_t = self.ready
        if self.speed and not wait_until(
                self.t_start + int((complete_t - self.first_t) * 1000 / self.speed)):
            return []  # not due yet (a stop request is looked at between the waits)
        self.ready = None
        self.pending = self.pending[len(batch):]
        self.events += len(batch)
        self.last_t = int(batch["t"][-1])
        return [("out", Frame(FrameKind.EVENTS, batch, now_ns(),
                              t_device=int(batch["t"][0]) / 1e6))]

    def figures(self) -> dict[str, Figure]:
        return {"events": self.events, "laps": self.laps, **self.reader.counters()}

    def close(self) -> list[Output]:
        self.reader.close()
        return []
