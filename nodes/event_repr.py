"""Dense tensors from an event stream, for a network that wants frames: ``event_frames`` (counts
per polarity), ``voxel_grid`` (signed polarity, bilinear in time), ``time_surface`` (the last
time each pixel fired, decayed exponentially).

Why streaming, and whose semantics: the peers (Tonic's ``ToFrame`` / ``ToVoxelGrid`` /
``ToTimesurface``, dv-processing's ``EventStreamSlicer`` and accumulators) cut a whole
recording at once; here the stream arrives in batches cut anywhere, so each node keeps its
partial window as explicit state, and a stream cut anywhere gives exactly (bit for bit) the
frames the whole stream gives. Where we differ from Tonic on purpose: float32 frames (Tonic's
``ToFrame``: int16, which wraps past 32767 events at one pixel), the last partial window is
emitted (Tonic: only with ``include_incomplete``), the input is never written (Tonic sets
``p = 0`` in the caller's array for a one-polarity sensor), and `VoxelGrid`'s time axis.

Windows (dv-processing's slicer and Tonic's ``slice_events_by_time``): by time, half-open
``[start + k*W, start + (k+1)*W)`` µs of the event clock, ``start`` = the first event's time;
a window is emitted when an event at or after its end arrives (no wall clock), the last,
partial one at ``close()``. Windows inside a gap are emitted too, as empty windows, so that the
output keeps its rate (dv-processing's slicer does so too) — but at most ``max_empty`` of them
in a row: the rest of a long gap is skipped (counted in ``skipped``; the next window's
``t_device`` shows the jump), so an hour of silence cannot emit millions of frames. By count:
every ``count`` events, the last partial window at ``close()``. No overlapping windows (stack
consecutive frames downstream).

A time that steps back is counted by `nodes.event_input.EventInput` and its event kept in the
current window; one that steps back by more than a window before the current one (a camera
that restarted its clock) ends the grid: the partial window is emitted, the state cleared, and
a new grid starts at that event (counted in ``restarts``). Otherwise a restarted clock would
hold every event in one window until the clock caught up again.

Frames: ``tensor`` float32, one per window, in Tonic's per-frame layout — (P, H, W) for counts
and surfaces (Tonic: (T, P, H, W) for T frames; P = 2, channel 0 = OFF (``p == 0``), 1 = ON; a
sensor declared with P = 1 gets one merged channel), (B, H, W) for voxel grids (Tonic: (B, 1,
H, W) per recording). ``t_device`` is the window's start (s, the input's clock); ``t_origin_ns``
is the stamp of the input frame that completed it (the one whose event closed it, or the last
one at ``close()``). The ``srate`` of a time-cut stream is 1e6 / W frames/s (0 by count).
"""

from __future__ import annotations

from typing import ClassVar, Generator, Iterable, Mapping

import numpy as np
from pydantic import Field

from kernels.event_repr import NEVER, T_MAX, T_MIN, add_counts, add_voxels, decay_surface, \
    decay_table, stamp_times, take, warm_up
from nodes.event_input import EventInput
from pipeline import EVENT_DTYPE, Frame, FrameKind, NodeParams, StreamInfo, StreamMismatch
from pipeline.node import Figure, Output


class CutParams(NodeParams):
    """How every representation node cuts its stream besides the window length."""

    count: int | None = Field(None, ge=1, le=50_000_000,
                              description="cut by count: events per window (then the time "
                                          "length is unused)")
    max_empty: int = Field(100, ge=0, description="empty windows emitted in a row inside a gap "
                                                  "(time cut); the rest are skipped and counted")


class WindowParams(CutParams):
    """Windows of fixed length (or count): ``event_frames``, ``voxel_grid``."""

    window_us: int = Field(10_000, ge=1, description="window length (µs of the event clock), "
                                                     "unless count is given")


class EventWindows(EventInput):
    """Base of the three nodes: cuts the stream into windows and emits one tensor per window.

    A subclass owns the window's accumulator (built in ``reset``) and says what a window adds
    up to through ``_add`` (a kernel call over some events), ``_result`` (the finished window's
    tensor, which also empties the accumulator) and ``_empty`` (the tensor of a window without
    events).
    """

    #: The ``Params`` field holding the time cut (µs).
    period_field: ClassVar[str] = "window_us"
    #: What the tensor's axes are, for ``StreamInfo.extra``.
    axes: ClassVar[str] = "PHW"

    def planes(self, sensor_p: int) -> int:
        """The tensor's first axis, from the sensor's polarity count."""
        return 1 if sensor_p == 1 else 2

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        src = self.sensor(info)
        p = self.params
        self.count = p.count
        self.period = None if p.count else int(getattr(p, self.period_field))
        self.polarity_mask = 0 if src.sensor_size[2] == 1 else 1  # 0: both into channel 0
        self.shape = (self.planes(src.sensor_size[2]), self.height, self.width)
        self.zeros = np.zeros(self.shape, np.float32)
        self.zeros.flags.writeable = False  # shared by every empty window: never mutated
        self.skipped = 0
        self.restarts = 0
        self.reset()
        extra = {"axes": self.axes, **p.model_dump()}
        extra[self.period_field] = self.period
        return {"out": StreamInfo(FrameKind.TENSOR, 0.0 if self.count else 1e6 / self.period,
                                  dtype="float32", shape=self.shape, clock=src.clock,
                                  extra=extra)}

    def open(self) -> None:
        """Compile the kernels (or load them from Numba's cache) before the first frame."""
        warm_up(EVENT_DTYPE)

    def reset(self) -> None:
        super().reset()
        self.start: int | None = None  # the current window's start (µs); None: no window yet
        self.end = 0                   # count cut: the current window's last event time (µs)
        self.filled = 0                # count cut: events in the current window
        self.stamp = 0                 # t_origin_ns of the last input frame

    def figures(self) -> dict[str, Figure]:
        return {**super().figures(), "skipped": self.skipped, "restarts": self.restarts}

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        events = self.checked(frame.data)
        self.stamp = frame.t_origin_ns
        cut = self._by_count if self.count else self._by_time
        i = 0
        while i < len(events):
            i = yield from cut(events, i)

    def close(self) -> Iterable[Output]:
        """The last, partial window, if it holds events."""
        if self.start is not None and (self.count is None or self.filled):
            end = self.end if self.count else self.start + self.period
            yield self._frame(self._result(self.start, end), self.start)
        self.reset()

    def _by_count(self, events: np.ndarray, i: int) -> Generator[Output, None, int]:
        """Add events from ``i`` up to the current window's count; emit it if full. Returns
        the index of the first event not taken."""
        if self.filled == 0:
            self.start = int(events[i]["t"])
        stop = min(len(events), i + self.count - self.filled)
        self._add(events, i, stop, T_MIN, T_MAX)
        self.filled += stop - i
        self.end = int(events[stop - 1]["t"])
        if self.filled == self.count:
            yield self._frame(self._result(self.start, self.end), self.start)
            self.filled = 0
        return stop

    def _by_time(self, events: np.ndarray, i: int) -> Generator[Output, None, int]:
        """Add events from ``i`` until one falls outside the current window; then emit the
        window and the empty ones up to that event's. Returns the index of that event."""
        w = self.period
        if self.start is None:
            self.start = int(events[i]["t"])
        j = self._add(events, i, len(events), self.start - w, self.start + w)
        if j == len(events):
            return j
        t = int(events[j]["t"])
        yield self._frame(self._result(self.start, self.start + w), self.start)
        if t < self.start - w:   # the clock went back by more than a window: a new grid
            self.restarts += 1
            self.start = None
            self._restart()
        else:
            k = (t - self.start) // w  # windows completed by this event (>= 1)
            for m in range(1, min(k - 1, self.params.max_empty) + 1):
                a = self.start + m * w
                yield self._frame(self._empty(a, a + w), a)
            self.skipped += max(0, k - 1 - self.params.max_empty)
            self.start += k * w
        return j

    def _frame(self, data: np.ndarray, start: int) -> Output:
        return "out", Frame(FrameKind.TENSOR, data, self.stamp, t_device=start / 1e6)

    def _restart(self) -> None:
        """Forget what the stream's old clock left (the state that outlives a window)."""

    def _add(self, events: np.ndarray, start: int, stop: int, lo: int, hi: int) -> int:
        """Add ``events[start:stop]`` until one is outside [lo, hi) µs; return its index."""
        raise NotImplementedError

    def _result(self, start: int, end: int) -> np.ndarray:
        """The finished window ``[start, end)`` µs (``end``: its last event, if cut by count),
        a new array; the accumulator is left empty, for the next window."""
        raise NotImplementedError

    def _empty(self, start: int, end: int) -> np.ndarray:
        """A window ``[start, end)`` µs without events."""
        return self.zeros


class EventFrames(EventWindows):
    """Event counts per pixel and polarity: one (P, H, W) float32 frame per window.

    Tonic's ``ToFrame`` with ``time_window`` or ``event_count`` (no overlap), frame by frame.
    Counts are exact up to 2^24 events at one pixel in one window (float32).

    Each window is counted into a new zeroed frame, which is sent out as it is (measured at
    1280x720: copying each window out of one reused frame, as `VoxelGrid` does, cost as much as
    it saved).
    """

    type_name = "event_frames"
    Params = WindowParams

    def reset(self) -> None:
        self.frame = np.zeros(self.shape, np.float32)  # the current window's counts
        super().reset()

    def _add(self, events: np.ndarray, start: int, stop: int, lo: int, hi: int) -> int:
        return add_counts(events, start, stop, lo, hi, self.polarity_mask, self.frame)

    def _result(self, start: int, end: int) -> np.ndarray:
        frame, self.frame = self.frame, np.zeros(self.shape, np.float32)
        return frame


class VoxelGrid(EventWindows):
    """Signed events in B time bins, bilinear in time: one (B, H, W) float32 grid per window.

    Zhu et al.'s event volume: each event's signed polarity (+1 ON, -1 OFF) split linearly
    between its two nearest bins.

    Differs from Tonic's ``ToVoxelGrid`` on purpose: a time-cut window normalises time by the
    window itself, ``t* = (B - 1) (t - start) / W``, not by its own first and last event, so a
    bin means the same time in every window and does not depend on which events came; and the
    factor is B - 1 (Zhu et al., E2VID), where Tonic's B drops the last event and part of the
    weight of every event in the window's last 1/B. A count-cut window is normalised by its
    first and last event, as Zhu et al. (all in bin 0 if they are simultaneous). Polarity is
    signed from ``p`` in {0, 1}, never through a bool (a bool made OFF events +1 in a peer).

    One grid is accumulated into for the stream's life, and each finished window is copied out
    of it (`kernels.event_repr.take`): scattering into a newly allocated grid (18 MB at
    1280x720x5, fresh pages faulted in by the scatter) was 20-35 % slower than into a reused
    one, more than the copy costs.
    """

    type_name = "voxel_grid"
    axes = "BHW"

    class Params(WindowParams):
        window_us: int = Field(50_000, ge=1, description="window length (µs of the event "
                                                         "clock), unless count is given")
        bins: int = Field(5, ge=1, le=1024, description="time bins per window (B)")

    def planes(self, sensor_p: int) -> int:
        if sensor_p != 2:
            raise StreamMismatch(f"{self.name}: a voxel grid signs ON and OFF events; the "
                                 f"sensor has {sensor_p} polarity, not 2")
        return self.params.bins

    def reset(self) -> None:
        self.grid = np.zeros(self.shape, np.float32)  # the current window's voxels
        self.pending: list[np.ndarray] = []  # count cut: the window's events, until its end
        super().reset()

    def _add(self, events: np.ndarray, start: int, stop: int, lo: int, hi: int) -> int:
        if self.count:  # normalised by the window's last event: scattered in _result
            self.pending.append(events[start:stop])
            return stop
        return add_voxels(events, start, stop, lo, hi, self.start, self.period, self.grid)

    def _result(self, start: int, end: int) -> np.ndarray:
        for part in self.pending:
            add_voxels(part, 0, len(part), T_MIN, T_MAX, start, max(end - start, 0), self.grid)
        self.pending = []
        return take(self.grid)


class TimeSurface(EventWindows):
    """Time since each pixel last fired, decayed: one (P, H, W) float32 surface per step.

    A global time surface (Lagorce et al.'s HOTS surface over the whole sensor, as Tonic's
    ``ToTimesurface``): per pixel and polarity the last time ``t_last`` it fired, emitted every
    ``step_us`` (or every ``count`` events) as ``exp(-(t_now - t_last) / tau_us)``, 0 for a
    pixel that never fired.

    ``t_now`` is the window's end (as Tonic: ``start + (i + 1) dt``), also for the last partial
    window; by count, the window's last event. The last-time map outlives windows (it is the
    memory of the surface); ``reset()`` and a restarted clock clear it.
    """

    type_name = "time_surface"
    period_field = "step_us"

    class Params(CutParams):
        step_us: int = Field(10_000, ge=1, description="time between surfaces (µs of the event "
                                                       "clock), unless count is given")
        tau_us: float = Field(20_000.0, gt=0, description="decay time constant (µs)")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        self.table = decay_table(self.params.tau_us)
        return super().setup(info)

    def reset(self) -> None:
        self.last = np.full(self.shape, NEVER, np.int64)
        super().reset()

    def _restart(self) -> None:
        self.last.fill(NEVER)

    def _add(self, events: np.ndarray, start: int, stop: int, lo: int, hi: int) -> int:
        return stamp_times(events, start, stop, lo, hi, self.polarity_mask, self.last)

    def _result(self, start: int, end: int) -> np.ndarray:
        return decay_surface(self.last, end, self.params.tau_us, self.table)

    def _empty(self, start: int, end: int) -> np.ndarray:
        return self._result(start, end)  # no new event, but the surface still decays
