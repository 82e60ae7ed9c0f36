"""Replay an EEG recording as if a headset were streaming it: every format MNE reads, and XDF.

Why MNE: EDF/BDF, FIF, GDF, BrainVision and EEGLAB readers are hard to get right and MNE's are the
reference; we only pace the samples and turn annotations into markers. The file is read in
blocks (never all of it at once), converted to float32 in µV for voltage channels (other
channels keep their SI unit), and released ``chunk`` samples at a time: on the recording's own
schedule (``speed: realtime`` or a multiple), or as fast as the graph takes them (``speed: max``:
use lossless edges). Each annotation becomes one ``markers`` frame, sent right after the
samples chunk that holds its onset sample, with ``t_device`` on the same clock as the samples'
(seconds from the first sample, ``clock: file``) and ``meta = {"sample", "duration"}``.

XDF files (LabRecorder's) are read whole by pyxdf (`devices.xdf.read_xdf`): one regular stream
is replayed, every string stream becomes markers at the nearest sample.

A file MNE cannot read, or one shorter than its header says (a recording cut short), is a
config error naming the file and the problem, found before anything starts.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping

import mne
import numpy as np
from mne.io.constants import FIFF
from pydantic import Field

from devices.pacing import Speed, speed_factor, wait_until
from devices.xdf import XDFError, read_xdf
from pipeline import Frame, FrameKind, NodeParams, ParamError, Source, StreamInfo
from pipeline.clock import now_ns, sample_clock
from pipeline.node import Output

#: Seconds of signal read from the file at a time.
BLOCK_S = 10.0
#: MNE warnings that mean the data on disk is not what the header promises.
_TRUNCATION = ("does not match the file size", "truncat")


class EEGFile(Source):
    """An EEG file (EDF/BDF, FIF, GDF, BrainVision, EEGLAB, XDF) replayed in real time or faster."""

    type_name = "eeg_file"
    outputs = ("out", "markers")

    class Params(NodeParams):
        path: str | list[str] = Field(
            description="recording to replay (any format mne.io.read_raw reads), or a list of "
                        "recordings of one session played back to back (as "
                        "mne.concatenate_raws joins them: same channels and rate)")
        speed: Speed = "realtime"
        chunk: int = Field(16, ge=1, description="samples per frame")
        picks: str | list[str] | None = Field(
            None, description="channels: names, or types such as 'eeg' (MNE picks); "
                              "default: every data channel (every channel when none "
                              "is EEG, MEG, ...)")
        standardize: bool = Field(False, description="rename BCI2000-style channels first "
                                                     "(C3.. -> C3), as MNE's eegbci.standardize")
        loop: bool = Field(False, description="start again at the end (times keep increasing)")
        allow_truncated: bool = Field(False, description="replay a file cut short instead of "
                                                         "refusing it")
        stream: str | None = Field(None, description="XDF: name or type of the stream to replay "
                                                     "(default: the first EEG stream)")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        p = self.params
        self.raw = self._read_session(p.path)
        if p.standardize:
            mne.datasets.eegbci.standardize(self.raw)
        has_data = bool(mne.pick_types(self.raw.info, meg=True, eeg=True, seeg=True, ecog=True,
                                       dbs=True, fnirs=True, exclude=()).size)
        try:
            self.raw.pick(p.picks if p.picks is not None else "data" if has_data else "all",
                          exclude=())
        except ValueError as e:
            raise ParamError("picks", f"{p.path}: {e}; channels: {', '.join(self.raw.ch_names)}") \
                from None
        chs = self.raw.info["chs"]
        volts = np.array([c["unit"] == FIFF.FIFF_UNIT_V for c in chs])
        self.scale = np.where(volts, 1e6, 1.0)[:, None]
        units = tuple("uV" if v else _unit_name(c["unit"]) for v, c in zip(volts, chs))
        self.srate = float(self.raw.info["sfreq"])
        self.n_times = int(self.raw.n_times)
        self.markers = self._markers()
        self.speed = speed_factor(p.speed)
        self.reset()
        names = tuple(self.raw.ch_names)
        numbering = sample_clock(self.name, self.srate)
        return {"out": StreamInfo(FrameKind.SAMPLES, self.srate, names, units, "float32",
                                  (len(names),), clock="file",
                                  extra={"file": str(p.path), "n_times": self.n_times,
                                         **numbering}),
                "markers": StreamInfo(FrameKind.MARKERS, 0.0, dtype="unicode", clock="file",
                                      extra={"descriptions": sorted({d for _, d, _ in self.markers}),
                                             **numbering})}

    def _read_session(self, paths: str | list[str]) -> mne.io.BaseRaw:
        """One recording, or several joined (MNE marks each join with a 'BAD boundary' and an
        'EDGE boundary' annotation, which come out as markers like any other)."""
        if isinstance(paths, str):
            return self._read_header(Path(paths))
        if not paths:
            raise ParamError("path", "an empty list of recordings")
        if any(Path(f).suffix.lower() == ".xdf" for f in paths):
            raise ParamError("path", "XDF recordings are replayed one at a time")
        raws = [self._read_header(Path(f)) for f in paths]
        try:
            return mne.concatenate_raws(raws, verbose="error")
        except (ValueError, RuntimeError) as e:
            raise ParamError("path", f"{paths[0]} and the rest cannot be joined: {e}") from None

    def _read_header(self, path: Path) -> mne.io.BaseRaw:
        if not path.is_file():
            raise ParamError("path", f"{path}: no such file")
        if path.suffix.lower() == ".xdf":
            try:
                return read_xdf(path, self.params.stream, self.params.allow_truncated)
            except XDFError as e:
                raise ParamError(e.field, str(e)) from None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                raw = mne.io.read_raw(path, preload=False, verbose="warning")
            except Exception as e:  # MNE raises ValueError, RuntimeError, OSError, ... by format
                raise ParamError("path", f"{path}: cannot be read as EEG: {type(e).__name__}: "
                                         f"{e}") from None
        problems = [str(w.message) for w in caught
                    if any(t in str(w.message).lower() for t in _TRUNCATION)]
        if problems and not self.params.allow_truncated:
            raise ParamError("path", f"{path}: the file is truncated or corrupt ({problems[0]}); "
                                     f"set allow_truncated: true to replay the "
                                     f"{raw.n_times / raw.info['sfreq']:g} s it holds")
        return raw

    def _markers(self) -> list[tuple[int, str, float]]:
        """(sample index, description, duration s) of every annotation inside the data."""
        ann = self.raw.annotations
        if not len(ann):
            return []
        index = self.raw.time_as_index(ann.onset, use_rounding=True, origin=ann.orig_time)
        out = [(int(i), str(d), float(dur)) for i, d, dur in zip(index, ann.description, ann.duration)
               if 0 <= i < self.n_times]
        return sorted(out, key=lambda m: m[0])

    def reset(self) -> None:
        self.pos = 0            # next sample of the file to send
        self.lap = 0            # completed passes (loop)
        self.sent = 0           # samples sent since start (pacing)
        self.next_marker = 0
        self.block = np.zeros((len(self.scale), 0), np.float32)
        self.block_start = 0
        self.t_start: int | None = None

    def _samples(self, a: int, b: int) -> np.ndarray:
        """File samples ``a .. b`` (b - a <= one block), float32, scaled."""
        if a < self.block_start or b > self.block_start + self.block.shape[1]:
            stop = min(self.n_times, max(b, a + int(BLOCK_S * self.srate)))
            self.block = (self.raw.get_data(start=a, stop=stop) * self.scale).astype(np.float32)
            self.block_start = a
        return np.ascontiguousarray(self.block[:, a - self.block_start:b - self.block_start])

    def read(self) -> list[Output] | None:
        if self.pos >= self.n_times:
            if not self.params.loop or self.n_times == 0:
                return None
            self.pos, self.next_marker, self.lap = 0, 0, self.lap + 1
        a = self.pos
        b = min(a + self.params.chunk, self.n_times)
        if self.t_start is None:
            self.t_start = now_ns()
        data = self._samples(a, b)  # read from disk before the wait: the release only stamps
        if self.speed and not wait_until(
                self.t_start + int((self.sent + b - a) / self.srate / self.speed * 1e9)):
            return []
        t0 = now_ns()
        offset = self.lap * self.n_times  # samples before this pass: times keep increasing
        out: list[Output] = [("out", Frame(FrameKind.SAMPLES, data, t0,
                                           t_device=(offset + a) / self.srate))]
        markers = self.markers
        while self.next_marker < len(markers) and markers[self.next_marker][0] < b:
            i, desc, dur = markers[self.next_marker]
            out.append(("markers", Frame(FrameKind.MARKERS, np.array([desc]), t0,
                                         t_device=(offset + i) / self.srate,
                                         meta={"sample": offset + i, "duration": dur})))
            self.next_marker += 1
        self.pos, self.sent = b, self.sent + b - a
        return out


def _unit_name(code: int) -> str:
    """FIFF unit code (MNE's named int) to a short name: 'T', 'K', 'NA' when unitless."""
    name = getattr(code, "_name", "FIFF_UNIT_NONE").removeprefix("FIFF_UNIT_")
    return "NA" if name == "NONE" else name
