"""Seeded synthetic event camera: moving patterns and natural images seen by a simulated DVS,
with the ground-truth motion beside the events, for demos, tests and training without a camera.

A scene (a bar, an edge, a grating, random dots, or one of scikit-image's bundled photographs)
moves across the sensor; every ``step_us`` the sensor's log-intensity frame is rendered and
handed to the pixel model of `devices.event_sensor` (contrast thresholds with mismatch,
refractory period, background activity, leak). The simulation advances in fixed steps from
t = 0 whatever ``batch_us`` is, so cutting the stream into batches never changes an event.

Motion, in pixels per second on the sensor; ``direction`` in degrees counter-clockwise as seen on
the screen (0 = rightwards, 90 = upwards, i.e. towards row 0), so ``vx = v cos(a)``,
``vy = -v sin(a)`` in the event coordinates (``y`` grows downwards):

- ``motion: constant``: straight at ``velocity`` in ``direction``, forever (the scene wraps
  around: bars and edges re-enter, dots tile the plane, a photograph is mirror-tiled so that no
  seam makes events).
- ``motion: saccades`` (dots and photographs): a saccade-like path of straight segments whose
  motion class, one of ``n_directions`` directions (``k * 360 / n_directions`` degrees) times
  one of ``velocities`` (default: ``velocity`` alone), jumps to another class after
  ``segment_s`` on average (uniform in 0.5-1.5 times it). This is the task of Grimaldi &
  Perrinet (Biol. Cybern. 2023, section 2.1), whose HD-SNN classifies natural images translated
  along such a path (they use 8 directions x 3 speeds, ~24 ms segments, and let a class repeat).

Ground truth comes out of the ``labels`` port as markers, one at the start of every segment
(t = 0 for constant motion): the class name (``dir000``, ``dir045``, ...: the direction rounded
to the degree, with ``_v250`` appended when there are several speeds; the stream info lists
every class, direction-major, in ``extra["descriptions"]``), ``t_device`` the change time in
seconds of the events' clock, and ``meta`` = ``{"t_us", "class", "vx", "vy"}`` (class index
into the descriptions, velocity in px/s). The class holds from that time until the next marker,
to the µs: a window of events is labelled by the last marker at or before it, which is what a
motion classifier (``hd_snn``) is trained and scored on. A marker is sent with the batch that
contains its time.
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path
from typing import Literal, Mapping, NamedTuple

import numba
import numpy as np
from pydantic import Field

from devices.event_sensor import (SensorParams, SensorState, draw_noise, sensor_params,
                                  sensor_state, sensor_step)
from devices.pacing import Speed, speed_factor, wait_until
from pipeline import Frame, FrameKind, NodeParams, ParamError, Source, StreamInfo
from pipeline.clock import now_ns
from pipeline.frame import concat_events
from pipeline.node import Figure, Output

#: Patterns drawn here; any other ``pattern`` names a bundled photograph.
PATTERNS = ("bar", "edge", "grating", "dots")
#: Photographs shipped inside scikit-image's wheel (name -> file in ``skimage/data``): never
#: the ones `skimage.data` would download.
IMAGES = {"astronaut": "astronaut.png", "brick": "brick.png", "camera": "camera.png",
          "chelsea": "chelsea.png", "coffee": "coffee.png", "coins": "coins.png",
          "grass": "grass.png", "gravel": "gravel.png",
          "hubble_deep_field": "hubble_deep_field.jpg", "immunohistochemistry": "ihc.png",
          "moon": "moon.png", "page": "page.png", "retina": "retina.jpg", "rocket": "rocket.jpg",
          "text": "text.png"}
#: Samples per pixel of a 1-D pattern's profile table.
PROFILE_RES = 32
#: Share of the plane the ``dots`` pattern covers.
DOT_COVER = 0.1


def load_image(name: str) -> np.ndarray:
    """Bundled photograph ``name`` as gray intensity in [0, 1] (float64, rows x columns).

    Raises
    ------
    ImportError
        scikit-image is not installed (it comes with the ``events`` extra).
    """
    try:
        import skimage
        from skimage import color, io, util
    except ImportError as e:
        raise ImportError(f"pattern {name!r} is a scikit-image photograph, and scikit-image is "
                          f"not importable ({e}): pip install 'neuroflow[events]'") from e
    img = io.imread(Path(skimage.__file__).parent / "data" / IMAGES[name])
    if img.ndim == 3:
        img = color.rgb2gray(img[..., :3])
    return util.img_as_float(img).astype(np.float64)


def motion_name(degrees: float, speed: float | None = None) -> str:
    """Class name of a motion: ``dir045`` (direction rounded to the degree, in [0, 360)), with
    ``_v250`` (px/s) appended when ``speed`` is given."""
    name = f"dir{math.floor(degrees + 0.5) % 360:03d}"
    return name if speed is None else f"{name}_v{speed:g}"


def motion_classes(motion: str, direction: float, velocity: float, n_directions: int,
                   velocities: list[float] | None) -> tuple[tuple[str, ...], np.ndarray]:
    """Names and velocities ``(vx, vy)`` (px/s, one row each) of the motion classes: the one
    constant motion, or every direction x speed a saccade may take (direction-major)."""
    if motion == "saccades":
        speeds = velocities or [velocity]
        if len(set(speeds)) < len(speeds) or min(speeds) <= 0:
            raise ParamError("velocities", f"speeds must be > 0 and distinct, got {speeds}")
        classes = [(k * 360.0 / n_directions, v) for k in range(n_directions) for v in speeds]
        names = tuple(motion_name(a, v if len(speeds) > 1 else None) for a, v in classes)
    else:
        classes = [(direction % 360.0, velocity)]
        names = (motion_name(classes[0][0]),)
    a = np.radians([c[0] for c in classes])
    v = np.array([c[1] for c in classes])
    return names, np.stack([v * np.cos(a), -v * np.sin(a)], axis=1)


class Segment(NamedTuple):
    """A stretch of straight motion: from ``t_us`` the scene is displaced by
    ``(x + vx * dt, y + vy * dt)`` px, ``dt`` in seconds since ``t_us``."""

    t_us: int
    label: int   # index of the motion class
    vx: float    # px/s
    vy: float    # px/s
    x: float     # displacement at t_us, px
    y: float


class MotionPath:
    """The scene's displacement over time: one straight segment, or saccade-like ones drawn
    from ``rng`` as time goes on (the same sequence whatever order it is queried in).

    ``motions`` holds each class's velocity ``(vx, vy)`` in px/s; the path starts in class
    ``first`` and, with an ``rng``, jumps to another class every ~``segment_us``.
    """

    def __init__(self, motions: np.ndarray, first: int, segment_us: float,
                 rng: np.random.Generator | None) -> None:
        self.motions, self.segment_us, self.rng = motions, segment_us, rng
        vx, vy = self._velocity(first)
        self.segments = [Segment(0, first, vx, vy, 0.0, 0.0)]
        self.starts = [0]
        self.end_us = math.inf if rng is None else self._duration()

    def _velocity(self, label: int) -> tuple[float, float]:
        return float(self.motions[label, 0]), float(self.motions[label, 1])

    def _duration(self) -> int:
        assert self.rng is not None  # only a saccade path has segments after the first
        return max(1, round(self.segment_us * self.rng.uniform(0.5, 1.5)))

    def _extend(self, t_us: float) -> None:
        while self.end_us <= t_us:
            last = self.segments[-1]
            dt = (self.end_us - last.t_us) * 1e-6
            n = len(self.motions)  # another class than the last, all equally likely
            label = (last.label + int(self.rng.integers(1, n))) % n
            vx, vy = self._velocity(label)
            self.segments.append(Segment(int(self.end_us), label, vx, vy,
                                         last.x + last.vx * dt, last.y + last.vy * dt))
            self.starts.append(int(self.end_us))
            self.end_us += self._duration()

    def at(self, t_us: float) -> Segment:
        """The segment in force at ``t_us``."""
        self._extend(t_us)
        return self.segments[bisect.bisect_right(self.starts, t_us) - 1]

    def displacement(self, t_us: float) -> tuple[float, float]:
        """Where the scene is at ``t_us``, px from where it started."""
        s = self.at(t_us)
        dt = (t_us - s.t_us) * 1e-6
        return s.x + s.vx * dt, s.y + s.vy * dt

    def starting_in(self, t0_us: int, t1_us: int) -> list[Segment]:
        """Segments that start in ``[t0_us, t1_us)``."""
        self._extend(t1_us)
        return self.segments[bisect.bisect_left(self.starts, t0_us):
                             bisect.bisect_left(self.starts, t1_us)]


def profile_table(pattern: str, size_px: float, extent: float, log_eps: float) -> \
        tuple[np.ndarray, float, float]:
    """Log intensity of a 1-D pattern along the motion axis, box-filtered over one pixel.

    Returns the table (PROFILE_RES samples per px over one period), the period (px) and the
    coordinate ``u`` (px, 0 at the sensor's centre) where the table starts. A bar (or an edge,
    a bar as wide as the sensor) starts just outside the sensor's trailing side, so its leading
    edge enters first; a period later it enters again. The grating has stripes ``size_px`` wide.
    """
    if pattern == "grating":
        n, start = round(2.0 * size_px * PROFILE_RES), 0.0
        q = np.arange(n) / PROFILE_RES
        k = 2 * math.pi * PROFILE_RES / n  # the box filter's gain at this frequency is a sinc
        intensity = 0.5 + 0.5 * np.sinc(k / (2 * math.pi)) * np.sin(k * q)
    else:
        width = extent if pattern == "edge" else size_px
        n, start = math.ceil((extent + width + 2.0) * PROFILE_RES), -extent / 2 - width
        q = np.arange(n) / PROFILE_RES
        intensity = sum(np.clip(np.minimum(q + 0.5, width + shift) - np.maximum(q - 0.5, shift),
                                0.0, 1.0) for shift in (-n / PROFILE_RES, 0.0, n / PROFILE_RES))
    return np.log(intensity + log_eps), n / PROFILE_RES, start


def dots_texture(width: int, height: int, size_px: float, rng: np.random.Generator) -> np.ndarray:
    """Bright anti-aliased discs of diameter ``size_px`` on black, placed at random, covering
    ~DOT_COVER of a ``height x width`` tile that wraps around (intensity in [0, 1])."""
    r = size_px / 2
    n = max(1, round(DOT_COVER * width * height / (math.pi * r * r)))
    tex = np.zeros((height, width))
    ys, xs = np.arange(height)[:, None], np.arange(width)[None, :]
    for cx, cy in zip(rng.uniform(0, width, n), rng.uniform(0, height, n)):
        dx = (xs + 0.5 - cx + width / 2) % width - width / 2   # nearest copy on the torus
        dy = (ys + 0.5 - cy + height / 2) % height - height / 2
        np.maximum(tex, np.clip(r + 0.5 - np.hypot(dx, dy), 0.0, 1.0), out=tex)
    return tex


def mirror_tile(img: np.ndarray) -> np.ndarray:
    """The image and its mirror images, 2 x 2: a tile that wraps around without a seam."""
    return np.block([[img, img[:, ::-1]], [img[::-1], img[::-1, ::-1]]])


@numba.njit(cache=True, nogil=True)
def render_profile(table: np.ndarray, period: float, start: float, width: int, height: int,
                   dx: float, dy: float, shift: float, out: np.ndarray) -> None:
    """Log frame of a 1-D pattern moved ``shift`` px along unit vector ``(dx, dy)``: pixel
    ``(x, y)`` takes the table at ``u = (centre offset) . (dx, dy) - shift``, linearly
    interpolated; ``out`` is row-major ``height * width``."""
    n = table.shape[0]
    step = dx * PROFILE_RES  # table samples per pixel along a row
    for y in range(height):
        u = (0.5 - width / 2) * dx + (y + 0.5 - height / 2) * dy - shift - start
        q = u % period * PROFILE_RES
        if q >= n:  # rounding
            q -= n
        for x in range(width):
            i0 = int(q)
            f = q - i0
            i1 = i0 + 1 if i0 + 1 < n else 0
            out[y * width + x] = table[i0] + f * (table[i1] - table[i0])
            q += step
            if q >= n:
                q -= n
            elif q < 0.0:
                q += n


@numba.njit(cache=True, nogil=True)
def render_texture(tex: np.ndarray, ox: float, oy: float, width: int, height: int,
                   out: np.ndarray) -> None:
    """Log frame of a wrapping texture displaced by ``(ox, oy)`` px: pixel ``(x, y)`` takes the
    texture at ``(x - ox, y - oy)``, bilinearly interpolated; ``out`` is row-major."""
    th, tw = tex.shape
    ix0 = np.empty(width, np.int64)
    ix1 = np.empty(width, np.int64)
    fx = np.empty(width)
    for x in range(width):
        u = x - ox
        i = math.floor(u)
        fx[x] = u - i
        ix0[x] = i % tw
        ix1[x] = (i + 1) % tw
    for y in range(height):
        v = y - oy
        j = math.floor(v)
        fy = v - j
        r0 = tex[j % th]
        r1 = tex[(j + 1) % th]
        for x in range(width):
            a = r0[ix0[x]] + fx[x] * (r0[ix1[x]] - r0[ix0[x]])
            b = r1[ix0[x]] + fx[x] * (r1[ix1[x]] - r1[ix0[x]])
            out[y * width + x] = a + fy * (b - a)


class SyntheticEvents(Source):
    """Simulated DVS watching a moving pattern or photograph; events plus ground-truth motion."""

    type_name = "synthetic_events"
    outputs = ("out", "labels")

    class Params(NodeParams):
        width: int = Field(346, ge=1, le=32767, description="sensor width (px)")
        height: int = Field(260, ge=1, le=32767, description="sensor height (px)")
        pattern: str = Field("bar", description="bar | edge | grating | dots, or a photograph "
                                                "bundled with scikit-image: " + ", ".join(IMAGES))
        size_px: float = Field(8.0, ge=1, description="bar and grating stripe width, dot "
                                                       "diameter (px)")
        motion: Literal["constant", "saccades"] = Field(
            "constant", description="straight on, or saccade-like segments (dots, photographs)")
        velocity: float = Field(100.0, ge=0, description="speed of the scene on the sensor (px/s)")
        direction: float = Field(0.0, description="constant motion: degrees counter-clockwise "
                                                  "from rightwards (90 = up)")
        n_directions: int = Field(8, ge=2, le=360, description="saccades: directions, "
                                                               "k * 360 / n degrees")
        velocities: list[float] | None = Field(
            None, min_length=1, description="saccades: speeds drawn per segment (px/s; default "
                                            "[velocity]); classes are direction x speed")
        segment_s: float = Field(0.3, gt=0, description="saccades: mean segment duration (s)")
        log_eps: float = Field(0.1, gt=0, description="log intensity = ln(I + log_eps), I in "
                                                      "[0, 1]")
        pos_threshold: float = Field(0.2, gt=0, description="ON contrast threshold (log units)")
        neg_threshold: float = Field(0.2, gt=0, description="OFF contrast threshold (log units)")
        threshold_sigma: float = Field(0.03, ge=0, description="threshold mismatch across "
                                                               "pixels, SD (log units)")
        refractory_us: int = Field(100, ge=0, description="shortest interval between two "
                                                          "events of a pixel (µs)")
        noise_rate_hz: float = Field(0.1, ge=0, description="background events per pixel "
                                                            "per second")
        leak_rate_hz: float = Field(0.0, ge=0, description="leak ON events per pixel per "
                                                           "second")
        step_us: int = Field(1000, ge=1, description="simulation step (µs)")
        batch_us: int = Field(10_000, ge=1, description="time covered by one emitted batch (µs)")
        seed: int = Field(0, description="random seed (same seed, same events)")
        speed: Speed = "realtime"
        max_batches: int | None = Field(None, ge=1, description="end of stream after this many "
                                                                "batches")
        duration_s: float | None = Field(None, gt=0, description="end of stream after this "
                                                                 "much simulated time (s)")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        p = self.params
        if p.pattern not in PATTERNS and p.pattern not in IMAGES:
            raise ParamError("pattern", f"unknown pattern {p.pattern!r}; use one of "
                                        f"{', '.join(PATTERNS)} or a bundled photograph: "
                                        f"{', '.join(IMAGES)}")
        if p.motion == "saccades" and p.pattern in ("bar", "edge", "grating"):
            raise ParamError("motion", f"saccades need a 2-D scene (dots or a photograph): a "
                                       f"{p.pattern} only moves across its stripes")
        self.names, self.motions = motion_classes(p.motion, p.direction, p.velocity,
                                                  p.n_directions, p.velocities)
        fastest = float(np.hypot(*self.motions.T).max())
        if fastest * p.step_us * 1e-6 > 1.0:
            raise ParamError("step_us", f"the scene would move {fastest * p.step_us * 1e-6:g} px "
                                        f"per step; at {fastest:g} px/s use step_us <= "
                                        f"{math.floor(1e6 / fastest)} (at most 1 px a step)")
        self.view = (0.0, 0.0)  # texture coordinates of the sensor's top-left corner
        if p.pattern in IMAGES:
            try:
                img = load_image(p.pattern)
            except ImportError as e:
                raise ParamError("pattern", str(e)) from e
            self.texture = np.log(mirror_tile(img) + p.log_eps)
            self.view = ((img.shape[1] - p.width) / 2, (img.shape[0] - p.height) / 2)
        speed = speed_factor(p.speed)
        self.period_ns = int(p.batch_us / speed * 1e3) if speed else 0
        self.n_batches = math.inf if p.max_batches is None else p.max_batches
        self.end_us = math.inf if p.duration_s is None else round(p.duration_s * 1e6)
        self.reset()
        return {"out": StreamInfo(FrameKind.EVENTS, dtype="events",
                                  sensor_size=(p.width, p.height, 2), clock="synthetic"),
                "labels": StreamInfo(FrameKind.MARKERS, dtype="unicode", clock="synthetic",
                                     extra={"descriptions": list(self.names)})}

    def reset(self) -> None:
        p = self.params
        n = p.width * p.height
        thresholds, noise, path, scene, leak = np.random.SeedSequence(p.seed).spawn(5)
        self.sensor: SensorParams = sensor_params(
            n, p.pos_threshold, p.neg_threshold, p.threshold_sigma, p.leak_rate_hz,
            p.refractory_us, np.random.default_rng(thresholds))
        self.noise_rng = np.random.default_rng(noise)
        path_rng = np.random.default_rng(path)
        saccades = p.motion == "saccades"
        first = int(path_rng.integers(len(self.motions))) if saccades else 0
        self.path = MotionPath(self.motions, first, p.segment_s * 1e6,
                               path_rng if saccades else None)
        if p.pattern == "dots":
            self.texture = np.log(dots_texture(p.width, p.height, p.size_px,
                                               np.random.default_rng(scene)) + p.log_eps)
        elif p.pattern in PATTERNS:
            a = math.radians(p.direction)
            self.axis = (math.cos(a), -math.sin(a))
            extent = p.width * abs(self.axis[0]) + p.height * abs(self.axis[1])
            self.profile = profile_table(p.pattern, p.size_px, extent, p.log_eps)
        self.log = self._render(0)
        leak_phase = None
        if p.leak_rate_hz:  # pixels start at random points of their leak cycle, not in step
            leak_phase = np.random.default_rng(leak).random(n) * self.sensor.theta_on
        self.state: SensorState = sensor_state(self.log, leak_phase)
        self.t_us = 0           # simulated time reached
        self.pending: list[np.ndarray] = []  # simulated events not yet emitted
        self.batches = 0
        self.t_start: int | None = None
        self.next_batch: tuple[np.ndarray, list[Segment], int] | None = None
        self.events = self.noise_events = self.refractory_drops = 0
        self.motion = ""  # class of the last label sent

    def _render(self, t_us: int) -> np.ndarray:
        """Log intensity of every pixel at ``t_us`` (row-major, float64)."""
        p = self.params
        out = np.empty(p.width * p.height)
        x, y = self.path.displacement(t_us)
        if p.pattern in ("bar", "edge", "grating"):
            table, period, start = self.profile
            dx, dy = self.axis
            render_profile(table, period, start, p.width, p.height, dx, dy, x * dx + y * dy, out)
        else:  # a photograph is seen from its centre
            render_texture(self.texture, x - self.view[0], y - self.view[1], p.width, p.height,
                           out)
        return out

    def _step(self) -> None:
        """Simulate one step and keep its events."""
        p = self.params
        t0 = self.t_us
        log1 = self._render(t0 + p.step_us)
        noise = draw_noise(self.noise_rng, log1.size, p.noise_rate_hz, t0, p.step_us)
        events, dropped, noisy = sensor_step(self.log, log1, t0, p.step_us, self.state,
                                             self.sensor, noise, p.width)
        self.log, self.t_us = log1, t0 + p.step_us
        self.refractory_drops += dropped
        self.noise_events += noisy
        if len(events):
            self.pending.append(events)

    def simulate(self, t1_us: int) -> np.ndarray:
        """Every event with ``t < t1_us`` not returned before (EVENT_DTYPE, sorted by ``t``)."""
        while self.t_us < t1_us:
            self._step()
        events = concat_events(self.pending)
        cut = int(np.searchsorted(events["t"], t1_us))
        self.pending = [events[cut:]] if cut < len(events) else []
        return events[:cut]

    def _batch(self) -> tuple[np.ndarray, list[Segment], int]:
        """Events and segment starts of the next batch, and the batch's start (µs)."""
        t0 = self.batches * self.params.batch_us
        t1 = min(t0 + self.params.batch_us, self.end_us)
        return self.simulate(t1), self.path.starting_in(t0, t1), t0

    def read(self) -> list[Output] | None:
        p = self.params
        if self.batches >= self.n_batches or self.batches * p.batch_us >= self.end_us:
            return None
        if self.t_start is None:
            self.t_start = now_ns()
        if self.next_batch is None:  # made while waiting, as a camera fills its buffer
            self.next_batch = self._batch()
        if not wait_until(self.t_start + (self.batches + 1) * self.period_ns):
            return []
        events, segments, start_us = self.next_batch
        self.next_batch = None
        self.batches += 1
        self.events += len(events)
        t0 = now_ns()
        first = int(events["t"][0]) if len(events) else start_us  # an empty batch: its start
        out: list[Output] = [("out", Frame(FrameKind.EVENTS, events, t0, t_device=first / 1e6))]
        for s in segments:
            self.motion = self.names[s.label]
            out.append(("labels", Frame(FrameKind.MARKERS, np.array([self.names[s.label]]), t0,
                                        t_device=s.t_us / 1e6,
                                        meta={"t_us": s.t_us, "class": s.label, "vx": s.vx,
                                              "vy": s.vy})))
        return out

    def figures(self) -> dict[str, Figure]:
        return {"events": self.events, "noise_events": self.noise_events,
                "refractory_drops": self.refractory_drops, "simulated_s": self.t_us / 1e6,
                "motion": self.motion}
