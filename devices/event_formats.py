"""Streaming readers for event files: Prophesee RAW (EVT 2.0 / EVT 3.0), Prophesee/Chronocam DAT
and N-MNIST ``.bin``, all behind one small interface (`EventReader`) that the ``event_file``
source replays.

Why streaming: event recordings run to gigabytes (an IMX636 peaks near 1 Gev/s); a reader holds
one block of the file (`BLOCK_BYTES`) and the decoder state of `kernels.prophesee`, never the
whole recording, and hands out batches of EVENT_DTYPE records as they are asked for. Whatever the
block boundaries (a word cut in two, a read that returns one byte), the events are the same.

Why our own decoders: see `kernels.prophesee` (expelliarmus is GPL-2.0; these follow Prophesee's
public format documentation).

What is found wrong is counted, never raised, once the format is known: a last word cut short
(``truncated_bytes``), words skipped before the first time high, trigger / "others" /
"continued" / undocumented words, time stepping back (``non_monotonic``); `EventReader.counters`
returns them. A file that is not the format claimed (by ``fmt``, its header or its suffix) is a
`ValueError` naming the file and what was found instead.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from kernels import prophesee as kp
from pipeline.frame import EVENT_DTYPE, copy_events

#: Bytes of the file read at a time (the reader's memory, besides the batches it returns).
BLOCK_BYTES = 4 << 20
#: Longest text header accepted (RAW / DAT): a file whose header goes on longer is not one.
MAX_HEADER_BYTES = 1 << 20
#: Formats `open_reader` knows, by ``fmt`` name.
FORMATS = ("evt2", "evt3", "dat", "nmnist")

#: Sensor size (W, H) of Prophesee plugins and sensor generations, for RAW headers that name no
#: geometry (OpenEB ``hal_psee_plugins/.../raw_constants.h`` plugins_map; Gen 4.2 = IMX636).
_PLUGIN_SIZES = {"hal_plugin_gen3_fx3": (640, 480), "hal_plugin_gen31_fx3": (640, 480),
                 "hal_plugin_gen31_evk2": (640, 480), "hal_plugin_gen31_evk3": (640, 480),
                 "hal_plugin_gen4_fx3": (1280, 720), "hal_plugin_gen4_evk2": (1280, 720),
                 "hal_plugin_gen41_evk2": (1280, 720), "hal_plugin_gen41_evk3": (1280, 720)}
_GENERATION_SIZES = {"3.0": (640, 480), "3.1": (640, 480), "4.0": (1280, 720),
                     "4.1": (1280, 720), "4.2": (1280, 720)}
_SENSOR_NAME_SIZES = {"imx636": (1280, 720), "genx320": (320, 320)}
#: Plugins whose hardware only speaks EVT 2.0 (same OpenEB table): a RAW file from them that names
#: no encoding is EVT 2.0.
_EVT2_ONLY_PLUGINS = ("hal_plugin_gen3_fx3", "hal_plugin_gen31_fx3", "hal_plugin_gen31_evk2")
#: DAT event types holding change-detection events (Event2d, EventCD), all 8 bytes.
_DAT_CD_TYPES = (0x00, 0x0C)
_DAT_TYPE_NAMES = {0x0E: "external trigger events"}


class EventReader(ABC):
    """A stream of events from a file, read a batch at a time.

    Attributes
    ----------
    sensor_size : tuple of int (W, H), or None
        From the file's header (or the format's fixed size); None when the file does not say.
    """

    sensor_size: tuple[int, int] | None = None

    @abstractmethod
    def read(self, max_events: int) -> np.ndarray | None:
        """Up to ``max_events`` next events (EVENT_DTYPE, file order; fewer at the end of a
        block, empty only where the file has a stretch without events); None at end of file."""

    @abstractmethod
    def rewind(self) -> None:
        """Back to the first event, with the decoder state reset (counters keep counting)."""

    @abstractmethod
    def counters(self) -> dict[str, int]:
        """Problems met so far (since the reader was opened, rewinds included), by name."""

    @abstractmethod
    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> EventReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Kernel = Callable[[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray], tuple[int, int]]


@dataclass(frozen=True)
class Layout:
    """How one format's data part is cut into records for its kernel."""

    kernel: Kernel
    dtype: str             # element type of a record
    per_record: int        # elements per record (records are rows when > 1)
    counters: tuple[str, ...]  # `kernels.prophesee.COUNTERS` this format can raise

    @property
    def record_bytes(self) -> int:
        return np.dtype(self.dtype).itemsize * self.per_record


LAYOUTS = {"evt3": Layout(kp.decode_evt3, "<u2", 1, kp.COUNTERS),
           "evt2": Layout(kp.decode_evt2, "<u4", 1, kp.COUNTERS),
           "dat": Layout(kp.decode_dat, "<u4", 2, ("non_monotonic",)),
           "nmnist": Layout(kp.decode_nmnist, "u1", 5, ("non_monotonic",))}


class BlockReader(EventReader):
    """Any of the four binary formats: the data part of ``file`` (from byte ``data_offset``)
    read in blocks and decoded by the format's Numba kernel, state carried across blocks.

    Parameters
    ----------
    file : binary file object
        Positioned anywhere; must be seekable for `rewind`. Short reads are fine (a pipe's).
    name : str
        The file's name, for messages.
    fmt : str
        One of `FORMATS`.
    data_offset : int
        Byte where the records start (after any header).
    sensor_size : (W, H) or None
    block_bytes : int
        Bytes read from the file at a time.
    """

    def __init__(self, file: BinaryIO, name: str, fmt: str, data_offset: int,
                 sensor_size: tuple[int, int] | None, block_bytes: int = BLOCK_BYTES,
                 truncated_bytes: int = 0) -> None:
        if block_bytes < 1:
            raise ValueError(f"block_bytes must be >= 1, got {block_bytes}")
        self.file, self.name, self.fmt = file, name, fmt
        self.layout = LAYOUTS[fmt]
        self.data_offset = data_offset
        self.sensor_size = sensor_size
        self.block_bytes = block_bytes
        self._buf = np.empty(block_bytes + self.layout.record_bytes, np.uint8)
        self._counts = kp.new_counts()
        self._truncated = truncated_bytes
        self.rewind()

    def rewind(self) -> None:
        self.file.seek(self.data_offset)
        self._state = kp.new_state()
        self._lo = self._hi = 0
        self._eof = False

    def _fill(self) -> int:
        """Move the partial record left in the buffer to its front and read after it; bytes
        read (0 at end of file, where a partial record left is counted as truncated)."""
        rest = self._hi - self._lo
        self._buf[:rest] = self._buf[self._lo:self._hi]
        self._lo, self._hi = 0, rest
        got = self.file.readinto(memoryview(self._buf)[rest:rest + self.block_bytes]) or 0
        self._hi += got
        if got == 0:
            self._eof = True
            self._truncated += rest
            self._hi = 0
        return got

    def read(self, max_events: int) -> np.ndarray | None:
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events}")
        lay = self.layout
        rec = lay.record_bytes
        out = np.empty(max_events, EVENT_DTYPE)
        words = kp.event_words(out)
        n = read_now = 0
        while n < max_events:
            whole = (self._hi - self._lo) // rec
            if whole == 0:
                if self._eof or read_now >= self.block_bytes:
                    break  # end of file, or a block read without events: return what we have
                read_now += self._fill()
                continue
            data = self._buf[self._lo:self._lo + whole * rec].view(lay.dtype)
            if lay.per_record > 1:
                data = data.reshape(whole, lay.per_record)
            k, used = lay.kernel(data, words[n:], max_events - n, self._state, self._counts)
            n += k
            self._lo += used * rec
            if used < whole:
                break  # out is full
        if n == 0 and self._eof:
            return None
        return copy_events(out[:n]) if n < len(out) // 2 else out[:n]

    def counters(self) -> dict[str, int]:
        counts = dict(zip(kp.COUNTERS, self._counts.tolist()))
        return {"truncated_bytes": self._truncated,
                **{name: counts[name] for name in self.layout.counters}}

    def close(self) -> None:
        self.file.close()


def open_reader(path: str | Path | BinaryIO, fmt: str | None = None) -> EventReader:
    """Open an event file for streaming.

    Parameters
    ----------
    path : str, Path or binary file object
        The file. ``.raw``: Prophesee RAW, EVT 2.0 or 3.0 from its ``% evt`` / ``% format``
        header line; ``.dat``: Prophesee/Chronocam DAT (change-detection events); ``.bin``:
        N-MNIST (34 x 34; N-Caltech101 shares the layout, not the size). Another suffix is
        recognized by a RAW or DAT text header. An open (seekable) binary file is read from
        its start, its ``name`` attribute (if any) standing for the path; the reader closes
        it.
    fmt : {"evt2", "evt3", "dat", "nmnist"}, optional
        Force the format (a header that says otherwise is still an error).

    Raises
    ------
    ValueError
        Unknown format or a file that is not the format claimed; the message names the file
        and what was found.
    """
    named = isinstance(path, (str, Path))
    name = str(path) if named else str(getattr(path, "name", "<stream>"))
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"{name}: unknown event file format {fmt!r}; known: "
                         f"{', '.join(FORMATS)}")
    file = open(path, "rb") if named else path
    try:
        return _open(file, name, fmt)
    except BaseException:
        file.close()
        raise


def _open(file: BinaryIO, name: str, fmt: str | None) -> BlockReader:
    file.seek(0)
    head = _read_upto(file, MAX_HEADER_BYTES + 1)
    suffix = Path(name).suffix.lower()
    claimed = fmt or {".raw": "raw", ".dat": "dat", ".bin": "nmnist"}.get(suffix)
    if claimed is None:  # sniff a text header
        lines, _ = _header_lines(name, head, b"%")
        keys = _header_keys(lines)
        claimed = "dat" if "data file containing" in keys else "raw" if lines else None
        if claimed is None:
            raise ValueError(f"{name}: unknown event file format: suffix {suffix or '(none)'!r}"
                             f" and no Prophesee text header (first bytes {head[:16]!r}); "
                             f"known: .raw (EVT 2.0/3.0), .dat, .bin (N-MNIST)")
    if claimed in ("raw", "evt2", "evt3"):
        return _open_raw(file, name, head, fmt)
    if claimed == "dat":
        return _open_dat(file, name, head)
    return _open_nmnist(file, name, head)


def _read_upto(file: BinaryIO, size: int) -> bytes:
    """``size`` bytes, or fewer at the end of the file (a read may return less than asked)."""
    parts = []
    while size > 0 and (part := file.read(size)):
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _header_lines(name: str, head: bytes, start: bytes) -> tuple[list[str], int]:
    """The text header lines at the start of ``head`` (each begins with ``start``; printable
    text only, so that binary data that happens to begin with ``start`` is not taken for a line)
    and the byte where the data begins. A ``% end`` line ends the header (RAW)."""
    lines: list[str] = []
    pos = 0
    while head.startswith(start, pos):
        end = head.find(b"\n", pos)
        if end < 0:
            if len(head) > MAX_HEADER_BYTES:
                raise ValueError(f"{name}: text header longer than {MAX_HEADER_BYTES} bytes: "
                                 f"not an event file")
            end = len(head)  # the file ends inside its header: no data
        line = head[pos:end].rstrip(b"\r")
        if any(b < 0x20 and b != 0x09 for b in line):
            break
        lines.append(line.decode("utf-8", "replace"))
        pos = min(end + 1, len(head))
        if line.strip() == b"% end":
            break
    return lines, pos


def _header_keys(lines: list[str]) -> dict[str, str]:
    """``{keyword (lower case): value}`` of header lines ``% keyword value``; DAT's
    ``% Data file containing X`` gives ``{"data file containing": X}``."""
    keys: dict[str, str] = {}
    for line in lines:
        text = line.lstrip("%").strip()
        if text.lower().startswith("data file containing"):
            keys["data file containing"] = text[len("data file containing"):].strip()
            continue
        key, _, value = text.partition(" ")
        if key:
            keys[key.lower()] = value.strip()
    return keys


def _raw_encoding(name: str, keys: dict[str, str]) -> str | None:
    """``evt2`` / ``evt3`` as the RAW header says, None if it does not say; a ValueError for an
    encoding we do not decode."""
    found = None
    if "evt" in keys:
        found = {"2.0": "evt2", "3.0": "evt3"}.get(keys["evt"])
        if found is None:
            raise ValueError(f"{name}: RAW encoding 'evt {keys['evt']}' is not supported "
                             f"(supported: evt 2.0, evt 3.0)")
    if "format" in keys:
        enc = keys["format"].split(";")[0].strip().upper()
        by_format = {"EVT2": "evt2", "EVT3": "evt3"}.get(enc)
        if by_format is None:
            raise ValueError(f"{name}: RAW format {enc!r} is not supported (supported: EVT2, "
                             f"EVT3)")
        if found is not None and found != by_format:
            raise ValueError(f"{name}: header contradicts itself: 'evt {keys['evt']}' and "
                             f"'format {keys['format']}'")
        found = by_format
    if found is None and keys.get("plugin_name") in _EVT2_ONLY_PLUGINS:
        found = "evt2"
    return found


def _raw_sensor_size(keys: dict[str, str]) -> tuple[int, int] | None:
    """(W, H) from a RAW header: ``format`` options, ``geometry``, ``width``/``height``, the
    plugin name, the sensor generation; None if none of them says."""
    opts = dict(o.split("=", 1) for o in keys.get("format", "").split(";")[1:] if "=" in o)
    geometry = re.fullmatch(r"(\d+)\s*x\s*(\d+)", keys.get("geometry", ""))
    size = (_size(opts.get("width"), opts.get("height"))
            or (geometry and _size(geometry[1], geometry[2]))
            or _size(keys.get("width"), keys.get("height")))
    if size:
        return size
    plugin = keys.get("plugin_name", "")
    if plugin in _PLUGIN_SIZES:
        return _PLUGIN_SIZES[plugin]
    for gen_key in ("sensor_generation", "generation"):
        if keys.get(gen_key) in _GENERATION_SIZES:
            return _GENERATION_SIZES[keys[gen_key]]
    for sensor, size in _SENSOR_NAME_SIZES.items():
        if sensor in plugin.lower():
            return size
    return None


def _size(width: str | None, height: str | None) -> tuple[int, int] | None:
    """(W, H) from two header values, None unless both are positive integers."""
    if width and height and width.strip().isdigit() and height.strip().isdigit():
        w, h = int(width), int(height)
        return (w, h) if w > 0 and h > 0 else None
    return None


def _open_raw(file: BinaryIO, name: str, head: bytes, fmt: str | None) -> BlockReader:
    lines, pos = _header_lines(name, head, b"% ")
    keys = _header_keys(lines)
    if "data file containing" in keys:
        raise ValueError(f"{name}: a DAT file ('% Data file containing "
                         f"{keys['data file containing']}'), not Prophesee RAW")
    encoding = _raw_encoding(name, keys)
    if fmt in ("evt2", "evt3"):
        if encoding is not None and encoding != fmt:
            raise ValueError(f"{name}: asked to read {fmt} but the header says {encoding}")
        encoding = fmt
    elif fmt is not None:
        raise ValueError(f"{name}: asked to read {fmt} but the file has a Prophesee RAW header")
    if encoding is None:
        found = ", ".join(lines[:8]) if lines else f"no '% ' header (first bytes {head[:16]!r})"
        raise ValueError(f"{name}: not a Prophesee RAW file this reader can decode: no "
                         f"'% evt' or '% format' header line (found: {found}); give fmt="
                         f"'evt2' or 'evt3' if you know the encoding")
    return BlockReader(file, name, encoding, pos, _raw_sensor_size(keys))


def _open_dat(file: BinaryIO, name: str, head: bytes) -> BlockReader:
    lines, pos = _header_lines(name, head, b"%")
    keys = _header_keys(lines)
    if "data file containing" not in keys:
        found = ", ".join(lines[:4]) if lines else f"first bytes {head[:16]!r}"
        raise ValueError(f"{name}: not a DAT file: no '% Data file containing' header line "
                         f"(found: {found})")
    type_size = head[pos:pos + 2]
    if len(type_size) == 2:
        kind, size = type_size
        if kind not in _DAT_CD_TYPES or size != 8:
            what = _DAT_TYPE_NAMES.get(kind, f"event type {kind}")
            raise ValueError(f"{name}: DAT file of {what} with {size}-byte events; only "
                             f"change-detection events (type 0 or 12, 8 bytes) are decoded")
    size = _size(keys.get("width"), keys.get("height"))
    # a file cut inside its type/size bytes has no events; the byte it has is counted
    return BlockReader(file, name, "dat", pos + 2, size,
                       truncated_bytes=len(type_size) if len(type_size) < 2 else 0)


def _open_nmnist(file: BinaryIO, name: str, head: bytes) -> BlockReader:
    if head[:1] in (b"%", b"#"):
        first = head[:head.find(b"\n")][:60] if b"\n" in head else head[:60]
        raise ValueError(f"{name}: not an N-MNIST .bin file: it begins with a text header "
                         f"({first!r})")
    return BlockReader(file, name, "nmnist", 0, (34, 34))
