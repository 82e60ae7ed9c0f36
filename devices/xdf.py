"""XDF, the Lab Streaming Layer's file format: read as an MNE Raw (via pyxdf), and written chunk
by chunk (LabRecorder's layout).

Reading is pyxdf's job (the reference reader: clock synchronisation, dejittering); `read_xdf`
turns one of the file's streams into an MNE Raw, and every string stream into annotations at
their nearest sample, so ``eeg_file`` replays XDF like any other format.

Writing is ours: XDF is what LabRecorder writes and the LSL world reads (pyxdf, MNE-LSL, EEGLAB),
but the Python writers are parts of larger applications. The format is small
(github.com/sccn/xdf/wiki/Specifications): ``b"XDF:"``, then chunks of
``[length bytes: 1|4|8][length][tag u16][content]``; a stream has a header (XML), sample chunks
(``[stream id u32][count][per sample: 8, stamp f64, values]``), clock offsets and a footer (XML).
The tests read every file we write with pyxdf.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, Sequence
from xml.sax.saxutils import escape

import mne
import numpy as np
import pyxdf

from pipeline.units import VOLTS, from_lsl

MAGIC = b"XDF:"
FILE_HEADER, STREAM_HEADER, SAMPLES, CLOCK_OFFSET, BOUNDARY, STREAM_FOOTER = 1, 2, 3, 4, 5, 6
#: XDF channel formats of the numpy dtypes we write.
FORMATS = {np.dtype(np.float32): "float32", np.dtype(np.float64): "double64",
           np.dtype(np.int32): "int32", np.dtype(np.int16): "int16"}


def _varlen(n: int) -> bytes:
    """XDF's variable-length integer: one byte saying how many bytes follow (1, 4 or 8)."""
    if n < 256:
        return struct.pack("<BB", 1, n)
    if n < 1 << 32:
        return struct.pack("<BI", 4, n)
    return struct.pack("<BQ", 8, n)


def stream_header(name: str, kind: str, channel_format: str, srate: float,
                  labels: Sequence[str] = (), units: Sequence[str] = (),
                  types: Sequence[str] = (), source_id: str = "",
                  channel_count: int | None = None) -> str:
    """The ``<info>`` XML of a stream, with LSL's channel meta-data conventions."""
    n = channel_count if channel_count is not None else len(labels)
    chans = "".join(
        "<channel>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in
                              (("label", lab), ("unit", unit), ("type", typ)) if v) + "</channel>"
        for lab, unit, typ in zip(labels, list(units) or [""] * n, list(types) or [""] * n))
    return (f'<?xml version="1.0"?><info><name>{escape(name)}</name><type>{escape(kind)}</type>'
            f"<channel_count>{n}</channel_count><nominal_srate>{srate!r}</nominal_srate>"
            f"<channel_format>{channel_format}</channel_format>"
            f"<source_id>{escape(source_id)}</source_id>"
            f"<desc>{'<channels>' + chans + '</channels>' if chans else ''}</desc></info>")


class XDFWriter:
    """An XDF file being written: streams declared up front, samples appended as they come.

    Parameters
    ----------
    path : path-like
        Output file (``.xdf``).
    """

    def __init__(self, path: str | Path) -> None:
        self.file: BinaryIO = open(path, "wb")
        self.file.write(MAGIC)
        self._chunk(FILE_HEADER, b'<?xml version="1.0"?><info><version>1.0</version></info>')
        self.formats: dict[int, str] = {}
        self.counts: dict[int, int] = {}
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def _chunk(self, tag: int, content: bytes) -> None:
        self.file.write(_varlen(len(content) + 2) + struct.pack("<H", tag) + content)

    def add_stream(self, stream_id: int, header_xml: str) -> None:
        """Declare a stream (its XML from `stream_header`) before its first samples."""
        fmt = header_xml.split("<channel_format>")[1].split("<")[0]
        self.formats[stream_id], self.counts[stream_id] = fmt, 0
        self._chunk(STREAM_HEADER, struct.pack("<I", stream_id) + header_xml.encode())

    def write(self, stream_id: int, values: np.ndarray | Sequence[Sequence[str]],
              stamps: np.ndarray) -> None:
        """Append samples: ``values`` is (n x channels), numbers of the stream's format or
        strings; ``stamps`` the n time stamps (s)."""
        n = len(stamps)
        if not n:
            return
        out = [struct.pack("<I", stream_id), _varlen(n)]
        if self.formats[stream_id] == "string":
            for sample, t in zip(values, stamps):
                out.append(struct.pack("<Bd", 8, t))
                for v in sample:
                    b = str(v).encode()
                    out += [_varlen(len(b)), b]
        else:
            x = np.asarray(values).reshape(n, -1)
            dtype = "<f8" if self.formats[stream_id] == "double64" else \
                "<" + np.dtype(self.formats[stream_id]).str[1:]
            # one packed record per sample: [8][stamp f64][values]
            rec = np.empty(n, np.dtype([("n", "u1"), ("t", "<f8"), ("v", dtype, x.shape[1])]))
            rec["n"], rec["t"], rec["v"] = 8, stamps, x
            out.append(rec.tobytes())
        self._chunk(SAMPLES, b"".join(out))
        self.counts[stream_id] += n
        self.first.setdefault(stream_id, float(stamps[0]))
        self.last[stream_id] = float(stamps[-1])

    def close(self) -> None:
        """Write every stream's footer and close the file."""
        for sid, count in self.counts.items():
            for t in {self.first.get(sid, 0.0), self.last.get(sid, 0.0)}:  # one clock: offset 0
                self._chunk(CLOCK_OFFSET, struct.pack("<Idd", sid, t, 0.0))
            footer = (f'<?xml version="1.0"?><info><first_timestamp>{self.first.get(sid, 0.0)!r}'
                      f"</first_timestamp><last_timestamp>{self.last.get(sid, 0.0)!r}"
                      f"</last_timestamp><sample_count>{count}</sample_count></info>")
            self._chunk(STREAM_FOOTER, struct.pack("<I", sid) + footer.encode())
        self.file.close()


class XDFError(ValueError):
    """An XDF file that cannot be replayed: unreadable, cut short, or without a usable stream;
    ``field`` is the parameter to blame (``path``, or ``stream`` when the wanted one is absent)."""

    def __init__(self, message: str, field: str = "path") -> None:
        super().__init__(message)
        self.field = field


def _channels(stream: dict) -> tuple[list[str], list[str], list[str]]:
    """Labels, our units and lower-case types of a pyxdf stream's channels (defaults when the
    header has no channel meta-data)."""
    info = stream["info"]
    n = int(info["channel_count"][0])
    desc = (info.get("desc") or [None])[0] or {}
    chans = ((desc.get("channels") or [{}])[0] or {}).get("channel") or []
    first = lambda c, k: (c.get(k) or [""])[0] or ""  # noqa: E731
    if len(chans) != n:
        chans = [{}] * n
    labels = [first(c, "label") or f"ch{i + 1}" for i, c in enumerate(chans)]
    units = [from_lsl(first(c, "unit") or None) for c in chans]
    types = [first(c, "type").lower() for c in chans]
    return labels, units, types


def read_xdf(path: Path, stream: str | None = None, allow_truncated: bool = False) -> mne.io.RawArray:
    """One regular numeric stream of an XDF file as an MNE Raw, with every string stream's samples
    as annotations at their nearest sample.

    Parameters
    ----------
    path : Path
        The ``.xdf`` file.
    stream : str or None
        Name or type of the stream to replay; default the first regular numeric stream of type
        EEG, else the first regular numeric stream.
    allow_truncated : bool
        Replay a file cut short (no stream footer) instead of refusing it.

    Raises
    ------
    XDFError
        Naming the file and the problem (and the streams it holds, when the wanted one is absent).
    """
    try:
        streams, _ = pyxdf.load_xdf(str(path), verbose=False)
    except Exception as e:  # pyxdf raises what the file provokes: struct, XML, IO errors
        raise XDFError(f"{path}: cannot be read as XDF: {type(e).__name__}: {e}") from None
    if not streams:
        raise XDFError(f"{path}: no stream could be read from it (not XDF, or corrupt)")
    fmt = lambda s: s["info"]["channel_format"][0]  # noqa: E731
    name = lambda s: s["info"]["name"][0]  # noqa: E731
    kind = lambda s: s["info"]["type"][0]  # noqa: E731
    regular = [s for s in streams if fmt(s) != "string" and float(s["info"]["nominal_srate"][0]) > 0
               and len(s["time_stamps"])]
    chosen = [s for s in regular if stream in (name(s), kind(s))] if stream is not None \
        else sorted(regular, key=lambda s: kind(s).upper() != "EEG")
    if not chosen:
        held = "; ".join(f"'{name(s)}' (type '{kind(s)}', {fmt(s)}, "
                         f"{len(s['time_stamps'])} samples)" for s in streams) or "none"
        wanted = f"stream named or typed '{stream}'" if stream else "regular numeric stream"
        raise XDFError(f"{path}: no {wanted} with samples; the file holds: {held}",
                       "stream" if stream else "path")
    s = chosen[0]
    cut = [name(x) for x in streams if not x.get("footer")]
    if cut and not allow_truncated:
        raise XDFError(f"{path}: the file is truncated or corrupt (no footer for stream(s) "
                       f"{', '.join(cut)}); set allow_truncated: true to replay what it holds")
    labels, units, types = _channels(s)
    is_eeg = kind(s).upper() == "EEG"
    volts = [VOLTS.get(u, VOLTS["uV"] if is_eeg and u == "NA" else 0.0) for u in units]
    ch_types = [t if t in ("eeg", "eog", "emg", "ecg") else ("eeg" if v else "misc")
                for t, v in zip(types, volts)]
    data = np.asarray(s["time_series"], np.float64).T * np.array([v or 1.0 for v in volts])[:, None]
    srate = float(s["info"]["nominal_srate"][0])
    raw = mne.io.RawArray(data, mne.create_info(labels, srate, ch_types), verbose="error")
    stamps = s["time_stamps"]
    onset, description = [], []
    for m in (x for x in streams if fmt(x) == "string"):
        for t, values in zip(m["time_stamps"], m["time_series"]):
            i = int(np.clip(np.searchsorted(stamps, t), 1, len(stamps) - 1))
            i -= int(t - stamps[i - 1] < stamps[i] - t)  # the nearer neighbour
            if abs(stamps[i] - t) <= 0.5 / srate:  # inside the samples (or half a period out)
                onset.append(i / srate)
                description.append("/".join(str(v) for v in values))
    raw.set_annotations(mne.Annotations(onset, 0.0, description), verbose="error")
    return raw
