"""hd_snn: the event-by-event ring buffer equals the dense binned causal conv3d, written plainly
here (shift and add over a padded event tensor), on random and real events, pruned or not; its
read-outs equal the same formulas applied to the dense evidence; the output does not depend on
how the stream is cut; and hand-made motion kernels tell a bar moving right from one moving
left (a property of the detector, not a trained model)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, logsumexp, softmax

from conftest import event_recording
from devices.synthetic_events import SyntheticEvents
from kernels.hd_snn import (load_weights, make_taps, prune_weights, save_weights,
                            synops_per_event, taps_per_polarity)
from nodes.hd_snn import HDSNN
from pipeline import EVENT_DTYPE, Frame, FrameKind, ParamError, StreamInfo
from pipeline.frame import concat_events

W_S, H_S = 17, 13           # the random-event sensor
SHAPE = (3, 2, 4, 5, 3)     # classes, polarities, delays, kx, ky: kx != ky catches x/y swaps
DT = 100                    # µs


# --- weights, streams and the node under test ------------------------------------------------

def dyadic_weights(rng: np.random.Generator, shape: tuple[int, ...] = SHAPE,
                   zeros: float = 0.2) -> np.ndarray:
    """Weights k / 1024 with distinct magnitudes (k drawn without replacement), random signs,
    a share of zeros. Every sum of them is exact in float32 while below 2^14 in magnitude
    (24-bit significand, 10 fractional bits), so the kernel and the float64 reference must
    agree bit for bit whatever the order of the additions."""
    n = int(np.prod(shape))
    w = rng.choice(np.arange(1, 1024), n, replace=False) * rng.choice([-1, 1], n) / 1024
    w[rng.random(n) < zeros] = 0
    return w.reshape(shape).astype(np.float32)


def random_events(n: int, rng: np.random.Generator, width: int = W_S, height: int = H_S,
                  dt: int = DT) -> np.ndarray:
    """Time-sorted events: several in one step, steps apart, gaps longer than the kernel's
    delays; read-only, as a batch off the wire."""
    gaps = rng.choice([0, 0, 7, dt // 2, dt, 3 * dt, 12 * dt, 60 * dt], size=n,
                      p=[.3, .2, .15, .1, .1, .08, .05, .02])
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = 5_000_000 + np.cumsum(gaps)
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n)
    ev.flags.writeable = False
    return ev


def cuts(n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Consecutive batches covering 0 .. n: empty ones, single events, and longer runs."""
    sizes = rng.choice([0, 1, 1, 2, 5, 40, 300], size=n + 1)
    ends = np.minimum(np.cumsum(sizes), n)
    ends = np.concatenate([[0], ends[ends < n], [n]])
    return list(zip(ends[:-1].tolist(), ends[1:].tolist()))


def weights_file(tmp_path: Path, weights: np.ndarray, bias: np.ndarray | None = None,
                 dt: int = DT, names: list[str] | None = None) -> str:
    """A weights file written by save_weights."""
    path = tmp_path / "hd.npz"
    save_weights(path, weights, dt, bias, names)
    return str(path)


def make(path: str, sensor: tuple[int, int] = (W_S, H_S), **params) -> HDSNN:
    node = HDSNN(HDSNN.Params(weights=path, **params), "hd")
    node.setup({"in": StreamInfo(FrameKind.EVENTS, dtype="events", sensor_size=(*sensor, 2),
                                 clock="file")})
    node.open()
    return node


def run(node: HDSNN, ev: np.ndarray, batches: list[tuple[int, int]] | None = None
        ) -> list[Frame]:
    """Feed ``ev`` cut into ``batches`` (default: one), the k-th stamped ``k``; then close."""
    out = []
    for k, (a, b) in enumerate(batches or [(0, len(ev))]):
        out += [f for _, f in node.process("in", Frame(FrameKind.EVENTS, ev[a:b], k))]
    return out + [f for _, f in node.close()]


def assert_same_frames(got: list[Frame], expected: list[Frame]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.t_device == b.t_device and a.meta == b.meta
        assert a.data.dtype == b.data.dtype
        np.testing.assert_array_equal(a.data, b.data)  # bit for bit


# --- the reference: bin, then the causal conv3d by shift and add ------------------------------

class Dense:
    """The event stream binned at ``dt`` into A[p, step, y, x] (events per bin), and the
    network's evidence on it computed plainly:

        C[c, t, yc, xc] = sum_{p,d,kx,ky} W[c, p, d, kx, ky] A[p, t - d, yc + ky - KY//2,
                                                               xc + kx - KX//2]

    for every pixel centre (yc, xc) of the sensor (zero input outside it); ``touched`` marks the
    (step, centre) pairs some event reached through a non-zero tap. Steps run from the first
    event's to the last's + delays - 1 (the last evidence an event leaves)."""

    def __init__(self, ev: np.ndarray, weights: np.ndarray, dt: int, size: tuple[int, int]):
        n_cls, _, n_d, kx_n, ky_n = weights.shape
        width, height = size
        step = ev["t"] // dt
        self.k0, n_t = int(step.min()), int(step.max() - step.min()) + n_d
        a = np.zeros((2, n_t, height, width))
        np.add.at(a, (ev["p"].astype(int), step - self.k0, ev["y"], ev["x"]), 1)
        pad = np.pad(a, ((0, 0), (n_d - 1, 0), (ky_n // 2, ky_n - 1 - ky_n // 2),
                         (kx_n // 2, kx_n - 1 - kx_n // 2)))
        self.evidence = np.zeros((n_cls, n_t, height, width))
        self.abs = np.zeros_like(self.evidence)     # sum of |terms|, for float tolerances
        self.terms = np.zeros((n_t, height, width))  # number of (event, tap) terms per class
        self.touched = np.zeros((n_t, height, width), bool)
        for p, d, kx, ky in itertools.product(range(2), range(n_d), range(kx_n), range(ky_n)):
            w = weights[:, p, d, kx, ky].astype(np.float64)
            if not w.any():
                continue
            src = pad[p, n_d - 1 - d:n_d - 1 - d + n_t, ky:ky + height, kx:kx + width]
            self.evidence += w[:, None, None, None] * src
            self.abs += np.abs(w)[:, None, None, None] * src
            self.terms += src
            self.touched |= src > 0

    def grid(self, x: np.ndarray, border: str, stride: int, size: tuple[int, int]) -> np.ndarray:
        """``x[..., t, yc, xc]`` at the output neurons' centres: every ``stride``-th pixel
        ("same"), or from the kernel's half-size on while the whole kernel fits ("valid")."""
        (kx_n, ky_n), (width, height) = size, x.shape[-1:-3:-1]
        if border == "same":
            return x[..., ::stride, ::stride]
        return x[..., ky_n // 2:height - ky_n + ky_n // 2 + 1:stride,
                 kx_n // 2:width - kx_n + kx_n // 2 + 1:stride]

    def windows(self, touched: np.ndarray, window: int) -> list[tuple[int, np.ndarray]]:
        """(first step, step indices) of each window of ``window`` steps in which a neuron of
        ``touched`` (steps, rows, columns) received input."""
        m = (self.k0 + np.arange(touched.shape[0])) // window
        live = np.unique(m[touched.any(axis=(1, 2))])
        return [(int(k * window), np.flatnonzero(m == k)) for k in live]


def reference(ev: np.ndarray, weights: np.ndarray, bias: np.ndarray, dt: int, window: int,
              size: tuple[int, int], border: str = "same", stride: int = 1, **read
              ) -> list[tuple[float, np.ndarray, dict]]:
    """(t_device, data, meta) of every frame the node should emit, from the dense evidence."""
    dense = Dense(ev, weights, dt, size)
    ksize = weights.shape[3:]
    ev_grid = dense.grid(dense.evidence, border, stride, ksize)
    touched = dense.grid(dense.touched, border, stride, ksize)
    v = ev_grid + bias[:, None, None, None]
    output = read.get("output", "prediction")
    threshold = read.get("threshold", 0.5)
    if read.get("decision", "argmax") == "argmax":
        prob = softmax(v, axis=0)
        fired = (np.arange(len(bias))[:, None, None, None] == v.argmax(axis=0)) \
            & (prob.max(axis=0) > threshold)
    else:
        fired = expit(v) > threshold
    out = []
    for first, steps in dense.windows(touched, window):
        t_dev = first * dt / 1e6
        if output == "evidence":
            out.append((t_dev, ev_grid[:, steps].sum(axis=1), None))
        elif output == "spikes":
            counts = fired[:, steps].sum(axis=1)
            out.append((t_dev, counts, {"spikes": int(counts.sum())}))
        elif read.get("readout", "logit") == "logit":
            vt = np.moveaxis(v[:, steps], 0, -1)[touched[steps]]  # (pairs, classes)
            logit = np.stack([vt[:, c] - logsumexp(np.delete(vt, c, axis=1), axis=1)
                              for c in range(len(bias))], axis=1)
            probs = softmax(logit.mean(axis=0))
            k = int(probs.argmax())
            out.append((t_dev, probs, {"label": f"class{k}", "index": k,
                                       "positions": len(vt)}))
        else:
            counts = fired[:, steps].sum(axis=(1, 2, 3)).astype(float)
            total = counts.sum()
            probs = counts / total if total else np.full(len(bias), 1 / len(bias))
            k = int(probs.argmax())
            out.append((t_dev, probs, {"label": f"class{k}", "index": k,
                                       "positions": int(touched[steps].sum()),
                                       "spikes": int(total)}))
    return out


def check(got: list[Frame], expected: list[tuple[float, np.ndarray, dict]],
          rtol: float = 0.0) -> None:
    assert len(got) == len(expected) > 0
    for frame, (t_dev, data, meta) in zip(got, expected):
        assert frame.t_device == t_dev
        assert frame.meta == meta
        assert frame.data.dtype == np.float32 and frame.data.shape == data.shape
        np.testing.assert_allclose(frame.data, data.astype(np.float32), rtol=rtol, atol=0)


# --- evidence: the ring buffer against the dense conv3d ---------------------------------------

@pytest.mark.parametrize(("seed", "border", "stride"), [(0, "same", 1), (1, "valid", 1),
                                                        (2, "same", 2), (3, "valid", 3)])
def test_evidence_equals_the_dense_causal_conv3d_on_random_events(
        tmp_path: Path, seed: int, border: str, stride: int) -> None:
    rng = np.random.default_rng(seed)
    w, ev = dyadic_weights(rng), random_events(1500, rng)
    node = make(weights_file(tmp_path, w), output="evidence", step_us=3 * DT, border=border,
                stride=stride)
    check(run(node, ev), reference(ev, w, np.zeros(3), DT, 3, (W_S, H_S), border, stride,
                                   output="evidence"))


def test_evidence_with_arbitrary_float_weights_within_float32_rounding(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    w = rng.normal(size=SHAPE).astype(np.float32)
    ev = random_events(1500, rng)
    got = run(make(weights_file(tmp_path, w), output="evidence"), ev)
    dense = Dense(ev, w, DT, (W_S, H_S))
    windows = dense.windows(dense.touched, 1)
    assert len(got) == len(windows)
    for frame, (first, [step]) in zip(got, windows):
        assert frame.t_device == first * DT / 1e6
        # float32 ring: a sum of n terms is off by at most (n - 1) u sum|terms| (u = 2^-24),
        # then rounded once more to the float32 frame: (n + 1) u sum|terms| bounds both
        bound = (dense.terms[step] + 1) * 2.0 ** -24 * dense.abs[:, step]
        assert np.all(np.abs(frame.data - dense.evidence[:, step]) <= bound)


def real_events() -> np.ndarray:
    """sample.aedat4 (DVXplorer 320x240) read by dv-processing: the 128x96 block at (96, 48),
    downsampled by 2 to 64x48, its first 0.25 s."""
    dv = pytest.importorskip("dv_processing")
    rec = dv.io.MonoCameraRecording(str(event_recording("sample.aedat4")))
    parts = []
    while (batch := rec.getNextEventBatch()) is not None:
        parts.append(batch.numpy())
    raw = np.concatenate(parts)
    keep = ((raw["x"] >= 96) & (raw["x"] < 224) & (raw["y"] >= 48) & (raw["y"] < 144)
            & (raw["timestamp"] < raw["timestamp"][0] + 250_000))
    raw = raw[keep]
    ev = np.zeros(len(raw), EVENT_DTYPE)
    ev["t"] = raw["timestamp"]
    ev["x"] = (raw["x"] - 96) // 2
    ev["y"] = (raw["y"] - 48) // 2
    ev["p"] = raw["polarity"]
    ev.flags.writeable = False
    return ev


@pytest.mark.parametrize("keep_fraction", [None, 0.3])
def test_evidence_equals_the_dense_conv3d_on_a_real_recording(tmp_path: Path,
                                                               keep_fraction: float | None):
    ev = real_events()
    assert len(ev) > 5000
    rng = np.random.default_rng(11)
    w = dyadic_weights(rng)
    dt = 2000
    node = make(weights_file(tmp_path, w, dt=dt), (64, 48), output="evidence", step_us=5 * dt,
                keep_fraction=keep_fraction)
    kept = w if keep_fraction is None else keep_largest(w, keep_fraction)
    got = run(node, ev, cuts(len(ev), rng))
    check(got, reference(ev, kept, np.zeros(3), dt, 5, (64, 48), output="evidence"))


# --- pruning and synaptic operations ----------------------------------------------------------

def keep_largest(w: np.ndarray, fraction: float) -> np.ndarray:
    """W keeping its round(fraction * n) largest |w| of the n non-zero (magnitudes distinct)."""
    mags = np.sort(np.abs(w[w != 0]))[::-1]
    k = int(round(fraction * mags.size))
    return np.where(np.abs(w) >= mags[k - 1], w, 0).astype(w.dtype)


def test_prune_weights_drops_small_weights_and_keeps_the_largest_share() -> None:
    w = dyadic_weights(np.random.default_rng(3))
    below = prune_weights(w, 0.5)
    np.testing.assert_array_equal(below, np.where(np.abs(w) >= 0.5, w, 0))
    both = prune_weights(w, 0.25, 0.4)
    np.testing.assert_array_equal(both, keep_largest(np.where(np.abs(w) >= 0.25, w, 0), 0.4))
    assert np.count_nonzero(both) == round(0.4 * np.count_nonzero(np.abs(w) >= 0.25))
    assert np.count_nonzero(w) > np.count_nonzero(below) > np.count_nonzero(both) > 0


@pytest.mark.parametrize("params", [{"prune": 0.6}, {"prune": 0.2, "keep_fraction": 0.25}])
def test_a_pruned_detector_equals_the_dense_conv3d_of_the_pruned_kernel(
        tmp_path: Path, params: dict) -> None:
    rng = np.random.default_rng(5)
    w, ev = dyadic_weights(rng), random_events(1500, rng)
    kept = np.where(np.abs(w) >= params["prune"], w, 0)
    if "keep_fraction" in params:
        kept = keep_largest(kept, params["keep_fraction"])
    node = make(weights_file(tmp_path, w), output="evidence", **params)
    check(run(node, ev), reference(ev, kept, np.zeros(3), DT, 1, (W_S, H_S), output="evidence"))
    taps = make_taps(kept)
    assert taps.cls.size == np.count_nonzero(kept)
    np.testing.assert_array_equal(taps_per_polarity(taps),
                                  [np.count_nonzero(kept[:, 0]), np.count_nonzero(kept[:, 1])])


def test_the_taps_hold_each_kernel_block_dense_and_its_kept_delays_as_groups() -> None:
    """The hot loop adds a (polarity, ky, kx) block's D x C weights whole and lists a position
    in the slots of the block's groups: both must be W's, read here plainly."""
    rng = np.random.default_rng(13)
    kept = keep_largest(dyadic_weights(rng, zeros=0.5), 0.1)  # whole blocks and delays empty
    n_cls, _, n_d, kx_n, ky_n = kept.shape
    taps = make_taps(kept)
    for p, ky, kx in itertools.product(range(2), range(ky_n), range(kx_n)):
        b = (p * ky_n + ky) * kx_n + kx
        block = taps.block_w[b].reshape(n_d, n_cls)
        groups = range(taps.block[b], taps.block[b + 1])
        assert [taps.delay[g] for g in groups] == [d for d in range(n_d)
                                                   if kept[:, p, d, kx, ky].any()]
        for g in groups:
            d = taps.delay[g]
            assert (taps.kx[g], taps.ky[g]) == (kx, ky)
            taken = slice(taps.start[g], taps.start[g + 1])
            assert list(taps.cls[taken]) == list(np.flatnonzero(kept[:, p, d, kx, ky]))
            np.testing.assert_array_equal(taps.weight[taken], kept[taps.cls[taken], p, d, kx, ky])
        for d, c in itertools.product(range(n_d), range(n_cls)):
            assert block[d, c] == kept[c, p, d, kx, ky]


def test_synaptic_operations_per_event_count_the_kept_taps_that_land(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    w, ev = dyadic_weights(rng, zeros=0.5), random_events(2000, rng)
    node = make(weights_file(tmp_path, w), prune=0.3)
    run(node, ev)
    kept = np.where(np.abs(w) >= 0.3, w, 0)
    n_cls, _, n_d, kx_n, ky_n = kept.shape
    # each event: the kept taps of its polarity whose neuron centre (x - kx + KX//2,
    # y - ky + KY//2) is on the sensor ("same" border)
    landed = 0
    for p, d, kx, ky in itertools.product(range(2), range(n_d), range(kx_n), range(ky_n)):
        cx, cy = ev["x"] - kx + kx_n // 2, ev["y"] - ky + ky_n // 2
        on = (ev["p"] == p) & (cx >= 0) & (cx < W_S) & (cy >= 0) & (cy < H_S)
        landed += np.count_nonzero(kept[:, p, d, kx, ky]) * np.count_nonzero(on)
    figures = node.figures()
    assert figures["events"] == len(ev)
    assert figures["synops_per_event"] == landed / len(ev)
    per_pol = [np.count_nonzero(kept[:, p]) for p in range(2)]
    everything = np.mean([per_pol[p] for p in ev["p"]])
    assert synops_per_event(make_taps(kept), ev["p"]) == everything
    assert landed / len(ev) < everything  # the border drops some


# --- read-outs: the same formulas on the dense evidence ---------------------------------------

READOUTS = [
    {"output": "spikes", "decision": "argmax", "threshold": 0.6},
    {"output": "spikes", "decision": "logistic", "threshold": 0.7},
    {"output": "prediction", "readout": "logit"},
    {"output": "prediction", "readout": "spikes", "decision": "argmax", "threshold": 0.6},
    {"output": "prediction", "readout": "spikes", "decision": "logistic", "threshold": 0.7},
]


@pytest.mark.parametrize("read", READOUTS)
def test_each_readout_equals_its_formula_on_the_dense_evidence(tmp_path: Path,
                                                               read: dict) -> None:
    rng = np.random.default_rng(13)
    w, ev = dyadic_weights(rng) * 4, random_events(1500, rng)
    bias = np.array([-0.25, 0.0, -0.5])  # dyadic: C + b exact, so every decision is the same
    node = make(weights_file(tmp_path, w, bias), step_us=4 * DT, **read)
    # logit read-out: the same float64 formula in another order (logsumexp, np.mean), within a
    # few ulps; spikes are counts, equal
    rtol = 1e-6 if read.get("readout") == "logit" else 0.0
    got = run(node, ev)
    check(got, reference(ev, w, bias, DT, 4, (W_S, H_S), **read), rtol)
    if read["output"] == "spikes":
        assert sum(f.meta["spikes"] for f in got) > 100  # the test sees neurons fire


def test_the_logit_readout_survives_classes_hundreds_of_nats_apart(tmp_path: Path) -> None:
    """exp underflows beyond ~745 nats: the read-out then takes the runner-up's logsumexp."""
    rng = np.random.default_rng(37)
    w, ev = dyadic_weights(rng) * 4, random_events(600, rng)
    bias = np.array([0.0, -800.0, -1600.0])
    got = run(make(weights_file(tmp_path, w, bias), step_us=4 * DT), ev)
    expected = reference(ev, w, bias, DT, 4, (W_S, H_S))
    check(got, expected, rtol=1e-6)  # as in the read-out test: float64 in another order
    assert all(np.isfinite(f.data).all() for f in got)


def test_split_anywhere_gives_the_same_frames(tmp_path: Path) -> None:
    rng = np.random.default_rng(17)
    w = rng.normal(size=SHAPE).astype(np.float32)  # float rounding: the order must not change
    ev = random_events(3000, rng)
    for read in READOUTS[:3] + [{"output": "evidence", "border": "valid", "stride": 2}]:
        path = weights_file(tmp_path, w, np.array([-1.0, -1.2, -1.5]))
        whole = run(make(path, step_us=2 * DT, **read), ev)
        assert len(whole) > 50
        for trial in range(3):
            cut = run(make(path, step_us=2 * DT, **read), ev, cuts(len(ev), rng))
            assert_same_frames(cut, whole)


def test_reset_forgets_the_evidence_and_the_clock(tmp_path: Path) -> None:
    rng = np.random.default_rng(19)
    w, ev = dyadic_weights(rng), random_events(800, rng)
    node = make(weights_file(tmp_path, w), output="evidence")
    fresh = run(node, ev)
    list(node.process("in", Frame(FrameKind.EVENTS, ev[:400], 0)))  # a stream left half-way
    node.reset()
    assert_same_frames(run(node, ev), fresh)


def test_late_events_count_in_the_current_step_and_a_restarted_clock_starts_again(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(23)
    w = dyadic_weights(rng)
    path = weights_file(tmp_path, w)
    a, b = random_events(500, rng), random_events(400, rng)
    # a late event: one step back, within the kernel's memory -> counted, put in the current step
    late = np.zeros(3, EVENT_DTYPE)
    late["t"] = [a["t"][-1] + 5 * DT, a["t"][-1] + 4 * DT, a["t"][-1] + 5 * DT]
    late["x"], late["y"], late["p"] = [3, 4, 5], [2, 2, 2], [1, 0, 1]
    fixed = concat_events([late])
    fixed["t"][1] = fixed["t"][0]
    node = make(path, output="evidence")
    got = run(node, concat_events([a, late]))
    assert node.figures()["late"] == 1 and node.figures()["non_monotonic"] == 1
    check(got, reference(concat_events([a, fixed]), w, np.zeros(3), DT, 1, (W_S, H_S),
                         output="evidence"))
    # then the clock restarts far back: what was pending is emitted, the new stream starts over
    b = b.copy()
    b["t"] -= 4_000_000
    node = make(path, output="evidence")
    got = run(node, concat_events([a, b]))
    assert node.figures()["restarts"] == 1
    assert_same_frames(got, run(make(path, output="evidence"), a)
                       + run(make(path, output="evidence"), b))


# --- the detector sees motion -----------------------------------------------------------------

def motion_kernel(n_delays: int, shift: int) -> np.ndarray:
    """Four classes (right, left, up, down): class c's taps lie on its trajectory, tap
    (dx, dy) = -(vx, vy) d at delay d (the pixel it was at d steps ago; up: y decreases),
    ``shift`` pixels per step, weight 1 on ON events only: a bright bar's leading edge. (With
    OFF events weighted alike, the trailing edge, a few steps behind the leading one, would
    pair with it into coincidences along the opposite direction.)"""
    half = (n_delays - 1) * shift
    w = np.zeros((4, 2, n_delays, 2 * half + 1, 2 * half + 1), np.float32)
    for c, (vx, vy) in enumerate([(1, 0), (-1, 0), (0, -1), (0, 1)]):
        for d in range(n_delays):
            w[c, 1, d, half - vx * d * shift, half - vy * d * shift] = 1.0
    return w


def bar_events(direction: float) -> np.ndarray:
    """A bright bar 4 px wide crossing a 48x12 sensor at 200 px/s, simulated without noise."""
    cam = SyntheticEvents(SyntheticEvents.Params(
        width=48, height=12, pattern="bar", size_px=4.0, velocity=200.0, direction=direction,
        step_us=500, duration_s=0.4, threshold_sigma=0.0, refractory_us=0, noise_rate_hz=0.0,
        speed="max"), "cam")
    cam.setup({})
    frames = []
    while (out := cam.read()) is not None:
        frames += [f.data for port, f in out if port == "out"]
    return concat_events(frames)


@pytest.mark.parametrize(("direction", "name"), [(0.0, "right"), (180.0, "left")])
def test_oriented_delay_kernels_prefer_the_direction_they_encode(tmp_path: Path,
                                                                 direction: float,
                                                                 name: str) -> None:
    """Coincidence detection: each neuron fires (logistic decision) when its input exceeds
    what 2.5 delays of one edge crossing give, so only a class whose taps line up with the
    bar's path, 5 delays at once, fires; a single tap (a lone coincidence, which a softmax
    over classes would still hand to some class) does not. The paper's mean-logit read-out
    (the default prediction) names the direction too."""
    ev = bar_events(direction)
    on = ev[ev["p"] == 1]
    per_crossing = np.median(np.unique(np.stack([on["x"], on["y"], on["t"] // 5000]), axis=1,
                                       return_counts=True)[1])  # ON events of one pixel, step
    names = ["right", "left", "up", "down"]
    path = weights_file(tmp_path, motion_kernel(5, 1), dt=5000,  # 1 px a step: 200 px/s
                        bias=np.full(4, -2.5 * per_crossing), names=names)
    fire = {"decision": "logistic", "threshold": 0.5, "step_us": 50_000}
    spikes = run(make(path, (48, 12), output="spikes", **fire), ev)
    counts = np.sum([f.data.sum(axis=(1, 2)) for f in spikes], axis=0)
    other = names.index("left" if name == "right" else "right")
    assert counts[names.index(name)] > 100
    assert counts[names.index(name)] > 10 * counts[other]
    for readout in ({"readout": "spikes", **fire}, {"step_us": 50_000}):  # default: logit
        predictions = run(make(path, (48, 12), **readout), ev)
        labels = [f.meta["label"] for f in predictions]
        assert len(labels) >= 6 and all(label == name for label in labels)


# --- the model file and configuration errors --------------------------------------------------

def test_weights_round_trip_through_npz_and_a_bare_npy(tmp_path: Path) -> None:
    w = dyadic_weights(np.random.default_rng(29))
    save_weights(tmp_path / "m.npz", w, 250, np.array([0.5, -1, 2]), ["a", "b", "c"])
    model = load_weights(tmp_path / "m.npz")
    np.testing.assert_array_equal(model.weights, w)
    np.testing.assert_array_equal(model.bias, [0.5, -1, 2])
    assert (model.dt_us, model.class_names) == (250, ("a", "b", "c"))
    np.save(tmp_path / "w.npy", w)
    bare = load_weights(tmp_path / "w.npy")
    assert bare.dt_us is None and bare.class_names == ("class0", "class1", "class2")
    assert not bare.bias.any()
    node = make(str(tmp_path / "w.npy"), dt_us=300)
    assert node.dt == 300


@pytest.mark.parametrize(("setup", "field", "words"), [
    ("missing", "weights", "no weights file"),
    ("garbage", "weights", "not a NumPy"),
    ("shape", "weights", "(classes, 2 polarities, delays, kx, ky)"),
    ("npy_no_dt", "dt_us", "stores no dt_us"),
    ("dt_mismatch", "dt_us", "trained at dt_us=100"),
    ("step", "step_us", "not a multiple"),
    ("bias_logistic", "threshold", "fires without input"),
    ("bias_argmax", "threshold", "bias alone"),
    ("valid_too_big", "border", "no valid position"),
    ("pruned_away", "prune", "no weight"),
    ("one_class", "weights", "one class"),
])
def test_configuration_errors_name_the_field(tmp_path: Path, setup: str, field: str,
                                             words: str) -> None:
    w = dyadic_weights(np.random.default_rng(31))
    path, params, sensor = weights_file(tmp_path, w), {}, (W_S, H_S)
    if setup == "missing":
        path = str(tmp_path / "nope.npz")
    elif setup == "garbage":
        (tmp_path / "bad.npz").write_bytes(b"not a zip")
        path = str(tmp_path / "bad.npz")
    elif setup == "shape":
        np.save(tmp_path / "w.npy", w[:, :1])
        path, params = str(tmp_path / "w.npy"), {"dt_us": 100}
    elif setup == "npy_no_dt":
        np.save(tmp_path / "w.npy", w)
        path = str(tmp_path / "w.npy")
    elif setup == "dt_mismatch":
        params = {"dt_us": 50}
    elif setup == "step":
        params = {"step_us": 250}
    elif setup == "bias_logistic":
        path = weights_file(tmp_path, w, np.array([0.0, 1.0, 0.0]))
        params = {"output": "spikes", "decision": "logistic", "threshold": 0.6}
    elif setup == "bias_argmax":
        params = {"output": "spikes", "threshold": 0.3}  # softmax(0, 0, 0) = 1/3 > 0.3
    elif setup == "valid_too_big":
        sensor, params = (4, 13), {"border": "valid"}
    elif setup == "pruned_away":
        params = {"prune": 2.0}
    elif setup == "one_class":
        path = weights_file(tmp_path, w[:1])
    with pytest.raises(ParamError, match=words.replace("(", r"\(").replace(")", r"\)")) as err:
        make(path, sensor, **params)
    assert err.value.field == field


def test_stream_infos_describe_the_frames_and_a_graph_file_points_at_the_bad_field(
        tmp_path: Path) -> None:
    from pipeline import config, graph
    from pipeline.config import ConfigError

    w = dyadic_weights(np.random.default_rng(41))
    path = weights_file(tmp_path, w, np.array([-1.0, -1.0, -1.0]), names=["a", "b", "c"])
    text = (f"name: motion\nnodes:\n"
            f"  cam: {{type: synthetic_events, width: {W_S}, height: {H_S}}}\n"
            f"  hd: {{type: \"nodes.hd_snn:HDSNN\", weights: {path}, step_us: 500,\n"
            f"        border: valid, stride: 2}}\n"
            f"  out: {{type: \"null\"}}\nedges:\n  - cam -> hd -> out\n")
    info = graph.build(config.loads(text, "g.yaml")).outputs["hd"]["out"]
    assert (info.kind, info.shape, info.class_names) == (FrameKind.PREDICTION, (3,),
                                                         ("a", "b", "c"))
    assert info.srate == 2000.0 and info.extra["taps"] == np.count_nonzero(w)
    spikes = graph.build(config.loads(text.replace("stride: 2", "stride: 2, output: spikes"),
                                      "g.yaml")).outputs["hd"]["out"]
    # valid centres: (17 - 5) // 2 + 1 = 7 columns, (13 - 3) // 2 + 1 = 6 rows
    assert (spikes.kind, spikes.shape) == (FrameKind.TENSOR, (3, 6, 7))
    assert spikes.extra["class_names"] == ["a", "b", "c"] and spikes.extra["axes"] == "CHW"
    with pytest.raises(ConfigError, match=r"g.yaml:4: node 'hd' .*field 'step_us': "
                                          r"step_us=550 is not a multiple"):
        graph.build(config.loads(text.replace("step_us: 500", "step_us: 550"), "g.yaml"))
