"""Record a stream to a file, losslessly: our own ``.nfr`` for any stream, FIF or XDF for EEG,
``.npy`` for events.

The format follows the path's extension.

``.nfr`` reuses the wire codec, so a recording holds exactly what crossed the edge::

    b"NFREC1\\n"  u32 length + JSON {"node", "info": StreamInfo}
    then per frame:  u32 header length, header (pipeline.codec),  u64 payload length, payload

A file cut short (a crash, a full disk) reads back up to its last whole frame and says so.

``.fif`` / ``.fif.gz`` (MNE's format, read by ``mne.io.read_raw_fif``) holds a ``samples`` stream
and, given a ``markers`` input, its markers as annotations; so any EEG tool can open what a graph
recorded. MNE writes a FIF file in one go, so the samples are kept in memory (4 bytes per sample
and channel, and up to 8 more while the file is written) until close; ``max_duration`` bounds that,
and samples past it are counted (``dropped_samples``), not written. Exactness: the file stores
the stream's float32 numbers themselves, and each channel's FIF calibration ``cal`` (a float32
in the file) turns them into SI units: 1e-6 for µV, so MNE reads volts, and
``raw.get_data(units="uV")`` cast to float32 gives back the recorded samples bit for bit (any
unit: ``raw.get_data() / cal``; ``units="mV"`` is not exact, float32(1e-3) is too far off). The
``cal`` in memory is the float32 value too, so what MNE reads equals what it was given, bit for
bit, in float64 (a volt value is off by float32(1e-6) / 1e-6 - 1 = -2.5e-9, relative). Voltage
channels (V, mV, µV) are typed ``eeg``, others ``misc`` with ``cal`` 1.

``.npy`` holds an events stream as one EVENT_DTYPE array that NumPy opens (`devices.event_npy`:
the count in its header is rewritten at every flush, the sensor size goes to ``PATH.json``);
``event_file`` replays it. Frames dropped on the way in are counted (``gaps``).

A marker's onset is placed on the samples' own time axis when both streams name the same clock
(``t_device``, as ``eeg_file`` sends them), else by host time (``t_origin_ns``, when a chunk's
newest sample was read: to within the transport of the chunk that carried the marker); either
way from the last chunk before it, so a device running off its nominal rate does not drift the
markers. Its ``meta["duration"]`` (s) becomes the annotation's duration. Frames
dropped on the way in (a gap in ``seq``: record over lossless edges) are counted (``gaps``) and
marked with a ``BAD_gap`` annotation where the time axis jumps.
"""

from __future__ import annotations

import bisect
import json
import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Mapping

import mne
import numpy as np
from pydantic import Field

from nodes.checks import require_srate
from pipeline.units import VOLTS, to_lsl
from devices.event_npy import NpyEventWriter
from devices.xdf import XDFWriter, stream_header
from pipeline import Frame, FrameKind, NodeParams, ParamError, Sink, StreamInfo, StreamMismatch
from pipeline.clock import now_ns
from pipeline.codec import FrameDecodeError, decode, encode_header, payload_of
from pipeline.node import Figure, Output

MAGIC = b"NFREC1\n"
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
FLUSH_EVERY_NS = 1_000_000_000
FIF_SUFFIXES = (".fif", ".fif.gz")
GAP = "BAD_gap"


class Recorder(Sink):
    """Write a stream to ``path``: every frame (``.nfr``), or samples and markers (``.fif``,
    ``.xdf``).

    A ``.fif`` or ``.xdf`` recorder takes markers on its optional second input, ``markers``.
    """

    type_name = "recorder"
    inputs = ("in", "markers")
    optional = ("markers",)

    class Params(NodeParams):
        path: str = Field(description="output file: .nfr (any stream, every frame as on the "
                                      "wire), .fif / .fif.gz (a samples stream, written at "
                                      "close), .xdf (samples and markers, as they come) or "
                                      ".npy (an events stream)")
        max_duration: float = Field(3600.0, gt=0, description=".fif: seconds of samples held in "
                                                              "memory until close; later ones are "
                                                              "counted as dropped_samples")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        path = Path(self.params.path)
        if path.name.endswith(".nfr"):
            self.file: NfrFile | FifFile | XdfFile = NfrFile(path, self.name, info)
        elif path.name.endswith(FIF_SUFFIXES):
            self.file = FifFile(path, info, self.params.max_duration)
        elif path.name.endswith(".xdf"):
            self.file = XdfFile(path, self.name, info)
        elif path.name.endswith(".npy"):
            self.file = NpyFile(path, info)
        else:
            raise ParamError("path", f"{path}: unknown extension; a recording is .nfr (any "
                                     f"stream), {' / '.join(FIF_SUFFIXES)} or .xdf (EEG samples "
                                     f"and markers), .npy (events)")
        return {}

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        self.file.write(port, frame)
        return ()

    def close(self) -> Iterable[Output]:
        self.file.close()
        return ()

    def figures(self) -> dict[str, Figure]:
        return self.file.figures()


class NfrFile:
    """Every frame of one stream, appended as it arrives (flushed each second and at close)."""

    def __init__(self, path: Path, node: str, info: Mapping[str, StreamInfo]) -> None:
        if set(info) != {"in"}:
            raise StreamMismatch("a .nfr recording holds one stream; record markers with a "
                                 "second recorder, or use a .fif path")
        self.path, self.node, self.info = path, node, info["in"]
        self.file: BinaryIO | None = None

    def _open(self) -> BinaryIO:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "wb", buffering=1 << 20)
        head = json.dumps({"node": self.node, "info": self.info.to_dict()}).encode()
        f.write(MAGIC + _U32.pack(len(head)) + head)
        self.last_flush = now_ns()
        return f

    def write(self, port: str, frame: Frame) -> None:
        f = self.file or self._open()
        self.file = f
        header = encode_header(frame)
        payload = payload_of(frame)
        f.write(_U32.pack(len(header)))
        f.write(header)
        f.write(_U64.pack(payload.nbytes))
        f.write(memoryview(payload).cast("B"))
        if now_ns() - self.last_flush > FLUSH_EVERY_NS:
            f.flush()
            self.last_flush = now_ns()

    def close(self) -> None:
        if self.file is None:  # nothing arrived: still leave a valid, empty recording
            self.file = self._open()
        self.file.close()

    def figures(self) -> dict[str, Figure]:
        return {}


class FifFile:
    """A samples stream (port ``in``) and its markers (port ``markers``), written at close."""

    def __init__(self, path: Path, info: Mapping[str, StreamInfo], max_duration: float) -> None:
        stream, markers = info["in"], info.get("markers")
        if stream.kind is not FrameKind.SAMPLES:
            raise StreamMismatch(f"a .fif recording holds a samples stream on 'in', not "
                                 f"{stream.kind.value}; record it as .nfr")
        require_srate(stream, "a .fif recording")
        if markers is not None and markers.kind is not FrameKind.MARKERS:
            raise StreamMismatch(f"input 'markers' takes a markers stream, not "
                                 f"{markers.kind.value}")
        self.path, self.srate = path, stream.srate
        n = stream.n_channels
        names = list(stream.channel_names) or [f"ch{i + 1}" for i in range(n)]
        units = stream.units or ("",) * n
        self.info = mne.create_info(names, stream.srate,
                                    ["eeg" if u in VOLTS else "misc" for u in units],
                                    verbose="error")
        # FIF keeps cal as float32: hold that value, so the file stores our numbers themselves
        self.cal = np.array([np.float32(VOLTS.get(u, 1.0)) for u in units], np.float64)
        for ch, cal in zip(self.info["chs"], self.cal):
            ch["cal"] = float(cal)
        self.device_clock = markers is not None and markers.clock != "" \
            and markers.clock == stream.clock
        self.max_samples = int(max_duration * stream.srate)
        self.chunks: deque[np.ndarray] = deque()
        self.n = 0                  # samples kept
        self.dropped = 0            # samples past max_duration
        self.last_seq: int | None = None
        self.anchors: list[tuple[float, int]] = []  # (t_device, its sample) per chunk
        self.host_anchors: list[tuple[float, int]] = []  # (t_origin_ns in s, newest sample)
        self.gaps: list[int] = []   # samples at which dropped frames were missing
        self.markers: list[tuple[float | None, int, list[str], float]] = []
        self.outside = 0            # markers beyond the recorded samples

    def write(self, port: str, frame: Frame) -> None:
        if port == "markers":
            duration = float((frame.meta or {}).get("duration") or 0.0)
            self.markers.append((frame.t_device, frame.t_origin_ns,
                                 [str(d) for d in frame.data], duration))
        else:
            self._samples(frame)

    def _samples(self, frame: Frame) -> None:
        x = frame.data
        if x.ndim != 2 or x.shape[0] != len(self.cal):
            raise ValueError(f"frame of shape {list(x.shape)}; the stream has {len(self.cal)} "
                             f"channels")
        take = min(x.shape[1], self.max_samples - self.n)
        self.dropped += x.shape[1] - take
        if take <= 0:
            return
        jumped = self.last_seq is not None and frame.seq > self.last_seq + 1
        self.last_seq = frame.seq
        if jumped:
            self.gaps.append(self.n)
        # every chunk anchors both time axes, so a device whose true rate is off its nominal
        # one (or a gap) does not drift the markers placed after it
        if frame.t_device is not None:
            self.anchors.append((frame.t_device, self.n))
        self.host_anchors.append((frame.t_origin_ns / 1e9, self.n + x.shape[1] - 1))
        self.chunks.append(x[:, :take])
        self.n += take

    def _onset(self, t_device: float | None, t_origin_ns: int) -> float:
        """Seconds from the first recorded sample to a marker: from the last chunk anchored at or
        before it (half a sample early still counts), on the device clock when the markers share
        it, else on host time (a chunk's ``t_origin_ns`` is when its newest sample was read)."""
        if self.device_clock and t_device is not None and self.anchors:
            anchors, t = self.anchors, t_device
        else:
            anchors, t = self.host_anchors, t_origin_ns / 1e9
        k = bisect.bisect_right(anchors, (t + 0.5 / self.srate, np.inf))
        t_anchor, sample = anchors[max(k - 1, 0)]
        return sample / self.srate + (t - t_anchor)

    def annotations(self) -> mne.Annotations:
        """The markers and gaps as annotations (markers outside the samples counted, left out)."""
        onset, duration, description = [], [], []
        self.outside = 0
        for t_device, t_origin_ns, texts, dur in self.markers:
            t = self._onset(t_device, t_origin_ns)
            if not 0 <= t < self.n / self.srate:
                self.outside += 1
                continue
            for text in texts:
                onset.append(t)
                duration.append(dur)
                description.append(text)
        for sample in self.gaps:
            onset.append(sample / self.srate)
            duration.append(0.0)
            description.append(GAP)
        return mne.Annotations(onset, duration, description)

    def close(self) -> None:
        if not self.n:
            raise RuntimeError(f"{self.path}: no samples arrived, nothing written (a FIF file "
                               f"cannot hold an empty recording)")
        data = np.empty((len(self.cal), self.n))
        pos = 0
        while self.chunks:  # free each chunk once copied
            chunk = self.chunks.popleft()
            data[:, pos:pos + chunk.shape[1]] = chunk
            pos += chunk.shape[1]
        data *= self.cal[:, None]
        raw = mne.io.RawArray(data, self.info, verbose="error")
        raw.set_annotations(self.annotations(), verbose="error")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        raw.save(self.path, fmt="single", overwrite=True, verbose="error")

    def figures(self) -> dict[str, Figure]:
        return {"samples": self.n, "dropped_samples": self.dropped, "gaps": len(self.gaps),
                "markers": len(self.markers), "markers_outside": self.outside}


class XdfFile:
    """A samples stream (port ``in``) and its markers (port ``markers``) as two XDF streams,
    appended as frames arrive (nothing held in memory; a crash loses only the footers).

    Time stamps are the frames' ``t_device`` (per sample: ``t_device + i / srate``) when the
    samples name a clock and the markers, if any, the same one; otherwise host time, which is
    LSL's ``local_clock`` (a samples frame's ``t_origin_ns`` is its newest sample's).
    """

    def __init__(self, path: Path, node: str, info: Mapping[str, StreamInfo]) -> None:
        stream, markers = info["in"], info.get("markers")
        if stream.kind is not FrameKind.SAMPLES:
            raise StreamMismatch(f"an .xdf recording holds a samples stream on 'in', not "
                                 f"{stream.kind.value}; record it as .nfr")
        if markers is not None and markers.kind is not FrameKind.MARKERS:
            raise StreamMismatch(f"input 'markers' takes a markers stream, not "
                                 f"{markers.kind.value}")
        self.path, self.node, self.stream = path, node, stream
        self.has_markers = markers is not None
        self.device_clock = stream.clock != "" and (markers is None or markers.clock == stream.clock)
        self.writer: XDFWriter | None = None
        self.samples = self.markers = self.gaps = 0
        self.last_seq: int | None = None

    def _open(self) -> XDFWriter:
        s, n = self.stream, self.stream.n_channels
        self.path.parent.mkdir(parents=True, exist_ok=True)
        w = XDFWriter(self.path)
        w.add_stream(1, stream_header(
            self.node, "EEG", "float32", s.srate,
            s.channel_names or [f"ch{i + 1}" for i in range(n)],
            [to_lsl(u) for u in s.units], ["EEG" if u in VOLTS else "MISC" for u in s.units],
            source_id=f"neuroflow-{self.node}", channel_count=n))
        if self.has_markers:
            w.add_stream(2, stream_header(f"{self.node}-markers", "Markers", "string", 0.0,
                                          source_id=f"neuroflow-{self.node}-markers",
                                          channel_count=1))
        return w

    def write(self, port: str, frame: Frame) -> None:
        w = self.writer = self.writer or self._open()
        if port == "markers":
            t = frame.t_device if self.device_clock and frame.t_device is not None \
                else frame.t_origin_ns / 1e9
            w.write(2, [[str(d)] for d in frame.data], np.full(len(frame.data), t))
            self.markers += len(frame.data)
            return
        x = frame.data
        if x.ndim != 2 or x.shape[0] != self.stream.n_channels:
            raise ValueError(f"frame of shape {list(x.shape)}; the stream has "
                             f"{self.stream.n_channels} channels")
        if self.last_seq is not None and frame.seq > self.last_seq + 1:
            self.gaps += 1
        self.last_seq = frame.seq
        k = np.arange(x.shape[1]) / (self.stream.srate or np.inf)
        stamps = frame.t_device + k if self.device_clock and frame.t_device is not None \
            else frame.t_origin_ns / 1e9 - k[::-1]
        w.write(1, x.T, stamps)
        self.samples += x.shape[1]

    def close(self) -> None:
        (self.writer or self._open()).close()

    def figures(self) -> dict[str, Figure]:
        return {"samples": self.samples, "markers": self.markers, "gaps": self.gaps}


class NpyFile:
    """An events stream as one ``.npy`` array, appended as frames arrive (flushed each second)."""

    def __init__(self, path: Path, info: Mapping[str, StreamInfo]) -> None:
        stream = info["in"]
        if set(info) != {"in"} or stream.kind is not FrameKind.EVENTS:
            raise StreamMismatch(f"a .npy recording holds one events stream, not "
                                 f"{', '.join(i.kind.value for i in info.values())}; record "
                                 f"it as .nfr")
        self.path, self.stream = path, stream
        self.writer: NpyEventWriter | None = None
        self.gaps = 0
        self.last_seq: int | None = None

    def _open(self) -> NpyEventWriter:
        self.last_flush = now_ns()
        return NpyEventWriter(self.path, self.stream.sensor_size, self.stream.clock)

    def write(self, port: str, frame: Frame) -> None:
        w = self.writer = self.writer or self._open()
        if self.last_seq is not None and frame.seq > self.last_seq + 1:
            self.gaps += 1
        self.last_seq = frame.seq
        w.write(frame.data)
        if now_ns() - self.last_flush > FLUSH_EVERY_NS:
            w.flush()
            self.last_flush = now_ns()

    def close(self) -> None:
        (self.writer or self._open()).close()

    def figures(self) -> dict[str, Figure]:
        return {"events": self.writer.count if self.writer else 0, "gaps": self.gaps}


@dataclass
class Recording:
    """A recording read back: its stream info, its frames, and whether the file was cut short."""

    info: StreamInfo
    node: str
    frames: list[Frame]
    truncated: bool


def read_recording(path: str | Path) -> Recording:
    """Read an ``.nfr`` file.

    Raises
    ------
    ValueError
        If the file is not a recording (bad magic or header) or a frame in it is corrupt.
    """
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise ValueError(f"{path}: not a neuroflow recording (bad magic)")
    pos = len(MAGIC)
    (n,) = _U32.unpack_from(data, pos)
    try:
        head = json.loads(data[pos + 4:pos + 4 + n])
        info = StreamInfo.from_dict(head["info"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: corrupt recording header: {e}") from None
    frames: list[Frame] = []
    end = pos + 4 + n
    for start, stop, header, payload in _records(data, end):
        try:
            frames.append(decode([b"", header, payload]))
        except FrameDecodeError as e:
            raise ValueError(f"{path}: corrupt frame at byte {start}: {e}") from None
        end = stop
    return Recording(info, head.get("node", ""), frames, truncated=end != len(data))


def _records(data: bytes, pos: int) -> Iterator[tuple[int, int, memoryview, memoryview]]:
    """(start, end, header, payload) of each whole record from ``pos`` on."""
    view = memoryview(data)
    while pos + 4 <= len(data):
        start = pos
        (hn,) = _U32.unpack_from(data, pos)
        pos += 4
        if pos + hn + 8 > len(data):
            return
        header = view[pos:pos + hn]
        pos += hn
        (pn,) = _U64.unpack_from(data, pos)
        pos += 8
        if pos + pn > len(data):
            return
        yield start, pos + pn, header, view[pos:pos + pn]
        pos += pn
