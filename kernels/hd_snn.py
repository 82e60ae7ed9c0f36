"""The heterogeneous-delay motion detector of Grimaldi & Perrinet (HD-SNN, Biol. Cybern. 2023),
run event by event: the hot loops of `nodes.hd_snn`, and the model's file format.

The model: one layer of neurons, one per class ``c`` and output position, each reading the
events around its position through synapses with a weight and a delay. Binned at ``dt``, its
input is a 3-D correlation of the event tensor A[p, t, y, x] (events per bin, so 0/1 as the
paper's Boolean tensor unless a pixel fires twice in a bin) with a kernel W[c, p, d, kx, ky]:

    C[c, t, y, x] = sum over p, d, kx, ky of
                    W[c, p, d, kx, ky] A[p, t - d, y + ky - KY // 2, x + kx - KX // 2]

Tap ``kx`` reads the pixel ``kx - KX // 2`` columns from the neuron's centre (rows alike),
delay ``d`` the bin ``d`` steps before, ``d`` in [0, D). The paper writes the same sum as a
convolution (eq. 2, ``A(x - dx)``); here the tap index is the input's offset itself, so a
kernel for rightward motion at v pixels a step has its taps at ``dx = -v d``.

Why event by event and not binned: a camera's events are sparse, and a pruned kernel keeps a
few per cent of its weights (the paper's accuracy holds down to ~3 %), so the work that matters
is events x kept taps. Each incoming event (t, x, y, p) of step k = floor(t / dt) adds its kept
taps W[:, p, d, kx, ky] into the evidence of the neurons at centre (x - kx + KX//2, y - ky +
KY//2) for step k + d: a ring buffer of D future steps (slot = step mod D), the evidence that
will be complete when the clock reaches that step. When an event of a later step arrives, every
step before it is complete (events come in time order): its slot is read out and cleared. The
result equals the dense binned convolution above; the work per event is the number of kept taps
of its polarity (its synaptic operations, the paper's computational load).

Layout, for the hot loop: the ring is (position, slot, class), so the D x C evidence of one
position is contiguous, and the kernel is stored per (polarity, ky, kx) as a dense D x C block
(zeros where pruned). An event adds each block of its polarity whose position is on the grid
with one bounds check and two contiguous vector adds (the slots from its step's on, then the
wrap-around); adding a pruned tap's 0 leaves the evidence bit for bit as it was. Each slot also
lists the output positions it touched (received at least one kept tap: the kept (delay, class)
taps of each block are its groups), so that reading out and clearing a step costs what that
step received, not the size of the sensor; the read-out gathers those positions' evidence
first (independent loads whose cache misses overlap), then reads it out in the listed order.

Read-outs of a completed step (at the touched positions; an untouched one has no evidence):
evidence (sum it), spikes (a neuron fires when its class logistic ``sigmoid(C + b) > threshold``,
or only the winning class where its softmax probability over classes exceeds the threshold:
the paper's winner-take-all spiking output, Fig. 4), or the logit of each class probability,
``logit(p_c) = log p_c - log(1 - p_c)`` with ``p = softmax(C + b)``, which the paper averages
over positions to score a full-field motion (section 2.4). The read-outs are summed over a
window of ``w`` steps; the caller emits a window when it ends, if any of its steps had evidence.

Numbers: weights and evidence float32 (the ring is the memory that matters), read-outs and
window sums float64. No bounds checks on events: ``x``, ``y`` inside the sensor and ``p`` in
{0, 1} are the caller's promise (`nodes.event_input.EventInput` drops the rest).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np

#: File format tag stored in a weights file (``save_weights``).
FORMAT = "neuroflow.hd_snn/1"

#: Read-outs of a completed step.
EVIDENCE, LOGISTIC, ARGMAX, LOGIT = 0, 1, 2, 3
#: What `run_events` / `advance` stopped for.
DONE, WINDOW, RESTART = 0, 1, 2
#: ``clock`` fields: the oldest open step, slots holding evidence, whether the current window
#: had evidence.
STEP, PENDING, HAS_EVIDENCE = 0, 1, 2
#: ``counters`` fields: synaptic operations made, late events (their step already read out).
OPS, LATE = 0, 1
#: ``clock[STEP]`` before the first event.
NO_STEP = np.iinfo(np.int64).min
#: Below this, a sum of exponentials is taken as underflowed (LOGIT read-out).
_TINY = 1e-300


# --- the model file ---------------------------------------------------------------------------

class HDWeights(NamedTuple):
    """A trained detector: what `save_weights` writes and `load_weights` reads."""

    weights: np.ndarray          # (classes, 2, delays, kx, ky) float32
    bias: np.ndarray             # (classes,) float64
    dt_us: int | None            # the bin the kernel was trained at (µs); None: not stored
    class_names: tuple[str, ...]


def save_weights(path: str | Path, weights: np.ndarray, dt_us: int,
                 bias: np.ndarray | None = None,
                 class_names: list[str] | tuple[str, ...] | None = None) -> None:
    """Write a detector as an ``.npz`` file (NumPy's zip of arrays; no pickle).

    Parameters
    ----------
    path : str or Path
        Where to write (``.npz`` is appended by NumPy if missing).
    weights : ndarray, shape (classes, 2, delays, kx, ky)
        W[c, p, d, kx, ky]: class ``c``, polarity ``p`` (0 = OFF, 1 = ON), delay ``d`` steps,
        tap ``kx - kx_size // 2`` columns and ``ky - ky_size // 2`` rows from the neuron's
        centre. Stored as float32.
    dt_us : int
        Duration of one step (µs).
    bias : ndarray, shape (classes,), optional
        Per-class bias (the logistic regression's intercept); default zeros.
    class_names : sequence of str, optional
        One per class; default ``class0``, ``class1``, ...

    The file holds the arrays ``weights``, ``bias``, ``dt_us`` (int64 scalar), ``class_names``
    (unicode) and ``format`` (``"neuroflow.hd_snn/1"``). A plain ``.npy`` holding only W is
    read too (then zero bias, no ``dt_us``, default names).
    """
    weights = np.asarray(weights, np.float32)
    n = weights.shape[0] if weights.ndim else 0
    bias = np.zeros(n) if bias is None else np.asarray(bias, np.float64)
    names = [f"class{i}" for i in range(n)] if class_names is None else list(class_names)
    model = _checked(weights, bias, int(dt_us), tuple(names), str(path))
    np.savez(path, weights=model.weights, bias=model.bias, dt_us=np.int64(model.dt_us),
             class_names=np.array(model.class_names, dtype=str), format=np.array(FORMAT))


def load_weights(path: str | Path) -> HDWeights:
    """Read a detector written by `save_weights` (``.npz``), or a bare W (``.npy``).

    Raises
    ------
    ValueError
        The file is missing, unreadable, or its arrays do not make a detector (the message
        names the file and the problem).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no weights file {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not a NumPy .npz/.npy file: {e}") from None
    if isinstance(loaded, np.ndarray):
        n = loaded.shape[0] if loaded.ndim else 0
        return _checked(loaded, np.zeros(n), None, tuple(f"class{i}" for i in range(n)),
                        str(path))
    with loaded:
        missing = {"weights", "bias", "dt_us", "class_names"} - set(loaded.files)
        if missing:
            raise ValueError(f"{path}: missing arrays {sorted(missing)} (write the file with "
                             f"kernels.hd_snn.save_weights)")
        dt = loaded["dt_us"]
        if dt.shape != () or dt.dtype.kind not in "iu":
            raise ValueError(f"{path}: dt_us must be an integer scalar (µs), got {dt.dtype}"
                             f"{list(dt.shape)}")
        return _checked(loaded["weights"], loaded["bias"], int(dt),
                        tuple(str(s) for s in loaded["class_names"]), str(path))


def _checked(weights: np.ndarray, bias: np.ndarray, dt_us: int | None,
             names: tuple[str, ...], where: str) -> HDWeights:
    """The model, after checking its shapes and values (ValueError naming ``where``)."""
    if weights.ndim != 5 or weights.shape[1] != 2 or min(weights.shape) < 1:
        raise ValueError(f"{where}: weights must be (classes, 2 polarities, delays, kx, ky), "
                         f"got {list(weights.shape)}")
    if weights.dtype.kind not in "fiu" or not np.isfinite(weights).all():
        raise ValueError(f"{where}: weights must be finite numbers ({weights.dtype})")
    n = weights.shape[0]
    if bias.shape != (n,) or bias.dtype.kind not in "fiu" or not np.isfinite(bias).all():
        raise ValueError(f"{where}: bias must be {n} finite numbers, got {bias.dtype}"
                         f"{list(bias.shape)}")
    if len(names) != n or len(set(names)) != n:
        raise ValueError(f"{where}: {len(names)} class names for {n} classes (distinct names "
                         f"needed)")
    if dt_us is not None and dt_us < 1:
        raise ValueError(f"{where}: dt_us must be >= 1 µs, got {dt_us}")
    return HDWeights(weights.astype(np.float32), bias.astype(np.float64), dt_us, names)


# --- pruning and the sparse taps --------------------------------------------------------------

def prune_weights(weights: np.ndarray, below: float = 0.0,
                  keep_fraction: float | None = None) -> np.ndarray:
    """W with its small weights set to 0 (a copy).

    Parameters
    ----------
    weights : ndarray
        Any shape.
    below : float
        Weights with ``|w| < below`` are dropped.
    keep_fraction : float in (0, 1], optional
        Then keep only the ``round(keep_fraction * n)`` largest ``|w|`` of the ``n`` weights
        left non-zero (equal magnitudes: the first in C order first).
    """
    w = np.where(np.abs(weights) >= below, weights, 0).astype(weights.dtype)
    if keep_fraction is not None:
        flat = w.reshape(-1)
        nonzero = np.flatnonzero(flat)
        keep = int(round(keep_fraction * nonzero.size))
        order = np.argsort(-np.abs(flat[nonzero]), kind="stable")
        dropped = nonzero[order[keep:]]
        flat[dropped] = 0
    return w


class Taps(NamedTuple):
    """The non-zero weights of W, grouped by (polarity, ky, kx, delay), each group a list of
    (class, weight). Group ``g`` holds taps ``start[g]:start[g + 1]``; polarity ``p``'s groups
    are ``first[p]:first[p + 1]``; block ``b = (p * ky_size + ky) * kx_size + kx`` holds groups
    ``block[b]:block[b + 1]`` and, dense, its weights ``block_w[b, d * classes + c]``."""

    first: np.ndarray    # (3,) int64
    delay: np.ndarray    # (groups,) int64
    kx: np.ndarray       # (groups,) int64
    ky: np.ndarray       # (groups,) int64
    start: np.ndarray    # (groups + 1,) int64
    cls: np.ndarray      # (taps,) int64
    weight: np.ndarray   # (taps,) float32
    block: np.ndarray    # (2 * ky * kx + 1,) int64
    block_w: np.ndarray  # (2 * ky * kx, delays * classes) float32
    n_classes: int
    n_delays: int
    size: tuple[int, int]  # (kx, ky)


def make_taps(weights: np.ndarray) -> Taps:
    """The taps of W (classes, 2, delays, kx, ky): its non-zero weights, and W per block."""
    n_classes, _, n_delays, size_x, size_y = weights.shape
    ordered = np.asarray(weights, np.float32).transpose(1, 4, 3, 2, 0)  # p, ky, kx, d, c
    p, ky, kx, d, c = np.nonzero(ordered)  # C order: grouped by (p, ky, kx, d)
    key = ((p * size_y + ky) * size_x + kx) * n_delays + d
    new_group = np.r_[True, key[1:] != key[:-1]] if key.size else np.zeros(0, bool)
    heads = np.flatnonzero(new_group)
    weight = ordered[p, ky, kx, d, c].astype(np.float32)
    block_key = (p[heads] * size_y + ky[heads]) * size_x + kx[heads]
    block = np.searchsorted(block_key, np.arange(2 * size_y * size_x + 1)).astype(np.int64)
    block_w = np.ascontiguousarray(ordered.reshape(2 * size_y * size_x, n_delays * n_classes))
    return Taps(first=np.searchsorted(p[heads], [0, 1, 2]).astype(np.int64),
                delay=d[heads].astype(np.int64), kx=kx[heads].astype(np.int64),
                ky=ky[heads].astype(np.int64),
                start=np.r_[heads, key.size].astype(np.int64), cls=c.astype(np.int64),
                weight=weight, block=block, block_w=block_w, n_classes=n_classes,
                n_delays=n_delays, size=(size_x, size_y))


def taps_per_polarity(taps: Taps) -> np.ndarray:
    """Kept taps of the OFF and ON polarity: the synaptic operations of one such event."""
    return taps.start[taps.first[1:]] - taps.start[taps.first[:-1]]


def synops_per_event(taps: Taps, polarity: np.ndarray) -> float:
    """Synaptic operations per event (kept taps of its polarity, averaged over the events
    ``polarity``, 0/1): the paper's computational load. An event near the border of the
    output grid makes fewer (taps that fall outside it are skipped), which the node's live
    figure counts exactly."""
    if polarity.size == 0:
        return 0.0
    return float(taps_per_polarity(taps)[polarity.astype(np.int64)].mean())


# --- geometry and state -----------------------------------------------------------------------

class Geometry(NamedTuple):
    """Where a neuron sits. Its centre column is ``i * stride`` ("same": every pixel of the
    sensor can be a centre, the input is zero outside it) or ``i * stride + kx // 2``
    ("valid": only centres whose whole kernel lies on the sensor), ``i`` in [0, width);
    rows alike. An event at column ``x`` reaches the neuron of tap ``kx`` at raw column
    ``x - kx + offset``, kept when it lies in [0, span) and is a multiple of the stride."""

    width: int    # output columns W'
    height: int   # output rows H'
    offset_x: int
    offset_y: int
    span_x: int
    span_y: int
    stride: int


def geometry(width: int, height: int, size: tuple[int, int], border: str,
             stride: int) -> Geometry:
    """The output grid of a ``width`` x ``height`` sensor under a (kx, ky) kernel.

    Raises
    ------
    ValueError
        ``border="valid"`` with a kernel larger than the sensor (no output position).
    """
    kx, ky = size
    if border == "same":
        offset_x, offset_y, span_x, span_y = kx // 2, ky // 2, width, height
    else:
        if kx > width or ky > height:
            raise ValueError(f"a {kx}x{ky} kernel has no valid position on a {width}x{height} "
                             f"sensor")
        offset_x, offset_y, span_x, span_y = 0, 0, width - kx + 1, height - ky + 1
    return Geometry((span_x - 1) // stride + 1, (span_y - 1) // stride + 1, offset_x, offset_y,
                    span_x, span_y, stride)


class HDState(NamedTuple):
    """Everything the detector remembers between batches (updated in place by the kernels).

    ``ring[position, slot, class]`` holds the evidence of step ``s`` in slot ``s % delays``
    for the steps ``clock[STEP]`` (the oldest not yet read out) to ``clock[STEP] + delays - 1``;
    ``touched[slot, :count[slot]]`` lists the positions that slot received (``marked[position,
    slot]`` flags them); ``window_map[position, class]`` and ``window_sum[class]`` (+ the number
    of read-out positions last) add up the read-outs of the current window; ``gathered`` is
    the read-out's scratch (a step's evidence in listed order).
    """

    ring: np.ndarray         # (H' * W' * delays * classes,) float32
    marked: np.ndarray       # (H' * W' * delays,) uint8
    touched: np.ndarray      # (delays * H' * W',) int32
    count: np.ndarray        # (delays,) int64
    clock: np.ndarray        # (3,) int64: STEP, PENDING, HAS_EVIDENCE
    window_map: np.ndarray   # (H' * W' * classes,) float64
    window_sum: np.ndarray   # (classes + 1,) float64
    gathered: np.ndarray     # (H' * W' * classes,) float32


def initial_state(taps: Taps, geo: Geometry) -> HDState:
    """An empty detector: no evidence, no step yet (the first event opens the clock)."""
    slots, n_pos = taps.n_delays, geo.width * geo.height
    clock = np.zeros(3, np.int64)
    clock[STEP] = NO_STEP
    return HDState(np.zeros(slots * n_pos * taps.n_classes, np.float32),
                   np.zeros(slots * n_pos, np.uint8), np.zeros(slots * n_pos, np.int32),
                   np.zeros(slots, np.int64), clock,
                   np.zeros(n_pos * taps.n_classes, np.float64),
                   np.zeros(taps.n_classes + 1, np.float64),
                   np.zeros(n_pos * taps.n_classes, np.float32))


class Readout(NamedTuple):
    """How a completed step is read out (see the module docstring)."""

    mode: int              # EVIDENCE, LOGISTIC, ARGMAX or LOGIT
    bias: np.ndarray       # (classes,) float64
    threshold: float       # LOGISTIC: on C + b (the logit of the probability); ARGMAX: on p
    keep_map: bool         # also add per position into window_map


# --- the kernels ------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _read_step(step: int, n_pos: int, n_cls: int, ring: np.ndarray, marked: np.ndarray,
               touched: np.ndarray, count: np.ndarray, clock: np.ndarray, mode: int,
               bias: np.ndarray, threshold: float, keep_map: bool, window_map: np.ndarray,
               window_sum: np.ndarray, gathered: np.ndarray, v: np.ndarray, e: np.ndarray
               ) -> None:
    """Read out step ``step`` (its evidence is complete) into the window sums; clear its slot.
    ``gathered`` holds the slot's evidence meanwhile; ``v`` and ``e`` are scratch arrays of one
    value per class."""
    slots = count.shape[0]
    slot = step % slots
    n = count[slot]
    if n == 0:
        return
    listed = slot * n_pos
    for q in range(n):  # gather first: independent loads, so their cache misses overlap
        pos = touched[listed + q]
        base = (pos * slots + slot) * n_cls
        for c in range(n_cls):
            gathered[q * n_cls + c] = ring[base + c]
            ring[base + c] = 0.0
        marked[pos * slots + slot] = 0
    for q in range(n):
        base = q * n_cls
        out = touched[listed + q] * n_cls
        if mode == EVIDENCE:
            for c in range(n_cls):
                window_sum[c] += gathered[base + c]
                if keep_map:
                    window_map[out + c] += gathered[base + c]
        else:
            best = 0
            for c in range(n_cls):
                v[c] = gathered[base + c] + bias[c]
                if v[c] > v[best]:
                    best = c
            if mode == LOGISTIC:
                for c in range(n_cls):
                    if v[c] > threshold:
                        window_sum[c] += 1.0
                        if keep_map:
                            window_map[out + c] += 1.0
            elif mode == ARGMAX:
                total = 0.0
                for c in range(n_cls):
                    total += math.exp(v[c] - v[best])
                if 1.0 / total > threshold:
                    window_sum[best] += 1.0
                    if keep_map:
                        window_map[out + best] += 1.0
            else:  # LOGIT: logit(p_c) = v_c - logsumexp of the other classes' v
                rest = 0.0  # e_j = exp(v_j - v_best) summed over the classes but the best
                for c in range(n_cls):
                    if c != best:
                        e[c] = math.exp(v[c] - v[best])
                        rest += e[c]
                for c in range(n_cls):
                    if c != best:  # the others of c sum to 1 (the best) + rest - e_c
                        window_sum[c] += (v[c] - v[best]) - math.log1p(rest - e[c])
                    elif rest > _TINY:  # p / (1 - p) = 1 / rest
                        window_sum[c] -= math.log(rest)
                    else:  # every other class underflowed: from the runner-up instead
                        second = -math.inf
                        for j in range(n_cls):
                            if j != best and v[j] > second:
                                second = v[j]
                        others = 0.0
                        for j in range(n_cls):
                            if j != best:
                                others += math.exp(v[j] - second)
                        window_sum[c] += (v[best] - second) - math.log(others)
    count[slot] = 0
    window_sum[n_cls] += n
    clock[PENDING] -= 1
    clock[HAS_EVIDENCE] = 1


@numba.njit(cache=True, nogil=True)
def _advance(target: int, window: int, n_pos: int, n_cls: int, ring: np.ndarray,
             marked: np.ndarray, touched: np.ndarray, count: np.ndarray, clock: np.ndarray,
             mode: int, bias: np.ndarray, threshold: float, keep_map: bool,
             window_map: np.ndarray, window_sum: np.ndarray, gathered: np.ndarray,
             v: np.ndarray, e: np.ndarray) -> int:
    """Read out the steps before ``target``; stop early (WINDOW) when a window with evidence
    ends (``clock[STEP]`` is then the first step of the next window). Steps with an empty ring
    are skipped in one jump."""
    while clock[STEP] < target:
        step = clock[STEP]
        if clock[PENDING] == 0:  # nothing left to read: every step up to target is empty
            end = (step // window + 1) * window
            if clock[HAS_EVIDENCE] != 0 and target >= end:
                clock[STEP] = end
                return WINDOW
            clock[STEP] = target
            return DONE
        _read_step(step, n_pos, n_cls, ring, marked, touched, count, clock, mode, bias,
                   threshold, keep_map, window_map, window_sum, gathered, v, e)
        clock[STEP] = step + 1
        if (step + 1) % window == 0:
            if clock[HAS_EVIDENCE] != 0:
                return WINDOW
    return DONE


@numba.njit(cache=True, nogil=True)
def _run(events: np.ndarray, start: int, dt: int, window: int, delay: np.ndarray,
         tap_kx: np.ndarray, tap_ky: np.ndarray, tap_start: np.ndarray, block: np.ndarray,
         block_w: np.ndarray, out_w: int, out_h: int, offset_x: int, offset_y: int,
         span_x: int, span_y: int, stride: int, ring: np.ndarray, marked: np.ndarray,
         touched: np.ndarray, count: np.ndarray, clock: np.ndarray, counters: np.ndarray,
         mode: int, bias: np.ndarray, threshold: float, keep_map: bool,
         window_map: np.ndarray, window_sum: np.ndarray, gathered: np.ndarray
         ) -> tuple[int, int]:
    slots = count.shape[0]
    n_pos = out_w * out_h
    n_cls = window_sum.shape[0] - 1
    v = np.empty(n_cls)
    e_scratch = np.empty(n_cls)
    for i in range(start, events.shape[0]):
        e = events[i]
        k = e.t // dt
        if clock[STEP] == NO_STEP:
            clock[STEP] = k
        elif k < clock[STEP]:
            if k < clock[STEP] - slots:  # back by more than the kernel remembers: a new clock
                return i, RESTART
            counters[LATE] += 1  # its step is already read out: it counts in the current one
            k = clock[STEP]
        elif k > clock[STEP]:
            if _advance(k, window, n_pos, n_cls, ring, marked, touched, count, clock, mode,
                        bias, threshold, keep_map, window_map, window_sum, gathered, v,
                        e_scratch) == WINDOW:
                return i, WINDOW
        base_slot = k % slots
        ops = 0
        n_blocks = (block.shape[0] - 1) // 2
        for b in range(e.p * n_blocks, (e.p + 1) * n_blocks):  # (ky, kx) of the polarity
            g0 = block[b]
            g1 = block[b + 1]
            if g0 == g1:
                continue
            rx = e.x - tap_kx[g0] + offset_x
            ry = e.y - tap_ky[g0] + offset_y
            if rx < 0 or rx >= span_x or ry < 0 or ry >= span_y:
                continue
            if stride > 1:
                if rx % stride != 0 or ry % stride != 0:
                    continue
                rx //= stride
                ry //= stride
            pos = ry * out_w + rx
            for g in range(g0, g1):  # the block's kept delays: list the position in their slots
                slot = base_slot + delay[g]
                if slot >= slots:
                    slot -= slots
                mark = pos * slots + slot
                if marked[mark] == 0:
                    marked[mark] = 1
                    if count[slot] == 0:
                        clock[PENDING] += 1
                    touched[slot * n_pos + count[slot]] = pos
                    count[slot] += 1
            # the block's D x C weights into the position's D slots (from base_slot, wrapping);
            # unsigned indices: no negative-index wraparound in the loop, so it vectorizes
            row = np.uint64(pos * slots * n_cls)
            split = np.uint64((slots - base_slot) * n_cls)
            head = row + np.uint64(base_slot * n_cls)
            w = block_w[b]
            for j in range(split):
                ring[head + j] += w[j]
            for j in range(np.uint64(base_slot * n_cls)):
                ring[row + j] += w[split + j]
            ops += tap_start[g1] - tap_start[g0]
        counters[OPS] += ops
    return events.shape[0], DONE


def run_events(events: np.ndarray, start: int, dt_us: int, window: int, taps: Taps,
               geo: Geometry, readout: Readout, state: HDState, counters: np.ndarray
               ) -> tuple[int, int]:
    """Add ``events[start:]`` (EVENT_DTYPE, time-sorted) to the detector, reading out every
    step that completes; stop when a window with evidence ends.

    Parameters
    ----------
    events : ndarray of EVENT_DTYPE
    start : int
        First event to take.
    dt_us : int
        Step (µs): event ``t`` is in step ``t // dt_us`` (steps on the event clock from 0).
    window : int
        Steps per output window (windows are ``[m * window, (m + 1) * window)`` steps).
    taps, geo, readout : the model, its output grid and its read-out.
    state : HDState
        Updated in place.
    counters : ndarray (2,) int64
        ``[OPS]`` synaptic operations made and ``[LATE]`` late events, incremented.

    Returns
    -------
    index : int
        The first event not taken (``len(events)`` when all were).
    why : int
        ``DONE``; ``WINDOW``: a window with evidence ended before ``events[index]`` (emit
        ``state.window_*``, clear them and ``clock[HAS_EVIDENCE]``, call again from
        ``index``); ``RESTART``: ``events[index]`` is more than ``delays`` steps before the
        clock (a restarted camera): flush, start a new state, call again. An event of an
        already read-out step less far back is added to the current step (``[LATE]``).
    """
    return _run(events, start, dt_us, window, taps.delay, taps.kx, taps.ky,
                taps.start, taps.block, taps.block_w, geo.width, geo.height, geo.offset_x,
                geo.offset_y, geo.span_x, geo.span_y, geo.stride, state.ring, state.marked,
                state.touched, state.count, state.clock, counters, readout.mode, readout.bias,
                readout.threshold, readout.keep_map, state.window_map, state.window_sum,
                state.gathered)


def advance(target: int, window: int, geo: Geometry, readout: Readout, state: HDState) -> int:
    """Read out the steps before step ``target`` as if time passed without events; returns
    ``WINDOW`` when a window with evidence ended first (as `run_events`), else ``DONE``."""
    n_cls = state.window_sum.shape[0] - 1
    return _advance(target, window, geo.width * geo.height, n_cls, state.ring, state.marked,
                    state.touched, state.count, state.clock, readout.mode, readout.bias,
                    readout.threshold, readout.keep_map, state.window_map, state.window_sum,
                    state.gathered, np.empty(n_cls), np.empty(n_cls))


def warm_up(event_dtype: np.dtype) -> None:
    """Compile the kernels (or load them from Numba's cache) for batches of ``event_dtype``
    records, writable and read-only (a batch decoded off the wire is read-only)."""
    taps = make_taps(np.ones((2, 2, 1, 1, 1), np.float32))
    geo = geometry(1, 1, taps.size, "same", 1)
    readout = Readout(EVIDENCE, np.zeros(2), 0.0, True)
    for writable in (True, False):
        none = np.empty(0, event_dtype)
        none.flags.writeable = writable
        run_events(none, 0, 1, 1, taps, geo, readout, initial_state(taps, geo),
                   np.zeros(2, np.int64))
    advance(0, 1, geo, readout, initial_state(taps, geo))
