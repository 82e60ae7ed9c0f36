"""Event filters: each equals a plainly written reference (and dv-processing's filter where it
has one) on random and on real events, however the stream is cut into batches."""

from __future__ import annotations

import datetime
import functools
import textwrap
from typing import Any, Callable

import numpy as np
import pytest

from conftest import data_path, random_chunks
from nodes.event_filters import (Denoise, Downsample, EventFilter, HotPixels, Polarity, Refractory,
                                 Roi)
from pipeline import EVENT_DTYPE, Frame, FrameKind, ParamError, StreamInfo, config, graph
from pipeline.config import ConfigError
from pipeline.frame import concat_events

dv = pytest.importorskip("dv_processing", reason="dv-processing (the [events] extra) is the "
                                                 "reference for the dv-semantics filters")

NEIGHBOURS = [(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dx or dy]


# --- events ---------------------------------------------------------------------------------

def make_events(t: Any, x: Any, y: Any, p: Any) -> np.ndarray:
    ev = np.zeros(len(t), EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = t, x, y, p
    return ev


def random_events(rng: np.random.Generator, n: int, width: int, height: int, t0: int = 0,
                  backwards: float = 0.0) -> np.ndarray:
    """``n`` events on a small sensor, dense enough that neighbours and refractory periods
    matter: time steps of 0 (a third: simultaneous events) to 400 µs, a few pixels firing far
    more than the rest (hot), and a fraction ``backwards`` of steps going back in time."""
    steps = rng.integers(0, 400, n) * (rng.random(n) > 1 / 3)
    steps[rng.random(n) < backwards] *= -1
    x, y = rng.integers(0, width, n), rng.integers(0, height, n)
    hot = rng.random(n) < 0.15
    x[hot] = rng.choice([1, 5, width - 1], hot.sum()) % width
    y[hot] = rng.choice([0, 3], hot.sum()) % height
    return make_events(t0 + np.cumsum(steps), x, y, rng.integers(0, 2, n))


def recording(name: str) -> tuple[np.ndarray, int, int]:
    """A real recording of ``data/events`` as EVENT_DTYPE, with its sensor width and height.
    AEDAT4 read by dv-processing, EVT3 by expelliarmus (test-time cross-check only: GPL)."""
    path = data_path() / "events" / name
    if not path.exists():
        pytest.skip(f"no {path} (set NEUROFLOW_DATA)")
    return _read(str(path))


@functools.lru_cache(maxsize=None)
def _read(path: str) -> tuple[np.ndarray, int, int]:
    if path.endswith(".raw"):
        expelliarmus = pytest.importorskip("expelliarmus")
        a = expelliarmus.Wizard(encoding="evt3").read(path)
        return make_events(a["t"], a["x"], a["y"], a["p"]), 1280, 720
    rec = dv.io.MonoCameraRecording(path)
    parts = []
    while (batch := rec.getNextEventBatch()) is not None:
        parts.append(batch.numpy())
    a = np.concatenate(parts)
    width, height = rec.getEventResolution()
    return make_events(a["timestamp"], a["x"], a["y"], a["polarity"]), width, height


REAL = ["sample.aedat4", "davis.aedat4", "evt3_sample.raw"]


# --- dv-processing --------------------------------------------------------------------------

def dv_store(ev: np.ndarray) -> Any:
    store = dv.EventStore()
    for t, x, y, p in zip(*(ev[f].tolist() for f in ("t", "x", "y", "p"))):
        store.push_back(t, x, y, bool(p))
    return store


def from_dv(store: Any) -> np.ndarray:
    a = store.numpy()
    return make_events(a["timestamp"], a["x"], a["y"], a["polarity"])


def dv_filtered(dv_filter: Any, store: Any) -> np.ndarray:
    dv_filter.accept(store)
    return from_dv(dv_filter.generateEvents())


# --- references: plain NumPy / Python, independent of the kernels ---------------------------

def ref_roi(ev: np.ndarray, w: int, h: int, x: int = 0, y: int = 0, width: int = 0,
            height: int = 0, shift: bool = True) -> np.ndarray:
    inside = (ev["x"] >= x) & (ev["x"] < x + width) & (ev["y"] >= y) & (ev["y"] < y + height)
    out = ev[inside]  # boolean indexing copies
    if shift:
        out["x"] -= x
        out["y"] -= y
    return out


def ref_downsample(ev: np.ndarray, w: int, h: int, factor: int = 2,
                   factor_y: int | None = None) -> np.ndarray:
    out = ev.copy()
    out["x"] = np.floor(ev["x"] / factor)
    out["y"] = np.floor(ev["y"] / (factor_y or factor))
    return out


def ref_polarity(ev: np.ndarray, w: int, h: int, keep: str = "both",
                 merge: int | None = None) -> np.ndarray:
    out = ev[np.isin(ev["p"], {"on": [1], "off": [0], "both": [0, 1]}[keep])]
    if merge is not None:
        out["p"] = merge
    return out


def ref_refractory(ev: np.ndarray, w: int, h: int, period_us: int = 250) -> np.ndarray:
    last: dict[tuple[int, int], int] = {}
    keep = []
    for t, x, y in zip(ev["t"].tolist(), ev["x"].tolist(), ev["y"].tolist()):
        keep.append((x, y) not in last or t - last[x, y] >= period_us)
        last[x, y] = t
    return ev[np.array(keep, bool)]


def ref_denoise(ev: np.ndarray, w: int, h: int, window_us: int = 2000) -> np.ndarray:
    last: dict[tuple[int, int], int] = {}
    keep = []
    for t, x, y in zip(ev["t"].tolist(), ev["x"].tolist(), ev["y"].tolist()):
        keep.append(any(t - last[n] < window_us for n in ((x + dx, y + dy) for dx, dy in NEIGHBOURS)
                        if n in last))
        last[x, y] = t
    return ev[np.array(keep, bool)]


def ref_hot_pixels(ev: np.ndarray, w: int, h: int, pixels: list = (), calibration_us: int = 0,
                   min_count: int | None = 10_000,
                   median_factor: float | None = None) -> np.ndarray:
    """iniVation DV's hot-pixel loop, written out: learn, then judge each event."""
    masked = set(map(tuple, pixels))
    counts: dict[tuple[int, int], int] = {}
    start, learning = None, calibration_us > 0
    keep = []
    for t, x, y in zip(ev["t"].tolist(), ev["x"].tolist(), ev["y"].tolist()):
        if learning:
            start = t if start is None else start
            counts[x, y] = counts.get((x, y), 0) + 1
            if t > start + calibration_us:
                median = float(np.median(list(counts.values())))
                masked |= {px for px, c in counts.items()
                           if (min_count is not None and c >= min_count)
                           or (median_factor is not None and c > median_factor * median)}
                learning = False
        keep.append((x, y) not in masked)
    return ev[np.array(keep, bool)]


# --- running a node -------------------------------------------------------------------------

def make(cls: type[EventFilter], sensor: tuple[int, int], **params: Any) -> EventFilter:
    node = cls(cls.Params(**params), "f")
    node.setup({"in": StreamInfo(FrameKind.EVENTS, dtype="events", sensor_size=(*sensor, 2))})
    node.open()
    return node


def run(node: EventFilter, ev: np.ndarray,
        chunks: list[tuple[int, int]] | None = None) -> np.ndarray:
    """``ev`` through ``node`` in batches ``chunks`` (default: one), outputs concatenated."""
    outs = []
    for a, b in chunks or [(0, len(ev))]:
        for port, frame in node.process("in", Frame(FrameKind.EVENTS, ev[a:b], 0)):
            assert port == "out" and frame.data.dtype == EVENT_DTYPE and len(frame.data)
            assert frame.t_device == frame.data["t"][0] / 1e6
            outs.append(frame.data)
    return concat_events(outs)


def assert_same_events(got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    assert got.dtype == EVENT_DTYPE and len(got) == len(want), f"{what}: {len(got)} vs {len(want)}"
    for field in ("t", "x", "y", "p"):
        assert np.array_equal(got[field], want[field]), f"{what}: field {field} differs"


FILTERS: list[tuple[type[EventFilter], Callable[..., np.ndarray], dict[str, Any]]] = [
    (Roi, ref_roi, {"x": 3, "y": 2, "width": 11, "height": 9}),
    (Roi, ref_roi, {"x": 0, "y": 5, "width": 24, "height": 11, "shift": False}),
    (Downsample, ref_downsample, {"factor": 3, "factor_y": 2}),
    (Downsample, ref_downsample, {"factor": 5}),
    (Polarity, ref_polarity, {"keep": "on"}),
    (Polarity, ref_polarity, {"keep": "off", "merge": 1}),
    (Polarity, ref_polarity, {"merge": 0}),
    (Refractory, ref_refractory, {"period_us": 3000}),
    (Refractory, ref_refractory, {"period_us": 0}),
    (Denoise, ref_denoise, {"window_us": 600}),
    (Denoise, ref_denoise, {"window_us": 0}),
    (HotPixels, ref_hot_pixels, {"pixels": [(0, 0), (5, 3)], "calibration_us": 0}),
    (HotPixels, ref_hot_pixels, {"pixels": [(7, 7)], "calibration_us": 40_000, "min_count": 60}),
    (HotPixels, ref_hot_pixels,
     {"calibration_us": 40_000, "min_count": None, "median_factor": 4.0}),
]
IDS = [f"{cls.type_name}-{'-'.join(f'{k}={v}' for k, v in params.items())}"
       for cls, _, params in FILTERS]


@pytest.mark.parametrize(("cls", "ref", "params"), FILTERS, ids=IDS)
def test_random_events_whole_and_cut_anywhere_equal_the_reference(cls, ref, params) -> None:
    """24 x 16 sensor, 6000 events (some simultaneous, some going back in time); batches of
    0..3 events (many empty and single-event batches) and of 0..700."""
    rng = np.random.default_rng(sum(map(ord, str(params))))
    ev = random_events(rng, 6000, 24, 16, backwards=0.02)
    want = ref(ev, 24, 16, **params)
    assert 0 < len(want) or cls is Roi  # a reference that keeps nothing would prove little
    node = make(cls, (24, 16), **params)
    assert_same_events(run(node, ev), want, "whole")
    for most in (3, 700):
        node.reset()
        assert_same_events(run(node, ev, random_chunks(len(ev), rng, most, least=0)), want,
                           f"batches of 0..{most}")


REAL_FILTERS = [
    (Roi, ref_roi, {"x": 50, "y": 40, "width": 200, "height": 150}),
    (Downsample, ref_downsample, {"factor": 3}),
    (Polarity, ref_polarity, {"keep": "off", "merge": 1}),
    (Refractory, ref_refractory, {"period_us": 1000}),
    (Denoise, ref_denoise, {"window_us": 2000}),
    (HotPixels, ref_hot_pixels, {"pixels": [(156, 75)], "calibration_us": 50_000,  # fires in all 3
                                 "min_count": None, "median_factor": 30.0}),
]


@pytest.mark.parametrize("name", REAL)
@pytest.mark.parametrize(("cls", "ref", "params"), REAL_FILTERS,
                         ids=[cls.type_name for cls, _, _ in REAL_FILTERS])
def test_real_events_cut_anywhere_equal_the_reference(cls, ref, params, name: str) -> None:
    ev, width, height = recording(name)
    want = ref(ev, width, height, **params)
    assert 0 < len(want) < len(ev) or cls is Downsample
    node = make(cls, (width, height), **params)
    chunks = random_chunks(len(ev), np.random.default_rng(len(ev)), 5000, least=0)
    assert_same_events(run(node, ev, chunks), want, name)


def test_hot_pixels_learn_the_hot_pixels_of_a_real_recording() -> None:
    """sample.aedat4 (DVXplorer): the reference loop finds pixels firing > 30x the median in the
    first 50 ms, and the node masks exactly those (the test above checks the events)."""
    ev, width, height = recording("sample.aedat4")
    node = make(HotPixels, (width, height), calibration_us=50_000, min_count=None,
                median_factor=30.0)
    run(node, ev)
    learned = node.figures()["hot_pixels"]
    start = ev["t"][0]
    counts = np.zeros((height, width), int)
    first = ev[: np.argmax(ev["t"] > start + 50_000) + 1]
    np.add.at(counts, (first["y"], first["x"]), 1)
    assert learned == np.count_nonzero(counts > 30 * np.median(counts[counts > 0])) > 0
    assert node.figures()["learning"] == 0


# --- dv-processing's own filters ------------------------------------------------------------

@pytest.mark.parametrize("name", REAL)
def test_denoise_keeps_exactly_what_dv_processing_keeps_on_real_recordings(name: str) -> None:
    ev, width, height = recording(name)
    for window in (500, 2000, 10_000):
        ours = run(make(Denoise, (width, height), window_us=window), ev)
        theirs = dv_filtered(dv.noise.BackgroundActivityNoiseFilter(
            (width, height), datetime.timedelta(microseconds=window)), dv_store(ev))
        assert 0 < len(theirs) < len(ev)
        assert_same_events(ours, theirs, f"{name} {window} µs")


def test_denoise_keeps_exactly_what_dv_processing_keeps_on_random_events() -> None:
    """Times from 10 s on: dv-processing's time map starts at 0 µs, ours at 'never' (the one
    deviation, next test); past the window the two cannot differ."""
    rng = np.random.default_rng(7)
    for width, height in ((24, 16), (5, 3), (1, 1)):
        ev = random_events(rng, 5000, width, height, t0=10_000_000)
        for window in (1, 300, 5000):
            ours = run(make(Denoise, (width, height), window_us=window), ev,
                       random_chunks(len(ev), rng, 50, least=0))
            theirs = dv_filtered(dv.noise.BackgroundActivityNoiseFilter(
                (width, height), datetime.timedelta(microseconds=window)), dv_store(ev))
            assert_same_events(ours, theirs, f"{width}x{height} {window} µs")


def test_denoise_pixels_that_never_fired_support_nothing_unlike_dv_processing() -> None:
    """Two neighbours at t = 100 and 150 µs, the first event of the stream: dv-processing keeps
    both (its map says every pixel fired at 0 µs); ours drops the first (nothing fired before
    it) and keeps the second (its neighbour fired 50 µs earlier)."""
    ev = make_events([100, 150], [4, 5], [4, 4], [1, 0])
    theirs = dv_filtered(dv.noise.BackgroundActivityNoiseFilter(
        (10, 10), datetime.timedelta(microseconds=2000)), dv_store(ev))
    assert_same_events(theirs, ev)
    assert_same_events(run(make(Denoise, (10, 10)), ev), ev[1:])


@pytest.mark.parametrize("name", REAL)
def test_roi_polarity_downsample_and_pixel_masks_equal_dv_processing(name: str) -> None:
    ev, width, height = recording(name)
    store = dv_store(ev)
    rect = (50, 40, 200, 150)
    unshifted = run(make(Roi, (width, height), x=50, y=40, width=200, height=150, shift=False), ev)
    assert_same_events(unshifted, from_dv(dv.roiFilter(store, rect)), "roiFilter")
    assert_same_events(run(make(Roi, (width, height), x=50, y=40, width=200, height=150), ev),
                       make_events(unshifted["t"], unshifted["x"] - 50, unshifted["y"] - 40,
                                   unshifted["p"]), "shifted")
    for keep, p in (("on", True), ("off", False)):
        assert_same_events(run(make(Polarity, (width, height), keep=keep), ev),
                           from_dv(dv.polarityFilter(store, p)), f"polarityFilter {keep}")
    for fx, fy in ((2, 2), (3, 5)):
        assert_same_events(run(make(Downsample, (width, height), factor=fx, factor_y=fy), ev),
                           from_dv(dv.scale(store, fx, fy)), f"scale {fx} {fy}")
    pixels = [(int(x), int(y)) for x, y in zip(ev["x"][::997], ev["y"][::997])]
    mask = np.ones((height, width), np.uint8)
    for x, y in pixels:
        mask[y, x] = 0
    assert_same_events(run(make(HotPixels, (width, height), pixels=pixels, calibration_us=0), ev),
                       from_dv(dv.maskFilter(store, mask)), "maskFilter")


# --- the node's contract --------------------------------------------------------------------

def test_output_sensor_sizes() -> None:
    info = StreamInfo(FrameKind.EVENTS, dtype="events", sensor_size=(346, 260, 2), clock="file")

    def out(cls: type[EventFilter], **params: Any) -> StreamInfo:
        return cls(cls.Params(**params), "f").setup({"in": info})["out"]

    assert out(Roi, x=6, y=10, width=340, height=250).sensor_size == (340, 250, 2)
    assert out(Roi, x=6, y=10, width=340, height=250, shift=False) == info
    assert out(Downsample, factor=4).sensor_size == (87, 65, 2)  # ceil: pixel 345 -> 86
    assert out(Downsample, factor=2, factor_y=3).sensor_size == (173, 87, 2)
    for cls in (Polarity, Refractory, Denoise, HotPixels):
        assert out(cls) == info
    assert out(Downsample).clock == "file"


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"x": 320, "width": 1, "height": 1}, "x", "x=320 is outside the 320x240 sensor"),
    ({"x": 300, "width": 21, "height": 1}, "width", "at most 20"),
    ({"y": 200, "width": 1, "height": 41}, "height", "at most 40"),
])
def test_roi_outside_the_sensor_names_the_field(params: dict, field: str, message: str) -> None:
    with pytest.raises(ParamError) as e:
        make(Roi, (320, 240), **params)
    assert e.value.field == field and message in str(e.value), str(e.value)


def test_hot_pixel_parameters_are_checked_against_the_sensor() -> None:
    with pytest.raises(ParamError) as e:
        make(HotPixels, (32, 24), pixels=[(3, 4), (32, 0)])
    assert e.value.field == "pixels" and "(32, 0)" in str(e.value)
    with pytest.raises(ParamError) as e:
        make(HotPixels, (32, 24), min_count=None)
    assert e.value.field == "min_count"


def test_a_rectangle_too_large_points_at_its_yaml_line() -> None:
    text = textwrap.dedent("""\
        name: t
        nodes:
          cam: {type: synthetic_events, width: 64, height: 48, speed: max, max_batches: 1}
          crop: {type: roi, x: 10, y: 0,
                 width: 60, height: 48}
          out: {type: "null"}
        edges: ["cam -> crop -> out"]
        """)
    with pytest.raises(ConfigError) as e:
        graph.build(config.loads(text, "g.yaml"))
    assert str(e.value).startswith("g.yaml:5: node 'crop'") and "field 'width'" in str(e.value)


@pytest.mark.parametrize(("cls", "ref", "params"), FILTERS, ids=IDS)
def test_reset_returns_to_the_state_after_setup_and_input_is_never_modified(cls, ref,
                                                                             params) -> None:
    ev = random_events(np.random.default_rng(3), 3000, 24, 16)
    before = ev.tobytes()
    node = make(cls, (24, 16), **params)
    first = run(node, ev)
    node.reset()
    assert_same_events(run(node, ev), first)
    assert ev.tobytes() == before
    node.reset()  # a strided view (every other event) is read as its contiguous copy would be
    assert_same_events(run(node, ev[::2]), run(make(cls, (24, 16), **params), ev[::2].copy()))


def test_figures_count_events_in_removed_and_out_apart_from_invalid_ones() -> None:
    ev = make_events([10, 20, 30, 40, 50], [1, 2, 40, 3, 4], [1, 1, 1, 1, 1], [1, 0, 1, 0, 1])
    node = make(Polarity, (32, 24), keep="on")
    got = run(node, ev)
    assert_same_events(got, ev[[0, 4]])  # x = 40 is outside the sensor: dropped before
    assert {k: node.figures()[k] for k in ("events_in", "out_of_range", "removed", "events_out")} \
        == {"events_in": 5, "out_of_range": 1, "removed": 2, "events_out": 2}


def test_an_emptied_batch_emits_nothing_and_kept_batches_are_stamped_by_their_first_event() -> None:
    node = make(Roi, (32, 24), x=10, y=0, width=5, height=24)
    lone = make_events([5], [1], [1], [1])
    assert list(node.process("in", Frame(FrameKind.EVENTS, lone, 7))) == []
    [(_, frame)] = node.process("in", Frame(FrameKind.EVENTS, make_events([8, 9], [1, 12], [2, 2],
                                                                          [0, 0]), 7, t_device=0.5))
    assert frame.t_device == 9e-6 and frame.t_origin_ns == 7 and frame.data["x"].tolist() == [2]
    assert list(node.process("in", Frame(FrameKind.EVENTS, np.empty(0, EVENT_DTYPE), 8))) == []


def test_hot_pixel_learning_ends_at_the_first_event_past_the_span_which_it_already_judges() -> None:
    """Learning from t = 100 µs over 1000 µs: pixel (2, 2) fires 3 times up to t = 1100 (not
    yet past the span) and once at 1101, which ends learning with 4 events, is masked, and so is
    every later event of that pixel; (5, 5) fires once and passes."""
    ev = make_events([100, 500, 1100, 1101, 1200, 1300], [2, 2, 2, 2, 5, 2], [2, 2, 2, 2, 5, 2],
                     [1, 1, 1, 1, 1, 1])
    for chunks in ([(0, 6)], [(0, 3), (3, 3), (3, 4), (4, 6)], [(0, 4), (4, 6)]):
        node = make(HotPixels, (8, 8), calibration_us=1000, min_count=4)
        assert_same_events(run(node, ev, chunks), ev[[0, 1, 2, 4]])
        assert node.figures()["hot_pixels"] == 1 and node.figures()["removed"] == 2
