"""Event recordings as NumPy ``.npy`` files: EVENT_DTYPE records any tool can ``np.load``.

Why ``.npy``: it is the plainest container there is (a header and the records, memory-mappable),
so what a graph recorded opens in NumPy, Tonic or a notebook without us. The sensor size and the
clock, which ``.npy`` has no place for, go into a JSON sidecar (``PATH.json``).

Writing appends records as they come and rewrites the fixed-size header with the new count at
every flush, so a file cut short by a crash still opens, holding what was flushed. Reading maps
the file and accepts any structured array with ``t``, ``x``, ``y``, ``p`` fields (Tonic's
``x, y, t, p`` order too), converted to EVENT_DTYPE batch by batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npformat

from devices.event_formats import EventReader
from pipeline.frame import EVENT_DTYPE, copy_events

#: Header bytes reserved at the start of the file: room for any count (a multiple of 64).
HEADER_BYTES = 192
FIELDS = ("t", "x", "y", "p")


def sidecar(path: str | Path) -> Path:
    """The JSON file beside an ``.npy`` recording: ``{"sensor_size": [W, H, P], "clock": ...}``."""
    return Path(f"{path}.json")


class NpyEventWriter:
    """Append EVENT_DTYPE batches to ``path``; ``flush`` makes what was written readable."""

    def __init__(self, path: str | Path, sensor_size: tuple[int, ...] | None, clock: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file: BinaryIO = open(self.path, "wb", buffering=1 << 20)
        self.count = 0
        self._header()
        sidecar(self.path).write_text(json.dumps(
            {"sensor_size": list(sensor_size) if sensor_size else None, "clock": clock}))

    def _header(self) -> None:
        head = {"descr": npformat.dtype_to_descr(EVENT_DTYPE), "fortran_order": False,
                "shape": (self.count,)}
        text = repr(head).encode("latin1")
        pad = HEADER_BYTES - 10 - len(text) - 1
        assert pad >= 0, "HEADER_BYTES too small for the header"
        self.file.write(b"\x93NUMPY\x01\x00" + (HEADER_BYTES - 10).to_bytes(2, "little")
                        + text + b" " * pad + b"\n")

    def write(self, events: np.ndarray) -> None:
        self.file.write(memoryview(np.ascontiguousarray(events, EVENT_DTYPE)).cast("B"))
        self.count += len(events)

    def flush(self) -> None:
        """Rewrite the header with the count so far."""
        self.file.flush()
        end = self.file.tell()
        self.file.seek(0)
        self._header()
        self.file.seek(end)
        self.file.flush()

    def close(self) -> None:
        self.flush()
        self.file.close()


class NpyEventReader(EventReader):
    """An ``.npy`` event array, mapped, handed out ``max_events`` at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as e:
            raise ValueError(f"{path}: not a readable .npy file: {e}") from None
        names = self.array.dtype.names or ()
        if self.array.ndim != 1 or not set(FIELDS) <= set(names):
            raise ValueError(f"{path}: an event array is 1-D with fields t, x, y, p; this one is "
                             f"{self.array.dtype} of shape {list(self.array.shape)}")
        meta = json.loads(sidecar(path).read_text()) if sidecar(path).exists() else {}
        size = meta.get("sensor_size")
        self.sensor_size: tuple[int, int] | None = (int(size[0]), int(size[1])) if size else None
        self.same_layout = self.array.dtype == EVENT_DTYPE
        self.pos = 0

    def read(self, max_events: int) -> np.ndarray | None:
        if self.pos >= len(self.array):
            return None
        part = self.array[self.pos:self.pos + max_events]
        self.pos += len(part)
        if self.same_layout:
            return copy_events(part)  # off the map: frames outlive the reader
        out = np.zeros(len(part), EVENT_DTYPE)  # padding zero too
        for name in FIELDS:
            out[name] = part[name]
        return out

    def rewind(self) -> None:
        self.pos = 0

    def counters(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        self.array = None
