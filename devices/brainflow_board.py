"""Any BrainFlow board as a source: OpenBCI, Muse, g.tec, ... or BrainFlow's synthetic and
playback boards, which need no hardware.

Why BrainFlow: one API over ~70 boards, each with its own protocol, already parsed into µV. We add
what a live graph needs on top of it:

- *Static stream info without the device.* ``setup`` runs in ``neuroflow validate`` too, so it
  reads BrainFlow's board description (rate, EEG rows, electrode names) and never opens the board.
- *Polling at a fixed small interval.* BrainFlow fills a ring buffer from its own thread; ``read``
  checks it every ``poll`` seconds and drains it (``get_board_data``), so a sample waits on
  average ``poll / 2`` (0.5 ms by default) before it enters the graph.
- *Unplugging survived.* A board that fails, or sends nothing for ``stall`` seconds, is released
  and connected again with exponential back-off (``backoff`` doubling up to ``backoff_max``);
  ``read`` returns ``[]`` meanwhile, each event is logged and counted in ``figures()``. A board
  missing at start-up is retried the same way rather than failing ``open()``: failing would make
  the supervisor restart the whole process group a few times and then stop the graph, while a
  headset that is switched on a minute late is a normal event. Only errors that mean the
  *configuration* is wrong (BrainFlow's ``INVALID_ARGUMENTS_ERROR`` / ``UNSUPPORTED_BOARD_ERROR``
  before the board ever streamed) stop the node. Connecting and releasing run in a helper
  thread, because BrainFlow's ``prepare_session`` can block for seconds (a Cyton waits 1 s for
  its reply, a BLE board longer) and ``read`` must return within ~100 ms; ``close`` does not
  wait for an attempt in flight (the supervisor gives a stopping worker 3 s to flush its sinks):
  the helper thread releases the board after it.
- *Clock and markers.* ``t_device`` is BrainFlow's timestamp row (Unix seconds, the host clock
  when BrainFlow received the sample); every nonzero value of the marker row
  (``BoardShim.insert_marker``) becomes one ``markers`` frame stamped with its sample's time and
  numbered (``meta["sample"]``) by its sample's index in the ``out`` stream. BrainFlow stamps
  samples as they reach the host, in bursts on boards behind a USB dongle, so the stamps cannot
  tell which sample that is; both streams carry the same ``extra["sample_clock"]`` token, which
  tells `nodes.epoch` to trust the number.
- *Playback is lossless.* BrainFlow's playback board clears the marker row of the file it plays
  (it carries only ``insert_marker``'s values), so the file's markers are read here and put
  back at their sample: the file is counted the way BrainFlow parses it (a line without one
  value per row is skipped, counted in ``skipped_lines``), and each new session (looping
  playback after a stall) starts again at the file's first sample. The replay ends, as a file
  does, after its last line (unless ``loopback_true`` loops it).
- *Counted gaps.* Boards with a package-number row reveal lost packets: the missing numbers are
  counted (``gaps``), as is the measured sampling rate against the nominal one.

Every `BrainFlowInputParams` field (``serial_port``, ``mac_address``, ``ip_address``, ``file``,
``master_board``, ...) is a parameter of the node, read from BrainFlow itself, so a BrainFlow
release that adds a field needs no change here and a typo is refused with the allowed names.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal, Mapping, NamedTuple

import numpy as np
from brainflow.board_shim import (BoardIds, BoardShim, BrainFlowError, BrainFlowInputParams,
                                  IpProtocolTypes, LogLevels)
from brainflow.exit_codes import BrainFlowExitCodes
from pydantic import Field, create_model

from devices.pacing import MAX_BLOCK_S
from devices.timing import StreamTiming
from pipeline import Frame, FrameKind, NodeParams, ParamError, Source, StreamInfo
from pipeline.clock import now_ns, sample_clock
from pipeline.node import Figure, Output

log = logging.getLogger("neuroflow.brainflow")

#: Short names BrainFlow does not spell out (``playback`` for PLAYBACK_FILE_BOARD).
ALIASES = {"playback": BoardIds.PLAYBACK_FILE_BOARD}
#: Boards that replay or relay another board's data; their rows are ``master_board``'s.
RELAY_BOARDS = (BoardIds.PLAYBACK_FILE_BOARD, BoardIds.STREAMING_BOARD)
#: Row groups BrainFlow returns in µV (its documented unit for ExG); others keep the board's unit.
MICROVOLT_GROUPS = frozenset({"eeg", "emg", "ecg", "eog"})
#: BrainFlow errors that mean the parameters are wrong, not that the device is away.
CONFIG_ERRORS = frozenset({BrainFlowExitCodes.INVALID_ARGUMENTS_ERROR.value,
                           BrainFlowExitCodes.UNSUPPORTED_BOARD_ERROR.value})
#: Fields of BrainFlowInputParams that take an enum: a name or its integer value.
ENUM_FIELDS: dict[str, type[IntEnum]] = {"master_board": BoardIds, "ip_protocol": IpProtocolTypes}
#: Longest line BrainFlow's playback board reads at once (its fgets buffer, less the NUL); a
#: longer line is read as several.
PLAYBACK_LINE_BYTES = 8191
#: How long ``close`` waits for the board's release (s): an ordinary release takes milliseconds,
#: stopping a Cyton's reader thread up to its 1 s serial timeout; one queued behind a connection
#: attempt in flight finishes later, in the helper thread, well inside the supervisor's grace.
RELEASE_WAIT_S = 1.0


def enum_value(enum: type[IntEnum], value: str | int, field: str) -> int:
    """Resolve a BrainFlow enum member given by name (any case, ``_BOARD`` suffix optional) or by
    its integer value.

    Raises
    ------
    ParamError
        Naming ``field``, with the closest names when ``value`` is a misspelt name.
    """
    if isinstance(value, int):
        if value in {m.value for m in enum}:
            return value
        raise ParamError(field, f"{value} is not a {enum.__name__} value")
    names = {m.name.lower(): m.value for m in enum}
    names.update({n.removesuffix("_board"): v for n, v in names.items()})
    if enum is BoardIds:
        names.update({k: v.value for k, v in ALIASES.items()})
    key = value.strip().lower().replace("-", "_").replace(" ", "_")
    if key in names:
        return names[key]
    close = difflib.get_close_matches(key, [n for n in names if not n.endswith("_board")], n=5,
                                      cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ParamError(field, f"unknown {enum.__name__} name {value!r}{hint} (names as in "
                            f"brainflow.board_shim.{enum.__name__}, or an integer id)")


def _input_fields() -> dict[str, Any]:
    """Every BrainFlowInputParams field, with BrainFlow's default and its own ``:param:`` text."""
    docs = dict(re.findall(r":param (\w+): (.+)", BrainFlowInputParams.__doc__ or ""))
    fields: dict[str, Any] = {}
    for name, default in vars(BrainFlowInputParams()).items():
        kind: Any = str | int if name in ENUM_FIELDS else type(default)
        if name in ENUM_FIELDS:
            what = f"name or id from brainflow.board_shim.{ENUM_FIELDS[name].__name__}"
        else:
            what = docs.get(name, "passed to BrainFlow as is")
        fields[name] = (kind, Field(default, description=f"BrainFlowInputParams.{name}: {what}"))
    return fields


class _Settings(NodeParams):
    """What this node adds to BrainFlowInputParams' fields."""

    board: str | int = Field("synthetic", description="board name as in brainflow.board_shim."
                             "BoardIds (any case, '_board' optional; 'playback') or its id")
    channels: str | list[str] = Field("eeg", description="row group(s) of the board description "
                                      "to stream: eeg, emg, accel, ... (rows shared by two "
                                      "groups are sent once)")
    chunk: int | None = Field(None, ge=1, description="most samples per frame (default: all the "
                              "samples there are at each poll)")
    poll: float = Field(0.001, gt=0, le=MAX_BLOCK_S, description="seconds between checks of "
                        "BrainFlow's buffer; adds poll/2 of latency on average")
    stall: float = Field(1.0, gt=0, description="seconds without a sample after which the board "
                         "counts as lost and is reconnected (a playback file has ended)")
    backoff: float = Field(0.1, gt=0, description="first reconnection delay (s), doubled after "
                           "each failed attempt")
    backoff_max: float = Field(5.0, gt=0, description="longest reconnection delay (s)")
    buffer: float = Field(60.0, gt=0, description="BrainFlow ring buffer (s of data); older "
                          "samples are overwritten if the graph does not keep up")
    config: list[str] = Field([], description="BrainFlow config_board commands sent after each "
                              "connection (e.g. 'loopback_true' loops a playback file)")
    log_level: Literal["trace", "debug", "info", "warn", "error", "critical", "off"] = Field(
        "error", description="BrainFlow's own log level (process-wide)")


class BrainFlowBoard(Source):
    """A BrainFlow board (synthetic by default): its EEG rows in µV, markers, reconnection."""

    type_name = "brainflow"
    outputs = ("out", "markers")

    #: This node's settings plus every BrainFlowInputParams field.
    Params = create_model("Params", __base__=_Settings, __module__=__name__, **_input_fields())

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        p: Any = self.params
        self.board_id = enum_value(BoardIds, p.board, "board")
        self.input_params = BrainFlowInputParams()
        for name in vars(self.input_params):
            value = getattr(p, name)
            setattr(self.input_params, name,
                    enum_value(ENUM_FIELDS[name], value, name) if name in ENUM_FIELDS else value)
        self.board_name = BoardIds(self.board_id).name.lower()
        described, field = self.board_id, "board"
        if self.board_id in RELAY_BOARDS:
            described, field = self.input_params.master_board, "master_board"
            if described == BoardIds.NO_BOARD:
                raise ParamError("master_board", f"board {self.board_name} needs master_board: "
                                                 f"the board whose data it carries")
        self.playback = self.board_id == BoardIds.PLAYBACK_FILE_BOARD
        # a file cannot be unplugged: when it stops, it has ended (unless BrainFlow loops it)
        self.ends = self.playback and "loopback_true" not in p.config
        if self.playback and not Path(p.file).is_file():
            raise ParamError("file", f"{p.file!r}: no such file to play back")
        try:
            descr = BoardShim.get_board_descr(described)
        except BrainFlowError as e:
            raise ParamError(field, f"BrainFlow cannot describe board "
                                    f"{BoardIds(described).name.lower()} ({e})") from None
        self.srate = float(descr["sampling_rate"])
        self.rows, names, units = self._rows(descr, [p.channels] if isinstance(p.channels, str)
                                             else list(p.channels))
        self.num_rows = int(descr["num_rows"])
        self.ts_row = int(descr["timestamp_channel"])
        self.marker_row: int | None = descr.get("marker_channel")
        self.package_row: int | None = descr.get("package_num_channel")
        self.buffer_samples = max(1, math.ceil(p.buffer * self.srate))
        self.label = f"brainflow node {self.name!r} ({self._where()})"
        self._init_state()
        # the markers' meta["sample"] numbers the samples of "out": one token on both streams
        extra = {"board": self.board_name, "board_id": self.board_id,
                 **sample_clock(self.name, self.srate)}
        return {"out": StreamInfo(FrameKind.SAMPLES, self.srate, names, units, "float32",
                                  (len(names),), clock="unix", extra=extra),
                "markers": StreamInfo(FrameKind.MARKERS, 0.0, dtype="unicode", clock="unix",
                                      extra=extra)}

    def _rows(self, descr: dict[str, Any], groups: list[str]
              ) -> tuple[list[int], tuple[str, ...], tuple[str, ...]]:
        """Rows of the data matrix for ``groups``, with a name and a unit per row."""
        available = {k.removesuffix("_channels"): v for k, v in descr.items()
                     if k.endswith("_channels") and isinstance(v, list) and v}
        eeg_names = str(descr.get("eeg_names", "")).split(",")
        rows: list[int] = []
        names: list[str] = []
        units: list[str] = []
        for group in groups:
            if group not in available:
                raise ParamError("channels", f"board {descr.get('name', self.board_name)} has no "
                                             f"{group!r} rows; it has {', '.join(available)}")
            own = eeg_names if group == "eeg" and len(eeg_names) == len(available[group]) else []
            for k, row in enumerate(available[group]):
                if row not in rows:
                    rows.append(row)
                    names.append(own[k] if own else f"{group.upper()}{k + 1}")
                    units.append("uV" if group in MICROVOLT_GROUPS else "NA")
        return rows, tuple(names), tuple(units)

    def _where(self) -> str:
        """The board and the address it is reached at, for log lines."""
        ip = self.input_params
        address = next((a for a in (ip.serial_port, ip.mac_address, ip.ip_address, ip.file,
                                    ip.serial_number) if a), "")
        return f"{self.board_name} at {address}" if address else self.board_name

    def _init_state(self) -> None:
        self.board: BoardShim | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.job: Future[None] | None = None
        self.state = "closed"             # connecting | streaming | retrying | ended
        self.next_attempt_ns = 0
        self.failures = 0                 # attempts/losses since the last sample: the back-off
        self.retry_in_s = 0.0
        self.ever_streamed = False
        self.last_data_ns = 0
        self.samples = 0                  # samples received since open (the markers' index)
        self.playback_file = PlaybackFile(0, 0, None, np.zeros(0, np.int64), np.zeros(0))
        self.file_pos = 0                 # playback: the file's sample due next (not wrapped)
        self.prev_package: int | None = None
        self.package_max = 0
        self.gaps = self.losses = self.reconnects = self.errors = self.markers = 0
        self.timing = StreamTiming(self.srate, stamp_gaps=False)

    # -- connection -------------------------------------------------------------------------
    def open(self) -> None:
        BoardShim.set_log_level(LogLevels[f"LEVEL_{self.params.log_level.upper()}"].value)
        self.board = BoardShim(self.board_id, self.input_params)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"brainflow:{self.name}")
        if self.playback:
            played = self.playback_file = _read_playback(Path(self.input_params.file),
                                                         self.num_rows, self.marker_row)
            if played.skipped:
                log.warning("%s: %d lines of the file do not hold one value per row (%d), the "
                            "first on line %d; BrainFlow skips them", self.label,
                            played.skipped, self.num_rows, played.first_skipped)
        self.state, self.next_attempt_ns = "connecting", now_ns()

    def _connect(self) -> None:
        """Release what is left of the last session, then prepare, configure and start (runs in
        the helper thread; raises BrainFlowError)."""
        board = self.board
        assert board is not None
        _release(board)
        board.prepare_session()
        try:
            for command in self.params.config:
                board.config_board(command)
            board.start_stream(self.buffer_samples)
        except BrainFlowError:
            _release(board)
            raise

    def _connecting(self) -> None:
        """Start a connection attempt when its back-off is over; collect its outcome (blocks at
        most MAX_BLOCK_S)."""
        assert self.executor is not None
        if self.job is None:
            wait = (self.next_attempt_ns - now_ns()) / 1e9
            if wait > 0:
                time.sleep(min(wait, MAX_BLOCK_S))
                return
            self.state = "connecting"
            self.job = self.executor.submit(self._connect)
        try:
            self.job.result(timeout=MAX_BLOCK_S)
        except TimeoutError:
            return
        except BrainFlowError as e:
            self.job = None
            self.errors += 1
            if e.exit_code in CONFIG_ERRORS and not self.ever_streamed:
                raise RuntimeError(f"{self.label}: BrainFlow refuses the parameters: {e} "
                                   f"(its log above says which)") from None
            self._retry_later(f"cannot connect: {e}")
            return
        self.job, self.retry_in_s = None, 0.0
        if self.ever_streamed:
            self.reconnects += 1
            log.warning("%s: connected again", self.label)
        self.state, self.last_data_ns = "streaming", now_ns()
        self.prev_package = None
        self.file_pos = 0  # a new session plays the file from its start
        self.timing = StreamTiming(self.srate, stamp_gaps=False)

    def _retry_later(self, reason: str) -> None:
        """Schedule the next attempt after the current back-off, and say so."""
        p = self.params
        self.retry_in_s = min(p.backoff * 2.0 ** self.failures, p.backoff_max)
        self.failures += 1
        self.state = "retrying"
        self.next_attempt_ns = now_ns() + int(self.retry_in_s * 1e9)
        log.warning("%s: %s; retrying in %.2f s", self.label, reason, self.retry_in_s)

    def _lost(self, reason: str) -> None:
        self.losses += 1
        self._retry_later(reason)

    # -- data -------------------------------------------------------------------------------
    def read(self) -> list[Output] | None:
        if self.state == "ended":
            return None
        if self.state != "streaming":
            self._connecting()
            return []
        try:
            data = self._wait_for_data()
        except BrainFlowError as e:
            self.errors += 1
            self._lost(f"reading failed: {e}")
            return []
        return [] if data is None else self._frames(data)

    def _wait_for_data(self) -> np.ndarray | None:
        """Poll BrainFlow's buffer every ``poll`` s for up to MAX_BLOCK_S; drain it."""
        board = self.board
        assert board is not None
        deadline = now_ns() + int(MAX_BLOCK_S * 1e9)
        while True:
            if board.get_board_data_count() > 0:
                return board.get_board_data()
            t = now_ns()
            if t - self.last_data_ns > self.params.stall * 1e9:
                self._stalled()
                return None
            if t >= deadline:
                return None
            time.sleep(self.params.poll)

    def _stalled(self) -> None:
        if self.ends:
            self.state = "ended"
            total = self.playback_file.samples
            if self.file_pos < total:
                log.warning("%s: playback stopped %d samples short of the file's %d (lost in "
                            "BrainFlow's buffer? see 'buffer')", self.label,
                            total - self.file_pos, total)
            return
        self._lost(f"no data for {self.params.stall:g} s")

    def _frames(self, data: np.ndarray) -> list[Output]:
        """Frames of the drained block ``data`` (rows x n, float64): samples chunks, each
        followed by the markers that fall inside it."""
        t0 = now_ns()
        n = data.shape[1]
        self.last_data_ns, self.failures, self.ever_streamed = t0, 0, True
        ts = data[self.ts_row]
        x = data[self.rows].astype(np.float32)
        if self.playback:
            self._restore_markers(data)
        marks = np.flatnonzero(data[self.marker_row]) if self.marker_row is not None else []
        if self.package_row is not None:
            self._count_gaps(data[self.package_row])
        self.timing.update(ts, t0 / 1e9)
        out: list[Output] = []
        step = self.params.chunk or n
        k = 0
        for a in range(0, n, step):
            b = min(a + step, n)
            out.append(("out", Frame(FrameKind.SAMPLES, np.ascontiguousarray(x[:, a:b]), t0,
                                     t_device=float(ts[a]))))
            while k < len(marks) and marks[k] < b:
                i = int(marks[k])
                out.append(("markers", Frame(FrameKind.MARKERS,
                                             np.array([_marker_text(data[self.marker_row, i])]),
                                             t0, t_device=float(ts[i]),
                                             meta={"sample": self.samples + i})))
                k += 1
        self.samples += n
        self.file_pos += n
        self.markers += len(marks)
        if self.ends and self.file_pos >= self.playback_file.samples:
            self.state = "ended"
        return out

    def _restore_markers(self, data: np.ndarray) -> None:
        """Put the file's markers back in the marker row of ``data``: BrainFlow's playback board
        overwrites that row with what ``insert_marker`` queued (zero when nothing was)."""
        played = self.playback_file
        at, values = played.mark_samples, played.mark_values
        if not len(at):
            return
        pos = (self.file_pos + np.arange(data.shape[1])) % played.samples  # loops too
        k = np.minimum(np.searchsorted(at, pos), len(at) - 1)
        hit = at[k] == pos
        data[self.marker_row, hit] = values[k[hit]]

    def _count_gaps(self, package: np.ndarray) -> None:
        """Add the package numbers missing from ``package`` (and since the last block) to
        ``gaps``. The counter wraps at the power of two above the largest number seen (256 for
        the usual byte counter); a repeated number (two samples per packet) is no gap."""
        p = package.astype(np.int64)
        seq = p if self.prev_package is None else np.concatenate([[self.prev_package], p])
        self.package_max = max(self.package_max, int(p.max()))
        step = np.diff(seq) % (1 << self.package_max.bit_length())
        self.gaps += int(np.maximum(step - 1, 0).sum())
        self.prev_package = int(p[-1])

    def close(self) -> list[Output]:
        """Release the board from the helper thread, after any connection attempt in flight
        (not waited for: ``prepare_session`` may block for seconds); wait for the release
        itself at most RELEASE_WAIT_S."""
        if self.executor is not None:
            if self.job is not None:
                self.job.cancel()  # only if it has not started
            assert self.board is not None  # made with the executor in open()
            released = self.executor.submit(_release, self.board)
            self.executor.shutdown(wait=False)
            wait([released], timeout=RELEASE_WAIT_S)
            self.executor = self.board = self.job = None
        self.state = "ended"
        return []

    def figures(self) -> dict[str, Figure]:
        timing = self.timing.figures()
        return {"state": self.state, "samples": self.samples, "nominal_srate": self.srate,
                **{k: timing[k] for k in ("srate_stamps", "srate_host", "rate_error_ppm",
                                          "clock_offset_ms")},
                "gaps": self.gaps, "markers": self.markers, "losses": self.losses,
                "reconnects": self.reconnects, "errors": self.errors,
                "retry_in_s": self.retry_in_s, "skipped_lines": self.playback_file.skipped}


def _release(board: BoardShim) -> None:
    """End a session, whatever is left of it: after an unplug, stopping the stream fails to
    write to the port, which leaves nothing to undo."""
    if board.is_prepared():
        try:
            board.release_session()
        except BrainFlowError:
            pass


class PlaybackFile(NamedTuple):
    """What BrainFlow's playback board will play of a file."""

    samples: int                 # lines it plays: one sample each
    skipped: int                 # lines it skips (not one value per row)
    first_skipped: int | None    # line number (from 1) of the first skipped line
    mark_samples: np.ndarray     # samples with a nonzero marker, ascending (int64)
    mark_values: np.ndarray      # their marker values


def _read_playback(path: Path, num_rows: int, marker_row: int | None) -> PlaybackFile:
    """Count the samples of a BrainFlow file and find its markers, reading lines as BrainFlow's
    playback board does: at most PLAYBACK_LINE_BYTES at a time, values separated by tabs (or by
    commas in a line without a tab), a lone newline not a value, and a line with other than
    ``num_rows`` values skipped. One pass, line by line: the file is never held in memory."""
    at: list[int] = []
    values: list[float] = []
    n = skipped = 0
    first_skipped = None
    with path.open("rb") as f:
        for number, line in enumerate(iter(lambda: f.readline(PLAYBACK_LINE_BYTES), b""), 1):
            fields = line.split(b"\t" if b"\t" in line else b",")
            if fields[-1] == b"":  # nothing after the last separator: no value (std::getline)
                fields.pop()
            fields = [v for v in fields if v != b"\n"]
            if len(fields) != num_rows:
                skipped += 1
                first_skipped = first_skipped or number
                continue
            if marker_row is not None:
                try:
                    value = float(fields[marker_row])
                except ValueError:
                    value = 0.0  # BrainFlow plays the line; its marker is unreadable
                if value:
                    at.append(n)
                    values.append(value)
            n += 1
    return PlaybackFile(n, skipped, first_skipped, np.array(at, np.int64), np.array(values))


def _marker_text(value: float) -> str:
    """A marker value as text: ``3.0`` -> ``'3'``, ``2.5`` -> ``'2.5'``."""
    return f"{value:.15g}"
