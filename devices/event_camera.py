"""A live event camera: iniVation cameras over USB or a DV network stream (dv-processing), and
Prophesee cameras through the Metavision SDK when it is importable.

Why dv-processing: it is iniVation's own driver library (Apache-2.0, the ``[events]`` extra); its
readers hand each packet over as a NumPy array with our EVENT_DTYPE layout (no copy). A DV network
stream (``source: network``, TCP ``host:port``, or ``socket``: a local socket path) is what the DV
software and ``dv.io.NetworkWriter`` publish, so one camera can feed several graphs.

Polling: the readers never block, so ``read`` asks every ``poll`` s (≤ 1 ms by default) and sends
each packet as it arrives, stamped when read. A camera or stream that goes away (unplugged, the
publisher killed) is seen through ``isRunning()``, counted (``losses``), and opened again with
exponential back-off (``backoff`` doubling up to ``backoff_max``); the graph keeps running.

What was exercised here (no camera on this machine): the network and socket paths, against a
real ``dv.io.NetworkWriter`` publishing a real recording in another process, killed and restarted
(tests/test_event_camera.py). The USB path uses the same reader interface through
``dv.io.camera.open`` but has not run against a camera. The Metavision path
(``metavision_core.event_io.EventsIterator``) is written to the SDK's documented interface and has
never run here (the SDK is not on PyPI).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal, Mapping

import numpy as np
from pydantic import Field

from devices.aedat4 import import_dv
from devices.pacing import MAX_BLOCK_S
from pipeline import Frame, FrameKind, NodeParams, ParamError, Source, StreamInfo
from pipeline.clock import now_ns
from pipeline.frame import EVENT_DTYPE
from pipeline.node import Figure, Output

log = logging.getLogger(__name__)


class EventCamera(Source):
    """Live events from an iniVation camera (USB), a DV network stream, or a Prophesee camera."""

    type_name = "event_camera"
    outputs = ("out",)

    class Params(NodeParams):
        source: Literal["usb", "network", "socket", "metavision"] = Field(
            "usb", description="usb: an iniVation camera; network: a DV TCP stream; socket: a "
                               "DV local-socket stream; metavision: a Prophesee camera")
        serial: str | None = Field(None, description="usb / metavision: the camera's serial "
                                                     "(default: the first one found)")
        address: str = Field("127.0.0.1:7777", description="network: host:port of the stream")
        path: str | None = Field(None, description="socket: the stream's socket path")
        sensor_size: tuple[int, int] | None = Field(
            None, description="(width, height); default: asked of the camera at validation")
        poll: float = Field(0.001, gt=0, le=MAX_BLOCK_S, description="seconds between checks "
                                                                     "for a packet")
        backoff: float = Field(0.1, gt=0, description="first reconnection delay (s), doubled "
                                                      "after each failed attempt")
        backoff_max: float = Field(5.0, gt=0, description="longest reconnection delay (s)")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        p = self.params
        if p.source == "socket" and not p.path:
            raise ParamError("path", "source: socket needs the stream's socket path")
        size = p.sensor_size
        if size is None:
            try:
                reader = self._open_reader()
            except (RuntimeError, ValueError, OSError) as e:
                raise ParamError("source", f"{self._label()}: cannot be opened to ask its sensor "
                                           f"size ({e}); connect it, or give sensor_size") from None
            size = tuple(int(v) for v in reader.getEventResolution())
            del reader
        self._init_state()
        return {"out": StreamInfo(FrameKind.EVENTS, dtype="events",
                                  sensor_size=(int(size[0]), int(size[1]), 2), clock="unix",
                                  extra={"camera": self._label()})}

    def _label(self) -> str:
        p = self.params
        where = {"usb": p.serial or "first USB camera", "network": p.address,
                 "socket": p.path, "metavision": p.serial or "first Prophesee camera"}[p.source]
        return f"{self.name} ({p.source} {where})"

    def _open_reader(self) -> Any:
        """A reader with ``getNextEventBatch``, ``isRunning`` and ``getEventResolution``."""
        p = self.params
        if p.source == "metavision":
            return _MetavisionReader(p.serial)
        dv = import_dv()
        if p.source == "usb":
            return dv.io.camera.open(p.serial) if p.serial else dv.io.camera.open()
        if p.source == "socket":
            return dv.io.NetworkReader(p.path)
        host, _, port = p.address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"address must be host:port, got {p.address!r}")
        return dv.io.NetworkReader(host, int(port))

    def _init_state(self) -> None:
        self.reader: Any = None
        self.next_attempt_ns = 0
        self.failures = 0
        self.connected_once = False
        self.events = self.packets = self.losses = self.reconnects = 0

    def open(self) -> None:
        self._connect()

    def _connect(self) -> None:
        try:
            self.reader = self._open_reader()
        except (RuntimeError, ValueError, OSError) as e:
            p = self.params
            wait = min(p.backoff * 2.0 ** self.failures, p.backoff_max)
            self.failures += 1
            self.next_attempt_ns = now_ns() + int(wait * 1e9)
            log.warning("%s: cannot connect (%s); retrying in %.2f s", self._label(), e, wait)
            return
        if self.connected_once:
            self.reconnects += 1
            log.warning("%s: connected again", self._label())
        self.connected_once, self.failures = True, 0

    def read(self) -> list[Output] | None:
        if self.reader is None:
            wait = (self.next_attempt_ns - now_ns()) / 1e9
            if wait > 0:
                time.sleep(min(wait, MAX_BLOCK_S))
                return []
            self._connect()
            return []
        deadline = now_ns() + int(MAX_BLOCK_S * 1e9)
        while True:
            batch = self.reader.getNextEventBatch()
            if batch is not None:
                events = _as_events(batch)
                if len(events):
                    break
            elif not self.reader.isRunning():
                self.losses += 1
                self.reader = None
                self.next_attempt_ns = now_ns()  # the first retry is at once, then back-off
                log.warning("%s: lost", self._label())
                return []
            if now_ns() > deadline:
                return []
            time.sleep(self.params.poll)
        self.events += len(events)
        self.packets += 1
        return [("out", Frame(FrameKind.EVENTS, events, now_ns(),
                              t_device=int(events["t"][0]) / 1e6))]

    def figures(self) -> dict[str, Figure]:
        return {"events": self.events, "packets": self.packets, "losses": self.losses,
                "reconnects": self.reconnects, "connected": int(self.reader is not None)}

    def close(self) -> list[Output]:
        self.reader = None
        return []


def _as_events(batch: Any) -> np.ndarray:
    """A dv ``EventStore`` (or an array already converted) as EVENT_DTYPE records."""
    if isinstance(batch, np.ndarray):
        return batch
    return batch.numpy().view(EVENT_DTYPE)


class _MetavisionReader:
    """The Metavision SDK's live camera behind the dv reader interface (never run here)."""

    def __init__(self, serial: str | None) -> None:
        try:
            from metavision_core.event_io import EventsIterator
        except ImportError:
            raise ValueError("source: metavision needs Prophesee's Metavision SDK "
                             "(metavision_core), which is not installed") from None
        self.it = EventsIterator(input_path=serial or "", delta_t=1000)
        self.height, self.width = self.it.get_size()
        self.events = iter(self.it)
        self.running = True

    def getEventResolution(self) -> tuple[int, int]:  # noqa: N802 (the dv interface)
        return self.width, self.height

    def isRunning(self) -> bool:  # noqa: N802
        return self.running

    def getNextEventBatch(self) -> np.ndarray | None:  # noqa: N802
        try:
            cd = next(self.events)  # blocks for up to delta_t of events
        except StopIteration:
            self.running = False
            return None
        out = np.zeros(len(cd), EVENT_DTYPE)
        out["t"], out["x"], out["y"], out["p"] = cd["t"], cd["x"], cd["y"], cd["p"]
        return out
