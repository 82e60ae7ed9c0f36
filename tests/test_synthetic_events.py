"""synthetic_events: the simulated pixel obeys its physics, the ground truth matches the motion the
events show, and the stream is the same whatever its batching or the day it is run."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from devices.event_sensor import (Noise, draw_noise, sensor_params, sensor_state, sensor_step)
from devices.synthetic_events import IMAGES, SyntheticEvents, load_image
from pipeline import EVENT_DTYPE, Frame, FrameKind, ParamError

#: A clean sensor: no mismatch, no refractory period, no background activity.
CLEAN = {"threshold_sigma": 0.0, "refractory_us": 0, "noise_rate_hz": 0.0}


def run(**params) -> tuple[SyntheticEvents, list[Frame], list[Frame]]:
    """The node (after its run), its event frames and its label frames, at full speed."""
    node = SyntheticEvents(SyntheticEvents.Params(speed="max", **params), "cam")
    node.setup({})
    events, labels = [], []
    while (out := node.read()) is not None:
        for port, frame in out:
            (events if port == "out" else labels).append(frame)
    return node, events, labels


def events_of(**params) -> np.ndarray:
    return np.concatenate([f.data for f in run(**params)[1]])


def per_pixel(ev: np.ndarray, width: int, height: int) -> list[np.ndarray]:
    """Each pixel's events (row-major), in stream order."""
    idx = ev["y"].astype(np.int64) * width + ev["x"]
    order = np.argsort(idx, kind="stable")
    return np.split(ev[order], np.cumsum(np.bincount(idx, minlength=width * height))[:-1])


# -- the pixel's physics ---------------------------------------------------------------------

BAR = dict(width=40, height=3, pattern="bar", size_px=10.0, velocity=200.0, step_us=500,
           log_eps=0.25, pos_threshold=0.2, neg_threshold=0.3, duration_s=0.256, **CLEAN)


def test_a_bright_bar_moving_right_fires_on_at_its_leading_edge_and_off_at_its_trailing_edge():
    ev = events_of(**BAR)
    v, w, eps, on, off, dt = 200.0, 10.0, 0.25, 0.2, 0.3, 500e-6
    # a pixel goes from dark (I = 0) to bright (I = 1) and back, as the bar covers it linearly in
    # time: ON events, one per threshold in ln((1 + eps) / eps), then OFF events until the
    # reference (moved up by n_on thresholds) is back within one OFF threshold of dark
    n_on = math.floor(math.log((1 + eps) / eps) / on)
    n_off = math.floor(n_on * on / off)
    assert (n_on, n_off) == (8, 5)  # the thresholds chosen far from an integer ratio
    for pixel in per_pixel(ev, 40, 3):
        x = int(pixel["x"][0])
        assert list(pixel["p"]) == [1] * n_on + [0] * n_off
        # exact crossing times: coverage c(t) = v t - x while the leading edge crosses the
        # pixel, so level ln(eps) + k on is met at c = exp(ln(eps) + k on) - eps; the trailing
        # edge uncovers it again from t = (x + w) / v. The simulation samples L = ln(eps + c)
        # every step and interpolates linearly between (sub-step time stamps): the error of
        # that in time is at most L''/L' dt^2 / 8 = v dt^2 / (8 (eps + c)) <= 25 µs here, a
        # twentieth of a step; plus 1 µs for the floor to the µs.
        k = np.arange(1, n_on + 1)
        t_on = (x + np.exp(np.log(eps) + k * on) - eps) / v * 1e6
        ref = np.log(eps) + n_on * on
        k = np.arange(1, n_off + 1)
        t_off = (x + w + 1 - (np.exp(ref - k * off) - eps)) / v * 1e6
        tolerance = v * dt ** 2 / (8 * eps) * 1e6 + 1
        np.testing.assert_allclose(pixel["t"], np.concatenate([t_on, t_off]), atol=tolerance)


def test_threshold_mismatch_sets_each_pixels_count():
    node, frames, _ = run(**{**BAR, "threshold_sigma": 0.03, "width": 60, "height": 4,
                             "duration_s": 0.355})
    theta_on, theta_off = node.sensor.theta_on, node.sensor.theta_off
    # 240 draws of N(0.2, 0.03): the sample mean is within 4 standard errors (0.03 / sqrt(240))
    for theta, nominal in ((theta_on, 0.2), (theta_off, 0.3)):
        assert abs(theta.mean() - nominal) < 4 * 0.03 / math.sqrt(theta.size)
        assert 0.02 < theta.std() < 0.04
    ev = np.concatenate([f.data for f in frames])
    delta = math.log(1.25 / 0.25)
    near_integer = lambda r: abs(r - round(r)) < 1e-6  # noqa: E731
    checked = 0
    for i, pixel in enumerate(per_pixel(ev, 60, 4)):
        n_on = math.floor(delta / theta_on[i])
        n_off = math.floor(n_on * theta_on[i] / theta_off[i])
        if near_integer(delta / theta_on[i]) or near_integer(n_on * theta_on[i] / theta_off[i]):
            continue  # a level met exactly at the end: rounding decides, not the model
        assert list(pixel["p"]) == [1] * n_on + [0] * n_off, i
        checked += 1
    assert checked > 200
    assert len({len(p) for p in per_pixel(ev, 60, 4)}) > 1  # the mismatch shows


@pytest.mark.parametrize("pattern", ["bar", "grating", "dots", "camera"])
def test_a_static_scene_without_noise_makes_no_events(pattern: str):
    node, frames, labels = run(width=64, height=48, pattern=pattern, velocity=0.0,
                               noise_rate_hz=0.0, duration_s=0.2)
    assert sum(len(f.data) for f in frames) == 0
    assert len(frames) == 20 and len(labels) == 1


def test_background_activity_has_the_configured_rate_poisson_and_balanced():
    rate, seconds, w, h = 20.0, 1.0, 64, 48
    node, frames, _ = run(width=w, height=h, pattern="dots", velocity=0.0, noise_rate_hz=rate,
                          refractory_us=0, duration_s=seconds)
    ev = np.concatenate([f.data for f in frames])
    expected = rate * w * h * seconds  # 61440 events; Poisson: SD = sqrt(61440) = 248
    assert abs(len(ev) - expected) < 4 * math.sqrt(expected)
    assert node.figures()["noise_events"] == len(ev)  # a reset reference makes no signal event
    # fair polarity: binomial SD of the ON share is 0.5 / sqrt(n) = 0.002
    assert abs(ev["p"].mean() - 0.5) < 4 * 0.5 / math.sqrt(len(ev))
    # independent Poisson pixels: counts have variance = mean (dispersion 1, SE sqrt(2 / n_px))
    counts = np.bincount(ev["y"].astype(np.int64) * w + ev["x"], minlength=w * h)
    assert abs(counts.var() / counts.mean() - 1) < 4 * math.sqrt(2 / (w * h))


def test_leak_fires_on_events_at_the_leak_rate_out_of_step():
    # a static pixel's reference decays by leak_rate x theta_on per second: from a random point
    # of the cycle (u theta, u uniform), ON events at (k - u) / leak s: 4 of them in 2 s at 2 Hz
    node, frames, _ = run(width=32, height=24, pattern="camera", velocity=0.0, noise_rate_hz=0.0,
                          refractory_us=0, leak_rate_hz=2.0, duration_s=2.0)
    pixels = per_pixel(np.concatenate([f.data for f in frames]), 32, 24)
    assert all(len(p) == 4 and p["p"].all() for p in pixels)
    first = np.array([p["t"][0] for p in pixels]) / 1e6  # uniform on (0, 0.5]: SD 0.144
    assert 0.1 < first.std() < 0.2
    assert all(np.allclose(np.diff(p["t"]), 5e5, atol=1) for p in pixels)


def test_no_pixel_fires_twice_within_the_refractory_period():
    fast = dict(width=48, height=32, pattern="grating", size_px=3.0, velocity=2000.0, step_us=200,
                noise_rate_hz=50.0, pos_threshold=0.1, neg_threshold=0.1, duration_s=0.2)
    gaps = lambda ev: np.concatenate([np.diff(p["t"]) for p in per_pixel(ev, 48, 32)])  # noqa: E731
    free = events_of(**fast, refractory_us=0)
    assert (gaps(free) < 500).sum() > 1000  # without the period, pixels do fire faster
    node, frames, _ = run(**fast, refractory_us=500)
    assert gaps(np.concatenate([f.data for f in frames])).min() >= 500
    assert node.figures()["refractory_drops"] > 1000


# -- the kernel against a plain reference ----------------------------------------------------

def reference_step(log0, log1, t0, dt, ref, last, on, off, leak, refractory, noise):
    """The model of devices/event_sensor.py written plainly: per pixel, threshold crossings of
    L - ref swept linearly through the step, background events resetting the reference."""
    out = []
    for i in range(len(log0)):
        s = (log1[i] - log0[i]) / dt + leak[i]
        d, t = log0[i] - ref[i], float(t0)
        stops = [(tn, pn) for pix, tn, pn in zip(*noise) if pix == i] + [(float(t0 + dt), None)]
        for tn, pn in stops:
            while s != 0:
                tc = max(t, t + ((on[i] if s > 0 else -off[i]) - d) / s)
                if tc > tn:
                    break
                if tc - last[i] >= refractory:
                    out.append((math.floor(tc), i, int(s > 0)))
                    last[i] = tc
                d, t = 0.0, tc
            d += s * (tn - t)
            t = tn
            if pn is not None and tn - last[i] >= refractory:
                out.append((math.floor(tn), i, int(pn)))
                last[i], d = tn, 0.0
        ref[i] = log1[i] - d
    out.sort(key=lambda e: (e[0], e[1]))  # stable: a pixel's own events stay in time order
    return out


def test_the_kernel_equals_a_plain_python_reference_step_after_step():
    rng = np.random.default_rng(5)
    w, h, dt = 9, 7, 100
    params = sensor_params(w * h, 0.15, 0.25, 0.05, 30.0, 30.0, rng)
    frames = np.cumsum(rng.normal(0, 0.2, (40, w * h)), axis=0)  # several events per step
    frames[:, :5] = frames[0, :5]  # a few still pixels: leak and noise only
    state = sensor_state(frames[0], rng.random(w * h) * params.theta_on)
    ref, last = state.ref.copy(), state.last_t.copy()
    noise_rng = np.random.default_rng(6)
    total = dropped = 0
    for k in range(1, len(frames)):
        t0 = (k - 1) * dt
        noise = draw_noise(noise_rng, w * h, 800.0, t0, dt)
        got, lost, _ = sensor_step(frames[k - 1], frames[k], t0, dt, state, params, noise, w)
        want = reference_step(frames[k - 1], frames[k], t0, dt, ref, last, params.theta_on,
                              params.theta_off, params.leak, params.refractory_us, noise)
        assert [(int(e["t"]), int(e["y"]) * w + int(e["x"]), int(e["p"])) for e in got] == want
        assert got.dtype == EVENT_DTYPE
        np.testing.assert_array_equal(state.ref, ref)
        np.testing.assert_array_equal(state.last_t, last)
        total += len(got)
        dropped += lost
    assert total > 1000 and dropped > 100, (total, dropped)  # busy pixels, refractory at work


def test_a_background_event_in_refractory_is_dropped_and_counted():
    params = sensor_params(1, 0.2, 0.2, 0.0, 0.0, 100.0, np.random.default_rng(0))
    state = sensor_state(np.zeros(1))
    noise = Noise(np.zeros(3, np.int64), np.array([10.0, 50.0, 120.0]),
                  np.array([1, 0, 0], np.int8))
    ev, dropped, noisy = sensor_step(np.zeros(1), np.zeros(1), 0, 200, state, params, noise, 1)
    assert ev["t"].tolist() == [10, 120] and ev["p"].tolist() == [1, 0]
    assert (dropped, noisy) == (1, 2)


# -- the stream ------------------------------------------------------------------------------

SACCADES = dict(width=64, height=48, pattern="dots", size_px=4.0, motion="saccades",
                velocity=200.0, segment_s=0.15, step_us=500, noise_rate_hz=2.0,
                refractory_us=300, duration_s=0.6)


def test_batches_are_sorted_in_range_and_stamped():
    node, frames, labels = run(**SACCADES, batch_us=7000)
    info = node.setup({})
    assert info["out"].kind is FrameKind.EVENTS and info["out"].sensor_size == (64, 48, 2)
    assert info["out"].dtype == "events" and info["out"].clock == "synthetic"
    assert info["labels"].extra["descriptions"] == [f"dir{a:03d}" for a in range(0, 360, 45)]
    last = -1
    for k, f in enumerate(frames):
        ev = f.data
        assert ev.dtype == EVENT_DTYPE and f.kind is FrameKind.EVENTS
        assert (np.diff(ev["t"]) >= 0).all() and (len(ev) == 0 or ev["t"][0] >= last)
        assert ((ev["t"] >= k * 7000) & (ev["t"] < (k + 1) * 7000)).all()
        assert ((ev["x"] >= 0) & (ev["x"] < 64) & (ev["y"] >= 0) & (ev["y"] < 48)).all()
        assert set(np.unique(ev["p"])) <= {0, 1}
        assert f.t_device == (ev["t"][0] if len(ev) else k * 7000) / 1e6
        last = ev["t"][-1] if len(ev) else last
    assert len(frames) == math.ceil(600_000 / 7000)  # the last batch cut at duration_s
    assert frames[-1].data["t"].max() < 600_000
    assert [m.meta["t_us"] for m in labels] == sorted(m.meta["t_us"] for m in labels)
    assert len(labels) >= 3 and labels[0].meta["t_us"] == 0


def test_the_batch_size_does_not_change_a_single_event_or_label():
    runs = [run(**SACCADES, batch_us=b, threshold_sigma=0.04) for b in (10_000, 3331, 997)]
    streams = [np.concatenate([f.data for f in frames]) for _, frames, _ in runs]
    assert len(streams[0]) > 10_000
    for other in streams[1:]:
        assert other.tobytes() == streams[0].tobytes()
    marks = [[(m.meta["t_us"], str(m.data[0])) for m in labels] for _, _, labels in runs]
    assert marks[0] == marks[1] == marks[2]


def test_same_seed_same_events_other_seed_other_events():
    a, b = events_of(**SACCADES, seed=3), events_of(**SACCADES, seed=3)
    c = events_of(**SACCADES, seed=4)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_reset_replays_the_stream():
    node, frames, _ = run(**SACCADES, max_batches=20)
    node.reset()
    again = []
    while (out := node.read()) is not None:
        again += [f for port, f in out if port == "out"]
    assert np.concatenate([f.data for f in again]).tobytes() == \
        np.concatenate([f.data for f in frames]).tobytes()


def shift_between(ev: np.ndarray, t_a: float, t_b: float, span: float, w: int,
                  h: int) -> np.ndarray:
    """How far (dx, dy px) the event pattern moved from window ``[t_a, t_a + span)`` to
    ``[t_b, ...)``: peak of the circular cross-correlation of the signed count images."""
    def image(t):
        sel = ev[(ev["t"] >= t) & (ev["t"] < t + span)]
        img = np.zeros((h, w))
        np.add.at(img, (sel["y"], sel["x"]), 2.0 * sel["p"] - 1)
        return img - img.mean()
    a, b = image(t_a), image(t_b)
    corr = np.fft.ifft2(np.conj(np.fft.fft2(a)) * np.fft.fft2(b)).real
    dy, dx = np.unravel_index(np.argmax(corr), corr.shape)
    return np.array([(dx + w // 2) % w - w // 2, (dy + h // 2) % h - h // 2], float)


@pytest.mark.parametrize("velocities", [None, [150.0, 300.0]])
def test_the_labels_name_the_motion_the_events_show(velocities: list[float] | None):
    # the dots tile wraps exactly on the sensor, so a translation is a circular shift of the
    # event images: 30 ms apart at 150-300 px/s the pattern moved 4.5-9 px; the estimate is in
    # whole px
    w, h = 64, 48
    node, frames, labels = run(**{**SACCADES, "duration_s": 1.5, "noise_rate_hz": 0.0,
                                  "velocities": velocities})
    ev = np.concatenate([f.data for f in frames])
    speeds = velocities or [200.0]
    names = [f"dir{a:03d}" + (f"_v{v:g}" if velocities else "") for a in range(0, 360, 45)
             for v in speeds]
    assert node.setup({})["labels"].extra["descriptions"] == names
    angles = np.radians(np.repeat(np.arange(8) * 45.0, len(speeds)))
    classes = np.stack([np.cos(angles), -np.sin(angles)], axis=1) * np.tile(speeds, 8)[:, None]
    starts = [m.meta["t_us"] for m in labels] + [1_500_000]
    checked = 0
    for m, end in zip(labels, starts[1:]):
        t = m.meta["t_us"] + 5000  # clear of the change
        if end - t < 45_000:
            continue
        seen = shift_between(ev, t, t + 30_000, 10_000, w, h) / 0.03  # px/s
        truth = np.array([m.meta["vx"], m.meta["vy"]])
        assert np.hypot(*(seen - truth)) < 50, (seen, truth)  # 1.5 px of the shift
        assert np.argmin(np.hypot(*(classes - seen).T)) == m.meta["class"]
        assert str(m.data[0]) == names[m.meta["class"]]
        assert m.t_device == m.meta["t_us"] / 1e6
        checked += 1
    assert checked >= 5
    assert len({m.meta["class"] for m in labels}) >= 4
    assert all(a.meta["class"] != b.meta["class"] for a, b in zip(labels, labels[1:]))


@pytest.mark.parametrize(("pattern", "direction"), [("dots", 0.0), ("dots", 90.0),
                                                    ("dots", 210.0), ("edge", 135.0)])
def test_constant_motion_goes_where_its_label_says(pattern: str, direction: float):
    w, h = 64, 48
    _, frames, labels = run(width=w, height=h, pattern=pattern, size_px=4.0, direction=direction,
                            velocity=200.0, step_us=500, noise_rate_hz=0.0, duration_s=0.12)
    [m] = labels
    a = math.radians(direction)
    truth = 200.0 * np.array([math.cos(a), -math.sin(a)])
    np.testing.assert_allclose([m.meta["vx"], m.meta["vy"]], truth, atol=1e-9)
    assert str(m.data[0]) == f"dir{round(direction):03d}"
    ev = np.concatenate([f.data for f in frames])
    if pattern == "dots":
        seen = shift_between(ev, 20_000, 70_000, 10_000, w, h) / 0.05
        assert np.hypot(*(seen - truth)) < 30  # 1.5 px of the 10 px shift
    else:
        # a bright edge sweeping in: its ON events' mean position travels along the motion
        on = ev[ev["p"] == 1]
        early, late = on[on["t"] < 30_000], on[(on["t"] >= 60_000) & (on["t"] < 90_000)]
        moved = np.array([late["x"].mean() - early["x"].mean(),
                          late["y"].mean() - early["y"].mean()])
        assert moved @ truth > 0.9 * np.hypot(*moved) * 200.0  # within 25 degrees


def test_a_bundled_photograph_is_read_from_the_wheel_and_makes_events():
    from skimage import data

    np.testing.assert_allclose(load_image("camera"), data.camera() / 255.0)
    assert load_image("astronaut").shape == (512, 512)  # RGB made gray
    node, frames, labels = run(width=128, height=96, pattern="astronaut", motion="saccades",
                               velocity=300.0, duration_s=0.1)
    ev = np.concatenate([f.data for f in frames])
    assert len(ev) > 10_000 and 0.3 < ev["p"].mean() < 0.7
    assert set(IMAGES) <= set(dir(data))


def test_a_missing_scikit_image_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # "import skimage" now fails
    with pytest.raises(ParamError, match=r"neuroflow\[events\]") as e:
        SyntheticEvents(SyntheticEvents.Params(pattern="camera")).setup({})
    assert e.value.field == "pattern"
    SyntheticEvents(SyntheticEvents.Params(pattern="dots")).setup({})  # patterns need none


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"pattern": "lena"}, "pattern", "unknown pattern 'lena'"),
    ({"pattern": "bar", "motion": "saccades"}, "motion", "2-D scene"),
    ({"velocity": 2000.0, "step_us": 1000}, "step_us", "step_us <= 500"),
    ({"pattern": "dots", "motion": "saccades", "velocities": [100, 3000], "step_us": 1000},
     "step_us", "at 3000 px/s"),
    ({"pattern": "dots", "motion": "saccades", "velocities": [100, 100]}, "velocities",
     "distinct"),
    ({"pattern": "dots", "motion": "saccades", "velocities": [0, 100]}, "velocities", "> 0"),
])
def test_parameters_that_do_not_fit_name_their_field(params: dict, field: str, message: str):
    with pytest.raises(ParamError, match=message) as e:
        SyntheticEvents(SyntheticEvents.Params(**params)).setup({})
    assert e.value.field == field


@pytest.mark.slow
def test_runs_in_a_real_graph_into_null_and_ends_with_its_stream(run_graph):
    g = run_graph("""\
        nodes:
          cam: {type: synthetic_events, width: 64, height: 48, pattern: dots, motion: saccades,
                velocity: 200, max_batches: 150}
          sink: {type: "null"}
          marks: {type: "null"}
        edges:
          - {chain: cam -> sink, policy: lossless}
          - {chain: cam.labels -> marks, policy: lossless}
        """)
    # read while it runs (1.5 s at real time): the figures ticked once a second
    g.wait_for(lambda: (g.figures().get("sink") or {}).get("frames_in", 0) >= 50)
    assert g.finish() == 0, g.stderr  # no --duration: the source's end of stream ends the graph
    ticks = [r["nodes"] for r in g.records() if "nodes" in r]
    assert any(t["cam"].get("node", {}).get("events", 0) > 0 for t in ticks)
    assert any(t["marks"]["frames_in"] >= 1 for t in ticks)
