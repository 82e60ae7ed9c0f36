"""Record frames to a file, losslessly, and read them back.

The ``.nfr`` format reuses the wire codec, so a recording holds exactly what crossed the edge::

    b"NFREC1\\n"  u32 length + JSON {"node", "info": StreamInfo}
    then per frame:  u32 header length, header (pipeline.codec),  u64 payload length, payload

A file cut short (a crash, a full disk) reads back up to its last whole frame and says so.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Mapping

from pydantic import Field

from pipeline import Frame, NodeParams, Sink, StreamInfo
from pipeline.clock import now_ns
from pipeline.codec import FrameDecodeError, decode, encode_header, payload_of
from pipeline.node import Output

MAGIC = b"NFREC1\n"
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
FLUSH_EVERY_NS = 1_000_000_000


class Recorder(Sink):
    """Write every frame to an ``.nfr`` file (flushed each second and at end of stream)."""

    type_name = "recorder"

    class Params(NodeParams):
        path: str = Field(description="output file (.nfr)")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        self.info = info["in"]
        self.file: BinaryIO | None = None
        return {}

    def _open(self) -> BinaryIO:
        path = Path(self.params.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "wb", buffering=1 << 20)
        head = json.dumps({"node": self.name, "info": self.info.to_dict()}).encode()
        f.write(MAGIC + _U32.pack(len(head)) + head)
        self.last_flush = now_ns()
        return f

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
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
        return ()

    def close(self) -> Iterable[Output]:
        if self.file is None:  # nothing arrived: still leave a valid, empty recording
            self.file = self._open()
        self.file.close()
        return ()


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
