"""event_frames, voxel_grid, time_surface: each window equals a plainly written NumPy reference
computed on the whole recording at once (random and real events), and the output does not
depend on how the stream is cut into batches (empty and single-event batches included). The
kernels' shortcuts (the time surface's exp tables, the invariant scan over 64-bit words) equal
plain Python, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from conftest import event_recording
from kernels.event_repr import decay_surface, decay_table
from nodes.event_repr import EventFrames, EventWindows, TimeSurface, VoxelGrid
from pipeline import EVENT_DTYPE, Frame, FrameKind, StreamInfo, StreamMismatch

W, H = 17, 11
NEVER = np.iinfo(np.int64).min


# --- streams and the node under test -------------------------------------------------------

def events_with_gaps(n: int, rng: np.random.Generator, window: int, width: int = W,
                     height: int = H) -> np.ndarray:
    """Time-sorted random events: equal times, events on window edges, gaps of a few windows and
    of hundreds (beyond ``max_empty``)."""
    steps = rng.choice([0, 0, 1, 3, window // 2, window, 7 * window, 300 * window], size=n,
                       p=[.2, .1, .3, .2, .1, .07, .02, .01])
    ev = np.empty(n, EVENT_DTYPE)
    ev["t"] = 1_000_000 + np.cumsum(steps)
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n)
    ev.flags.writeable = False  # as a batch off the wire; and no node may write its input
    return ev


def cuts(n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Consecutive batches covering 0 .. n: empty ones, single events, and longer runs."""
    sizes = rng.choice([0, 1, 1, 2, 5, 40, 900], size=n + 1)
    ends = np.minimum(np.cumsum(sizes), n)
    ends = np.concatenate([[0], ends[ends < n], [n]])
    return list(zip(ends[:-1].tolist(), ends[1:].tolist()))


def make(cls: type[EventWindows], sensor: tuple[int, int, int] = (W, H, 2),
         **params) -> EventWindows:
    node = cls(cls.Params(**params), "repr")
    node.setup({"in": StreamInfo(FrameKind.EVENTS, dtype="events", sensor_size=sensor,
                                 clock="file")})
    node.open()
    return node


def run(node: EventWindows, ev: np.ndarray, batches: list[tuple[int, int]] | None = None
        ) -> list[Frame]:
    """Feed ``ev`` cut into ``batches`` (default: one), the k-th stamped ``k``; then close."""
    out = []
    for k, (a, b) in enumerate(batches or [(0, len(ev))]):
        out += [f for _, f in node.process("in", Frame(FrameKind.EVENTS, ev[a:b], k))]
    return out + [f for _, f in node.close()]


# --- references: the whole recording at once, by arithmetic on all its times ----------------

def windows_by_time(t: np.ndarray, window: int, max_empty: int) -> list[tuple[int, np.ndarray]]:
    """(start µs, event indices) of every window emitted for sorted times ``t``: each window
    holding events, followed by at most ``max_empty`` of the empty windows before the next."""
    k = (t - t[0]) // window
    full = np.unique(k)
    out = []
    for a, b in zip(full, [*full[1:], None]):
        out.append((int(t[0] + a * window), np.flatnonzero(k == a)))
        if b is not None:
            out += [(int(t[0] + m * window), np.array([], int))
                    for m in range(a + 1, min(b, a + 1 + max_empty))]
    return out


def windows_by_count(n: int, count: int) -> list[np.ndarray]:
    return [np.arange(i, min(i + count, n)) for i in range(0, n, count)]


def counts(ev: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    frame = np.zeros(shape)
    np.add.at(frame, (ev["p"].astype(int), ev["y"], ev["x"]), 1)
    return frame


def voxels(ev: np.ndarray, bins: int, t0: int, span: int, shape: tuple[int, int]) -> np.ndarray:
    """Zhu et al.'s volume in float64: t* = (B-1)(t - t0)/span, weight 1 - |b - t*|."""
    grid = np.zeros((bins, *shape))
    pol = np.where(ev["p"] == 1, 1.0, -1.0)
    ts = (bins - 1) * (ev["t"] - t0) / span if span else np.zeros(len(ev))
    b = np.floor(ts).astype(int)
    frac = ts - b
    np.add.at(grid, (b, ev["y"], ev["x"]), pol * (1 - frac))
    right = b + 1 < bins
    np.add.at(grid, (b[right] + 1, ev["y"][right], ev["x"][right]), (pol * frac)[right])
    return grid


def surface(ev: np.ndarray, t_now: int, tau: float, shape: tuple[int, ...]) -> np.ndarray:
    """Last time per pixel and polarity of the (time-sorted) events so far, decayed to t_now."""
    last = np.full(shape, NEVER)
    np.maximum.at(last, (ev["p"].astype(int), ev["y"], ev["x"]), ev["t"])
    fired = last != NEVER
    return np.where(fired, np.exp(-(t_now - np.where(fired, last, t_now)) / tau), 0.0)


def float32_sum_atol(terms: int) -> float:
    """Bound on |float32 sum - exact sum| of ``terms`` voxel weights each of magnitude <= 1:
    each weight is rounded twice in float32 (its fraction, then 1 - fraction: 2 x 2^-24) and
    each of the ``terms`` partial sums (each <= terms) once (terms x 2^-24)."""
    return (2 * terms + terms * terms) * 2.0 ** -24


def max_per_pixel(ev: np.ndarray) -> int:
    return int(np.bincount(ev["y"].astype(int) * 4096 + ev["x"]).max()) if len(ev) else 0


def check_voxels(got: np.ndarray, ev: np.ndarray, bins: int, t0: int, span: int) -> None:
    np.testing.assert_allclose(got, voxels(ev, bins, t0, span, got.shape[1:]), rtol=0,
                               atol=float32_sum_atol(max_per_pixel(ev)))


def check_surface(got: np.ndarray, ev: np.ndarray, t_now: int, tau: float) -> None:
    # one float32 rounding of the same float64 value (math.exp and np.exp may differ by one
    # float64 ulp, which moves the float32 result by at most one float32 ulp); atol: the least
    # float32 subnormal, for values that round to it or to 0
    np.testing.assert_allclose(got, surface(ev, t_now, tau, got.shape), rtol=2.0 ** -23,
                               atol=2.0 ** -149)


# --- each node against its reference, whole and cut anywhere --------------------------------

WINDOW = 100


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_event_frames_by_time_equal_the_reference_however_the_stream_is_cut(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ev = events_with_gaps(3000, rng, WINDOW)
    whole = run(make(EventFrames, window_us=WINDOW, max_empty=20), ev)
    expected = windows_by_time(ev["t"], WINDOW, 20)
    assert len(whole) == len(expected) > 100
    for f, (start, idx) in zip(whole, expected):
        assert f.kind is FrameKind.TENSOR and f.data.dtype == np.float32
        assert f.t_device == start / 1e6
        np.testing.assert_array_equal(f.data, counts(ev[idx], (2, H, W)))  # integers: exact
    cut = run(make(EventFrames, window_us=WINDOW, max_empty=20), ev, cuts(len(ev), rng))
    assert_same_frames(cut, whole)


@pytest.mark.parametrize("seed", [0, 1])
def test_voxel_grids_by_time_equal_the_reference_however_the_stream_is_cut(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ev = events_with_gaps(3000, rng, WINDOW)
    whole = run(make(VoxelGrid, window_us=WINDOW, bins=4, max_empty=20), ev)
    expected = windows_by_time(ev["t"], WINDOW, 20)
    assert len(whole) == len(expected)
    for f, (start, idx) in zip(whole, expected):
        assert f.data.shape == (4, H, W) and f.t_device == start / 1e6
        check_voxels(f.data, ev[idx], 4, start, WINDOW)
    cut = run(make(VoxelGrid, window_us=WINDOW, bins=4, max_empty=20), ev, cuts(len(ev), rng))
    assert_same_frames(cut, whole)


@pytest.mark.parametrize("seed", [0, 1])
def test_time_surfaces_by_time_equal_the_reference_however_the_stream_is_cut(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ev = events_with_gaps(3000, rng, WINDOW)
    tau = 150.0
    whole = run(make(TimeSurface, step_us=WINDOW, tau_us=tau, max_empty=20), ev)
    expected = windows_by_time(ev["t"], WINDOW, 20)
    assert len(whole) == len(expected)
    for f, (start, _) in zip(whole, expected):
        t_now = start + WINDOW  # the window's end, also for the last, partial one
        check_surface(f.data, ev[ev["t"] < t_now], t_now, tau)
    cut = run(make(TimeSurface, step_us=WINDOW, tau_us=tau, max_empty=20), ev,
              cuts(len(ev), rng))
    assert_same_frames(cut, whole)


@pytest.mark.parametrize("count", [1, 7, 250])
def test_windows_by_count_equal_the_reference_however_the_stream_is_cut(count: int) -> None:
    rng = np.random.default_rng(count)
    ev = events_with_gaps(2000, rng, WINDOW)
    tau = 150.0
    outputs = {}
    for cls, params in ((EventFrames, {}), (VoxelGrid, {"bins": 3}), (TimeSurface,
                                                                        {"tau_us": tau})):
        whole = run(make(cls, count=count, **params), ev)
        windows = windows_by_count(len(ev), count)
        assert len(whole) == len(windows)
        for f, idx in zip(whole, windows):
            part, t0, t1 = ev[idx], int(ev["t"][idx[0]]), int(ev["t"][idx[-1]])
            assert f.t_device == t0 / 1e6
            if cls is EventFrames:
                np.testing.assert_array_equal(f.data, counts(part, (2, H, W)))
            elif cls is VoxelGrid:  # normalised by the window's first and last event
                check_voxels(f.data, part, 3, t0, t1 - t0)
            else:  # t_now: the window's last event
                check_surface(f.data, ev[:idx[-1] + 1], t1, tau)
        assert_same_frames(run(make(cls, count=count, **params), ev, cuts(len(ev), rng)), whole)
        outputs[cls] = whole
    assert sum(len(f) for f in outputs.values()) == 3 * -(-len(ev) // count)


def assert_same_frames(got: list[Frame], expected: list[Frame]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.t_device == b.t_device
        np.testing.assert_array_equal(a.data, b.data)  # bit for bit: same sums, same order


# --- real recordings ------------------------------------------------------------------------

def real_events(name: str) -> tuple[np.ndarray, tuple[int, int]]:
    path = event_recording(name)
    if name.endswith(".aedat4"):
        dv = pytest.importorskip("dv_processing")
        rec = dv.io.MonoCameraRecording(str(path))
        parts = []
        while (batch := rec.getNextEventBatch()) is not None:
            parts.append(batch.numpy())
        raw = np.concatenate(parts)
        fields = {"t": "timestamp", "x": "x", "y": "y", "p": "polarity"}
        size = tuple(rec.getEventResolution())
    else:
        expelliarmus = pytest.importorskip("expelliarmus")  # GPL-2.0: test-time only
        raw = expelliarmus.Wizard(encoding="evt3").read(str(path))
        fields = {f: f for f in "txyp"}
        size = (1280, 720)
    ev = np.empty(len(raw), EVENT_DTYPE)
    for ours, theirs in fields.items():
        ev[ours] = raw[theirs]
    ev.flags.writeable = False
    return ev, size


@pytest.mark.parametrize(("name", "window"), [("sample.aedat4", 40_000),
                                              ("evt3_sample.raw", 10_000)])
def test_real_recordings_equal_the_reference_however_they_are_cut(name: str, window: int) -> None:
    ev, (width, height) = real_events(name)
    rng = np.random.default_rng(3)
    batches = cuts(len(ev), rng)
    expected = windows_by_time(ev["t"], window, 100)
    sensor = (width, height, 2)
    tau = window / 2
    for cls, params in ((EventFrames, {"window_us": window}),
                        (VoxelGrid, {"window_us": window, "bins": 5}),
                        (TimeSurface, {"step_us": window, "tau_us": tau})):
        whole = run(make(cls, sensor, **params), ev)
        assert len(whole) == len(expected) > 4
        for f, (start, idx) in zip(whole, expected):
            assert f.t_device == start / 1e6
            if cls is EventFrames:
                np.testing.assert_array_equal(f.data, counts(ev[idx], (2, height, width)))
            elif cls is VoxelGrid:
                check_voxels(f.data, ev[idx], 5, start, window)
            else:
                check_surface(f.data, ev[ev["t"] < start + window], start + window, tau)
        assert_same_frames(run(make(cls, sensor, **params), ev, batches), whole)


# --- the rules that the references do not show ---------------------------------------------

def stream(*rows: tuple[int, int, int, int]) -> np.ndarray:
    """Events from (t, x, y, p) rows."""
    ev = np.empty(len(rows), EVENT_DTYPE)
    for i, (t, x, y, p) in enumerate(rows):
        ev[i] = (t, x, y, p)
    return ev


def test_voxel_polarity_is_signed_from_the_integer_p_off_events_count_minus_one() -> None:
    # the known peer bug: p stored as bool and mapped with `pols[pols == 0] = -1` turned OFF
    # events into +1; here OFF (p = 0) must give -1 and ON +1, at the bins of their times
    ev = stream((0, 1, 1, 0), (0, 2, 1, 1), (50, 3, 1, 0), (99, 4, 1, 0))
    [f] = run(make(VoxelGrid, window_us=100, bins=3), ev)
    assert f.data[0, 1, 1] == -1.0 and f.data[0, 1, 2] == 1.0
    assert f.data[1, 1, 3] == -1.0  # t* = 2 * 50 / 100 = 1: wholly in bin 1
    assert f.data[1, 1, 4] == pytest.approx(-0.02) and f.data[2, 1, 4] == pytest.approx(-0.98)
    assert f.data.sum() == pytest.approx(-2.0)  # every event's whole weight, signed
    assert ev["p"].tolist() == [0, 1, 0, 0]  # the input was not touched


def test_a_window_goes_out_when_an_event_at_or_after_its_end_arrives() -> None:
    node = make(EventFrames, window_us=100)
    assert not list(node.process("in", Frame(FrameKind.EVENTS, stream((1000, 0, 0, 1),
                                                                      (1099, 1, 0, 1)), 5)))
    assert not list(node.process("in", Frame(FrameKind.EVENTS, stream(), 6)))  # empty batch
    [(_, f)] = node.process("in", Frame(FrameKind.EVENTS, stream((1100, 2, 0, 0)), 7))
    assert f.data.sum() == 2 and f.t_device == 1000 / 1e6
    assert f.t_origin_ns == 7  # the frame whose event completed it
    [(_, last)] = node.close()
    assert last.data[0, 0, 2] == 1 and last.t_device == 1100 / 1e6 and last.t_origin_ns == 7
    assert not list(node.close())  # nothing left


def test_a_long_gap_emits_at_most_max_empty_windows_and_counts_the_rest() -> None:
    node = make(EventFrames, window_us=10, max_empty=3)
    frames = run(node, stream((0, 0, 0, 1), (1_000_000_005, 1, 0, 1)))
    assert [f.t_device * 1e6 for f in frames] == pytest.approx([0, 10, 20, 30, 1_000_000_000])
    assert [f.data.sum() for f in frames] == [1, 0, 0, 0, 1]
    assert node.figures()["skipped"] == 100_000_000 - 1 - 3
    node = make(TimeSurface, step_us=10, tau_us=10.0, max_empty=0)
    frames = run(node, stream((0, 0, 0, 1), (35, 1, 0, 1)))
    assert [f.t_device for f in frames] == [0, 30e-6] and node.figures()["skipped"] == 2
    assert frames[1].data[1, 0, 0] == pytest.approx(np.exp(-4.0))  # decayed to t_now = 40


def test_a_clock_that_steps_back_by_more_than_a_window_starts_a_new_grid() -> None:
    node = make(TimeSurface, step_us=10, tau_us=10.0)
    ev = stream((1000, 0, 0, 1), (1012, 1, 0, 1), (1008, 2, 0, 1),  # late: stays in its window
                (100, 3, 0, 1), (125, 4, 0, 1))                     # a restarted clock
    frames = run(node, ev)
    assert [round(f.t_device * 1e6) for f in frames] == [1000, 1010, 100, 110, 120]
    assert node.figures()["restarts"] == 1 and node.figures()["non_monotonic"] == 2
    assert frames[1].data[1, 0, 2] == pytest.approx(np.exp(-1.2))  # 1008 seen at t_now 1020
    assert frames[2].data[1, 0, :3].tolist() == [0, 0, 0]  # the old clock's times forgotten
    assert frames[2].data[1, 0, 3] == pytest.approx(np.exp(-1.0))
    counted = run(make(EventFrames, window_us=10), ev)
    assert [f.data.sum() for f in counted] == [1, 2, 1, 0, 1]


def test_events_outside_the_sensor_are_dropped_and_counted() -> None:
    node = make(EventFrames, window_us=10)
    [f] = run(node, stream((0, 0, 0, 1), (1, W, 0, 1), (2, 0, -1, 0), (3, 1, 1, 0)))
    assert f.data.sum() == 2 and node.figures()["out_of_range"] == 2


def test_reset_forgets_the_partial_window_and_the_last_times() -> None:
    ev = events_with_gaps(500, np.random.default_rng(9), WINDOW)
    for cls in (EventFrames, VoxelGrid, TimeSurface):
        node = make(cls, count=64)
        list(node.process("in", Frame(FrameKind.EVENTS, ev[:100], 0)))
        node.reset()
        assert_same_frames(run(node, ev[100:]), run(make(cls, count=64), ev[100:]))


def test_stream_infos_give_shape_rate_and_parameters() -> None:
    info = EventFrames(EventFrames.Params(window_us=2000), "f").setup(
        {"in": StreamInfo(FrameKind.EVENTS, dtype="events", sensor_size=(W, H, 2), clock="file")})
    out = info["out"]
    assert (out.kind, out.shape, out.srate, out.dtype, out.clock) == \
        (FrameKind.TENSOR, (2, H, W), 500.0, "float32", "file")
    assert out.extra["window_us"] == 2000 and out.extra["axes"] == "PHW"
    vox = VoxelGrid(VoxelGrid.Params(count=500, bins=7), "v").setup(
        {"in": StreamInfo(FrameKind.EVENTS, dtype="events", sensor_size=(W, H, 2))})["out"]
    assert vox.shape == (7, H, W) and vox.srate == 0.0 and vox.extra["window_us"] is None
    assert vox.extra["count"] == 500 and vox.extra["axes"] == "BHW"
    surf = TimeSurface(TimeSurface.Params(step_us=4000, tau_us=1e3), "s").setup(
        {"in": StreamInfo(FrameKind.EVENTS, dtype="events", sensor_size=(W, H, 2))})["out"]
    assert surf.srate == 250.0 and surf.extra["tau_us"] == 1e3


def test_a_single_polarity_sensor_gives_one_channel_and_no_voxel_grid() -> None:
    node = make(EventFrames, (W, H, 1), window_us=10)
    [f] = run(node, stream((0, 0, 0, 0), (1, 0, 0, 1)))
    assert f.data.shape == (1, H, W) and f.data[0, 0, 0] == 2
    with pytest.raises(StreamMismatch, match="sensor has 1 polarity, not 2"):
        make(VoxelGrid, (W, H, 1))


def test_an_input_without_a_sensor_size_and_bad_params_are_refused() -> None:
    with pytest.raises(StreamMismatch, match="no sensor_size"):
        EventFrames(EventFrames.Params(), "f").setup(
            {"in": StreamInfo(FrameKind.EVENTS, dtype="events")})
    for cls, bad in ((EventFrames, {"window_us": 0}), (VoxelGrid, {"bins": 0}),
                     (TimeSurface, {"tau_us": 0}), (EventFrames, {"count": 0}),
                     (EventFrames, {"max_empty": -1}), (EventFrames, {"windows": 3})):
        with pytest.raises(ValidationError):
            cls.Params(**bad)


def test_x_is_the_last_axis_y_the_middle_and_polarity_the_first() -> None:
    # Tonic's per-frame layout (its ToFrame gives T frames as (T, P, H, W))
    [f] = run(make(EventFrames, window_us=10), stream((0, W - 1, 0, 1)))
    assert f.data.shape == (2, H, W) and f.data[1, 0, W - 1] == 1


@pytest.mark.parametrize("cls", [EventFrames, VoxelGrid])
def test_no_output_frame_changes_after_it_went_out(cls: type[EventWindows]) -> None:
    # VoxelGrid accumulates into one grid for the stream's life: each window must be a copy
    node = make(cls, window_us=10)
    sent = []
    for k, t in enumerate([0, 10, 11, 40, 41, 55]):
        for _, f in node.process("in", Frame(FrameKind.EVENTS, stream((t, 0, 0, 1)), k)):
            sent.append((f, f.data.copy()))
    sent += [(f, f.data.copy()) for _, f in node.close()]
    assert [int(copy.sum()) for _, copy in sent] == [1, 2, 0, 0, 2, 1]
    for f, copy in sent:
        np.testing.assert_array_equal(f.data, copy)
    assert len({id(f.data) for f, _ in sent}) == 5  # the empty windows share one array ...
    assert not sent[2][0].data.flags.writeable      # ... which is read-only


# --- the kernels' shortcuts, against plain code ---------------------------------------------

@pytest.mark.parametrize("tau", [0.3, 150.0, 12_345.678, 20_000.0, 5e6, 1e300])
def test_the_decay_tables_give_the_bits_of_math_exp_for_every_age(tau: float) -> None:
    """`decay_surface` reads exp from two tables and checks the product's float32 rounding;
    it must give exactly float32(math.exp(-(age / tau))) — the rounding of a correctly computed
    float64 exp — for every age, 0 beyond 104 tau and for pixels that never fired. Ages: every
    one up to 3000 µs, a million random ones up to 110 tau (past the cut, and past the tables
    for tau = 5 s), both sides of the cut, and negative ones (counted as 0)."""
    rng = np.random.default_rng(int(tau) % 1000)
    cut = 104 * tau
    ages = np.concatenate([np.arange(3000), rng.integers(0, int(min(110 * tau, 2**62)), 10**6),
                           [int(cut) + k for k in range(-3, 4) if 0 <= int(cut) + k < 2**62],
                           [-1, -10**6]]).astype(np.int64)
    t_now = 2**40
    last = np.concatenate([t_now - ages, [np.iinfo(np.int64).min]]).reshape(1, 1, -1)
    got = decay_surface(last, t_now, tau, decay_table(tau)).ravel()
    want = [np.float32(math.exp(-(max(a, 0) / tau))) if max(a, 0) / tau <= 104 else 0.0
            for a in ages.tolist()] + [0.0]
    np.testing.assert_array_equal(got, np.array(want, np.float32))  # bit for bit
    assert got[:-1].any() and not got[-1]


def test_ages_whose_table_product_rounds_the_other_way_get_the_bits_of_math_exp() -> None:
    """At these ages (found by a search over 50 M ages for tau = 1 s) the product of the two
    decay tables alone rounds to the float32 next to math.exp's: the check near rounding
    boundaries (`DecayTable`) must catch them."""
    tau = 1e6
    table = decay_table(tau)
    ages = np.array([86_682_136, 80_003_603, 76_836_053], np.int64)
    product = table.high[ages >> table.shift] * table.low[ages & (1 << table.shift) - 1]
    exact = np.array([math.exp(-(a / tau)) for a in ages.tolist()], np.float32)
    assert (product.astype(np.float32) != exact).all()
    got = decay_surface((10**9 - ages).reshape(1, 1, -1), 10**9, tau, table).ravel()
    np.testing.assert_array_equal(got, exact)
