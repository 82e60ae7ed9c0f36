"""Event filters: ``roi``, ``downsample``, ``polarity``, ``refractory``, ``denoise`` and
``hot_pixels``.

Why these semantics: users come with dv-processing (iniVation) or Tonic pipelines and expect a
filter of the same name to keep the same events. Each class says whose rule it follows and how
it differs from the other library; the kernels (`kernels.event_filters`) are tested event for
event against dv-processing where it has the filter, and against plain reference code.

Every filter is a thin shell: ``setup`` checks its parameters against the sensor and builds its
state, ``process`` runs one kernel over the checked batch into a new array (the input is never
modified) and emits it only if it holds events. State is explicit (a time map per pixel,
calibration counts), so a stream cut anywhere gives the output of the whole. Figures:
``events_in`` (received), ``removed`` (dropped by the filter's rule), ``events_out``, beside
`EventInput`'s ``out_of_range`` and ``non_monotonic``.
"""

from __future__ import annotations

from typing import Iterable, Literal, Mapping

import numpy as np
from pydantic import Field

from kernels import event_filters as kernels
from kernels.event_filters import NO_TIME
from nodes.event_input import EventInput
from pipeline import EVENT_DTYPE, Frame, NodeParams, ParamError, StreamInfo
from pipeline.node import Figure, Output

#: Longest time parameter accepted (µs): about 18 minutes, far beyond any useful window, and
#: far enough from int64's limits that time arithmetic never overflows.
MAX_US = 2**30


class EventFilter(EventInput):
    """Base of the filters: ``in`` events -> ``out`` events of the sensor ``configure`` returns."""

    def configure(self, stream: StreamInfo) -> StreamInfo:
        """Check the parameters against ``stream``; return the output stream (the state is built
        by ``reset``, which ``setup`` calls next)."""
        return stream

    def apply(self, events: np.ndarray, out: np.ndarray) -> int:
        """Write the kept events of checked ``events`` into ``out``; return how many."""
        raise NotImplementedError

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        stream = self.sensor(info)
        self.events_in = self.removed = self.events_out = 0
        out = self.configure(stream)
        self.reset()
        return {"out": out}

    def filter(self, events: np.ndarray) -> np.ndarray:
        """The filtered batch (a new array) of a contiguous batch of valid events."""
        out = np.zeros(events.shape[0], EVENT_DTYPE)
        return out[:self.apply(events, out)]

    def open(self) -> None:
        """Compile (or load from Numba's cache) the kernel before the first frame; an empty
        batch leaves the state as it is."""
        self.filter(np.empty(0, EVENT_DTYPE))

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        self.events_in += frame.data.shape[0]
        events = np.ascontiguousarray(self.checked(frame.data))
        out = self.filter(events)
        self.removed += events.shape[0] - out.shape[0]
        self.events_out += out.shape[0]
        if out.shape[0]:
            yield "out", Frame(frame.kind, out, frame.t_origin_ns, frame.seq,
                               float(out["t"][0]) / 1e6, frame.meta)

    def figures(self) -> dict[str, Figure]:
        return {**super().figures(), "events_in": self.events_in, "removed": self.removed,
                "events_out": self.events_out}


def _time_map(height: int, width: int) -> np.ndarray:
    """A per-pixel last-event-time map (µs) in which no pixel has fired yet."""
    return np.full((height, width), NO_TIME, np.int64)


class Roi(EventFilter):
    """Keep the events inside a rectangle, by default moved to its origin.

    The rectangle is dv-processing's ``EventRegionFilter``'s (``x <= ex < x + width``, ``y <= ey
    < y + height``). Shifted (the default), the rectangle becomes the sensor, as with Tonic's
    ``crop`` / ``CenterCrop``; ``shift: false`` keeps the coordinates, as dv-processing does.
    """

    type_name = "roi"

    class Params(NodeParams):
        x: int = Field(0, ge=0, description="left column of the rectangle (pixels)")
        y: int = Field(0, ge=0, description="top row of the rectangle (pixels)")
        width: int = Field(..., ge=1, description="rectangle width (pixels)")
        height: int = Field(..., ge=1, description="rectangle height (pixels)")
        shift: bool = Field(True, description="move kept events to the rectangle's origin; the "
                                              "output sensor is then width x height")

    def configure(self, stream: StreamInfo) -> StreamInfo:
        p = self.params
        for start, size, limit, axis in ((p.x, p.width, self.width, "x"),
                                         (p.y, p.height, self.height, "y")):
            if start >= limit:
                raise ParamError(axis, f"{axis}={start} is outside the {self.width}x"
                                       f"{self.height} sensor")
            if start + size > limit:
                extent = "width" if axis == "x" else "height"
                raise ParamError(extent, f"{axis}={start} + {extent}={size} reaches past the "
                                         f"sensor's {limit} pixels (at most {limit - start})")
        if not p.shift:
            return stream
        return stream.replace(sensor_size=(p.width, p.height, stream.sensor_size[2]))

    def apply(self, events: np.ndarray, out: np.ndarray) -> int:
        p = self.params
        return kernels.crop(events, out, p.x, p.y, p.width, p.height, p.shift)


class Downsample(EventFilter):
    """Divide event coordinates by an integer factor, rounding down.

    ``x // fx``, ``y // fy``: the rule of dv-processing's ``scale`` and of Tonic's
    ``Downsample(spatial_factor=1/f)``; the sensor becomes ``ceil(W / fx) x ceil(H / fy)``. Like
    both, every event is kept, so events of one output pixel at the same time stay separate (a
    ``refractory`` of 1 µs after it drops those duplicates).
    """

    type_name = "downsample"

    class Params(NodeParams):
        factor: int = Field(2, ge=1, description="divisor of x (and of y unless factor_y)")
        factor_y: int | None = Field(None, ge=1, description="divisor of y (default: factor)")

    def configure(self, stream: StreamInfo) -> StreamInfo:
        fx = self.params.factor
        fy = self.params.factor_y or fx
        self.new_x = (np.arange(self.width) // fx).astype(np.int16)
        self.new_y = (np.arange(self.height) // fy).astype(np.int16)
        return stream.replace(sensor_size=(-(-self.width // fx), -(-self.height // fy),
                                           stream.sensor_size[2]))

    def apply(self, events: np.ndarray, out: np.ndarray) -> int:
        return kernels.downsample(events, out, self.new_x, self.new_y)


class Polarity(EventFilter):
    """Keep the ON events, the OFF ones or both, optionally merged into one polarity.

    dv-processing's ``EventPolarityFilter`` keeps one polarity; ``merge`` gives every kept event
    that polarity (Tonic's ``MergePolarities`` sets 0). The sensor keeps its two polarity planes.
    """

    type_name = "polarity"

    class Params(NodeParams):
        keep: Literal["on", "off", "both"] = Field("both", description="which polarity passes")
        merge: Literal[0, 1] | None = Field(None, description="set every kept event's p to this")

    def apply(self, events: np.ndarray, out: np.ndarray) -> int:
        keep = self.params.keep
        return kernels.polarity(events, out, keep != "on", keep != "off", self.params.merge)


class Refractory(EventFilter):
    """Drop an event if its pixel fired, in either polarity, less than ``period_us`` before it.

    dv-processing's ``RefractoryPeriodFilter`` rule: kept when ``t - t_last >= period``, and
    every event, kept or dropped, becomes the pixel's last, so a pixel firing faster than the
    period stays silent until it pauses. Tonic's ``RefractoryPeriod`` differs only in keeping
    when ``t - t_last > period``. One deviation from dv-processing, whose time map starts at
    0 µs: a pixel that never fired has no last event here, so a stream whose clock starts near 0
    keeps its first events (dv-processing drops those before ``period_us``).
    """

    type_name = "refractory"

    class Params(NodeParams):
        period_us: int = Field(250, ge=0, le=MAX_US, description="refractory period (µs; "
                                                                 "dv-processing's default)")

    def reset(self) -> None:
        super().reset()
        self.last = _time_map(self.height, self.width)

    def apply(self, events: np.ndarray, out: np.ndarray) -> int:
        return kernels.refractory(events, out, self.last, self.params.period_us)


class Denoise(EventFilter):
    """Background-activity filter: drop events no neighbour supports within ``window_us``.

    dv-processing's ``dv.noise.BackgroundActivityNoiseFilter`` rule: keep an event when one of
    its 8 neighbours (its own pixel excluded, clipped at the sensor's edges) had its last event
    less than ``window_us`` before it (``t - t_n < window``); every event, kept or dropped, then
    becomes its pixel's last. Tonic's ``Denoise`` looks at 4 neighbours only (left, right, up,
    down), forgets everything between calls and sizes the sensor from the batch. One deviation
    from dv-processing, whose time map starts at 0 µs: a pixel that never fired supports nothing
    here, so a stream whose clock starts near 0 does not keep every event of its first
    ``window_us`` unexamined.
    """

    type_name = "denoise"

    class Params(NodeParams):
        window_us: int = Field(2000, ge=0, le=MAX_US, description="support window (µs; "
                                                                  "dv-processing's default)")

    def reset(self) -> None:
        super().reset()
        self.last = _time_map(self.height + 2, self.width + 2)  # with a border that never fires

    def apply(self, events: np.ndarray, out: np.ndarray) -> int:
        return kernels.background_activity(events, out, self.last, self.params.window_us)


class HotPixels(EventFilter):
    """Drop every event of hot pixels: listed ones, and those learned at the stream's start.

    Learning follows iniVation's libcaer / DV noise filter (``caerFilterDVSNoise``;
    dv-processing has no hot-pixel filter): count every event per pixel from the first event
    until the first event later than ``calibration_us`` (that event counted, and judged with the
    new mask), then mask the pixels with at least ``min_count`` events, or (``median_factor``)
    more than that many times the median count of the pixels that fired. While it learns,
    events pass but for the listed pixels. Tonic's ``DropPixel(hot_pixel_frequency=...)``
    instead judges each whole recording by its mean rate.
    """

    type_name = "hot_pixels"

    class Params(NodeParams):
        pixels: list[tuple[int, int]] = Field([], description="(x, y) pixels always masked")
        calibration_us: int = Field(1_000_000, ge=0, le=MAX_US,
                                    description="learning span at the start (µs; 0: no learning)")
        min_count: int | None = Field(10_000, ge=1, description="events in the span that make a "
                                                                "pixel hot (DV's default)")
        median_factor: float | None = Field(None, gt=1, description="also hot: more than this "
                                                                    "many times the median count")

    def configure(self, stream: StreamInfo) -> StreamInfo:
        p = self.params
        outside = [(x, y) for x, y in p.pixels
                   if not (0 <= x < self.width and 0 <= y < self.height)]
        if outside:
            raise ParamError("pixels", f"{outside} outside the {self.width}x{self.height} sensor")
        if p.calibration_us and p.min_count is None and p.median_factor is None:
            raise ParamError("min_count", "learning hot pixels needs min_count or median_factor")
        self.listed = np.zeros((self.height, self.width), np.uint8)
        for x, y in p.pixels:
            self.listed[y, x] = 1
        return stream

    def reset(self) -> None:
        super().reset()
        self.mask = self.listed.copy()
        self.counts = np.zeros((self.height, self.width), np.int64)
        self.start = NO_TIME
        self.learning = self.params.calibration_us > 0

    def _learned(self) -> np.ndarray:
        """The pixels the calibration counts make hot."""
        p, counts = self.params, self.counts
        hot = np.zeros(counts.shape, bool)
        if p.min_count is not None:
            hot |= counts >= p.min_count
        fired = counts[counts > 0]
        if p.median_factor is not None and fired.size:
            hot |= counts > p.median_factor * np.median(fired)
        return hot

    def apply(self, events: np.ndarray, out: np.ndarray) -> int:
        if not self.learning:
            return kernels.mask_pixels(events, out, self.mask)
        end, self.start = kernels.calibration_counts(events, self.counts, self.start,
                                                     self.params.calibration_us)
        kept = kernels.mask_pixels(events[:end], out, self.mask)
        if end < events.shape[0]:
            self.mask[self._learned()] = 1
            self.learning = False
            kept += kernels.mask_pixels(events[end:], out[kept:], self.mask)
        return kept

    def figures(self) -> dict[str, Figure]:
        return {**super().figures(), "hot_pixels": int(np.count_nonzero(self.mask)),
                "learning": int(self.learning)}
