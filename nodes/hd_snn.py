"""``hd_snn``: motion from raw events by a layer of spiking neurons with heterogeneous delays
(Grimaldi & Perrinet, Biol. Cybern. 2023, "Learning heterogeneous delays in a layer of spiking
neurons for fast motion detection"), evaluated event by event.

Why a node of its own and not ``event_frames`` -> ``snn``: the detector is a 3-D kernel over
(polarity, delay, space) whose work, event by event, is the number of kept taps per event; a
pruned kernel keeps a few per cent of them, and binning the sensor into dense frames would
spend the dense convolution's work on empty pixels. The arithmetic (a ring buffer of future
evidence, equal to the dense binned causal conv3d) is `kernels.hd_snn`'s, documented there.

The model is a weights file (`kernels.hd_snn.save_weights`: ``.npz`` with ``weights`` W of
shape (classes, 2, delays, kx, ky), ``bias`` per class, ``dt_us``, ``class_names``; a bare
``.npy`` W is accepted with ``dt_us`` given here). Event ``t`` falls in step ``t // dt_us``;
tap ``(d, kx, ky)`` of a neuron reads its input ``d`` steps back, ``kx - KX // 2`` columns and
``ky - KY // 2`` rows from its centre. ``prune`` drops weights with ``|w| < prune`` and
``keep_fraction`` keeps only that share of the largest remaining ones; only kept taps cost
anything (the ``synops_per_event`` figure).

Output grid (``border``, ``stride``): ``same`` puts a neuron at every ``stride``-th pixel of the
sensor (H' = ceil(H / stride), the input is zero outside the sensor), ``valid`` only where its
whole kernel lies on the sensor (H' = (H - KY) // stride + 1, centres from KY // 2).

Output, one frame per window of ``step_us`` (a multiple of ``dt_us``; windows aligned on the
event clock, ``[m step_us, (m + 1) step_us)``) in which some output neuron received input; a
window without any (a silence longer than the kernel's delays) gives no frame:

* ``output: prediction`` (default): a PREDICTION frame, probabilities over the classes.
  ``readout: logit`` (the paper's full-field read-out, section 2.4): at each step and each
  neuron position that received input, ``p = softmax(C + bias)`` over classes and its logit
  ``log p_c - log(1 - p_c)``; these logits are averaged over the window's (step, position)
  pairs and the probabilities are their softmax. Not the softmax of the evidence summed over
  positions: for a kernel shared across positions that sum is the events' count times each
  class's total weight, whatever the motion. ``readout: spikes``: each class's output spikes
  (``decision`` below) over the window, over their total (uniform when none fired).
  ``meta``: ``label``, ``index``, ``positions`` (the (step, position) pairs read), ``spikes``
  (spike read-out).
* ``output: spikes``: a (C, H', W') float32 tensor, how many steps of the window each output
  neuron fired. ``decision: argmax``: at each position the class with the largest ``C + bias``
  fires if its softmax probability over classes exceeds ``threshold`` (the paper's
  winner-take-all spiking output); ``decision: logistic``: every class with
  ``sigmoid(C + bias) > threshold`` fires. A neuron without input must stay silent, so a
  bias that fires on its own is refused at ``threshold``.
* ``output: evidence``: the (C, H', W') float32 evidence C summed over the window's steps (no
  bias): what the network computes, for inspection and training.

A frame's ``t_device`` is its window's start (s, the input's clock) and its ``t_origin_ns`` the
stamp of the input frame whose event completed it (the last one at the end of the stream).

State: the ring of D future steps (H' x W' x delays x classes float32), the oldest step not yet
read out, and the current window's sums; events only move it, so a stream cut into batches
anywhere gives the same frames. A step is read out when an event of a later step arrives; at
the end of the stream (``close``) the remaining evidence is read out and its windows emitted.
``reset()`` empties it (the next event starts the clock). An event whose step was already read
out is added to the current step (``late``); one more than D steps back restarts the clock
(the pending windows are emitted first; ``restarts``). ``figures()``: ``events``,
``synops_per_event`` (taps actually added per event: kept taps of its polarity, fewer at the
borders), ``late``, ``restarts``, and EventInput's ``non_monotonic`` / ``out_of_range``.

Cost: per event, its kept taps; per step, one read-out of C values at every position that
received input in that step (C exponentials each for ``argmax`` and ``logit``). On a busy
320x240 sensor at 1 ms steps the read-out weighs as much as the taps: a ``stride``, a coarser
``dt_us`` or a region (``roi``, ``downsample``) cut both.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Literal, Mapping

import numpy as np
from pydantic import Field
from scipy.special import softmax

from kernels.hd_snn import (ARGMAX, EVIDENCE, HAS_EVIDENCE, LATE, LOGISTIC, LOGIT, OPS, PENDING,
                            RESTART, STEP, WINDOW, HDState, Readout, advance, geometry,
                            initial_state, load_weights, make_taps, prune_weights, run_events,
                            taps_per_polarity, warm_up)
from nodes.event_input import EventInput
from pipeline import EVENT_DTYPE, Frame, FrameKind, NodeParams, ParamError, StreamInfo
from pipeline.node import Figure, Output

#: The largest state a node allocates (ring + window), bytes.
MAX_STATE_BYTES = 2 ** 31


class HDSNN(EventInput):
    """Heterogeneous-delay spiking motion detector over raw events (Grimaldi & Perrinet 2023);
    class predictions, output spikes or evidence per window."""

    type_name = "hd_snn"

    class Params(NodeParams):
        weights: str = Field(description="weights file: .npz from kernels.hd_snn.save_weights "
                                         "(W, bias, dt_us, class names) or a bare .npy W of "
                                         "shape (classes, 2, delays, kx, ky)")
        dt_us: int | None = Field(None, ge=1, description="step (µs); default: the file's; "
                                                          "needed for a bare .npy")
        output: Literal["prediction", "spikes", "evidence"] = Field(
            "prediction", description="class probabilities, output spike counts (C, H', W') "
                                      "or summed evidence (C, H', W') per window")
        step_us: int | None = Field(None, ge=1, description="window (µs), a multiple of "
                                                            "dt_us; default dt_us")
        readout: Literal["logit", "spikes"] = Field(
            "logit", description="prediction from the mean logit of the per-position class "
                                 "probabilities (paper), or from output spike counts")
        decision: Literal["argmax", "logistic"] = Field(
            "argmax", description="which output neurons fire: the winning class if its "
                                  "softmax probability > threshold, or each class whose "
                                  "sigmoid > threshold")
        threshold: float = Field(0.5, gt=0, lt=1, description="firing probability threshold")
        prune: float = Field(0.0, ge=0, description="drop weights with |w| below this")
        keep_fraction: float | None = Field(None, gt=0, le=1, description="keep only this "
                                            "share of the largest |w| (after prune)")
        border: Literal["same", "valid"] = Field(
            "same", description="neurons at every pixel (zero input outside the sensor), or "
                                "only where the whole kernel lies on the sensor")
        stride: int = Field(1, ge=1, le=4096, description="a neuron every stride pixels")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        src = self.sensor(info)
        p = self.params
        try:
            model = load_weights(Path(p.weights))
        except ValueError as e:
            raise ParamError("weights", str(e)) from None
        if model.dt_us is not None and p.dt_us is not None and p.dt_us != model.dt_us:
            raise ParamError("dt_us", f"{p.weights} was trained at dt_us={model.dt_us}: leave "
                                      f"dt_us out (a kernel's delays are steps of its dt)")
        self.dt = model.dt_us if model.dt_us is not None else p.dt_us
        if self.dt is None:
            raise ParamError("dt_us", f"{p.weights} stores no dt_us (a bare .npy): give dt_us")
        step = self.dt if p.step_us is None else p.step_us
        if step % self.dt:
            raise ParamError("step_us", f"step_us={step} is not a multiple of dt_us={self.dt}")
        self.window = step // self.dt
        self.names = model.class_names
        pruned = prune_weights(model.weights, p.prune, p.keep_fraction)
        self.taps = make_taps(pruned)
        if self.taps.cls.size == 0:
            raise ParamError("prune" if p.keep_fraction is None else "keep_fraction",
                             f"no weight of {p.weights} is left after pruning")
        try:
            self.geo = geometry(self.width, self.height, self.taps.size, p.border, p.stride)
        except ValueError as e:
            raise ParamError("border", f"{e}: use border: same") from None
        n_cls, n_pos = len(self.names), self.geo.width * self.geo.height
        size = n_pos * n_cls * (4 * self.taps.n_delays + 12) + n_pos * 5 * self.taps.n_delays
        if size > MAX_STATE_BYTES:
            raise ParamError("stride", f"the state would take {size / 2 ** 30:.1f} GiB "
                                       f"({self.taps.n_delays} delays x {self.geo.height}x"
                                       f"{self.geo.width} positions x {n_cls} classes): use a "
                                       f"stride, or a smaller region (roi, downsample)")
        self.readout = self._readout(model.bias)
        self.counters = np.zeros(2, np.int64)
        self.events = 0
        self.restarts = 0
        self.reset()
        extra = {"model": p.weights, "dt_us": self.dt, "step_us": step,
                 "taps": int(self.taps.cls.size),
                 "taps_per_event": [int(n) for n in taps_per_polarity(self.taps)],
                 "kept_fraction": float(self.taps.cls.size / model.weights.size),
                 "border": p.border, "stride": p.stride}
        if p.output == "prediction":
            return {"out": StreamInfo(FrameKind.PREDICTION, 1e6 / step, dtype="float32",
                                      shape=(n_cls,), class_names=self.names, clock=src.clock,
                                      extra={**extra, "readout": p.readout})}
        return {"out": StreamInfo(FrameKind.TENSOR, 1e6 / step, dtype="float32",
                                  shape=(n_cls, self.geo.height, self.geo.width),
                                  clock=src.clock, extra={**extra, "axes": "CHW",
                                                          "class_names": list(self.names)})}

    def _readout(self, bias: np.ndarray) -> Readout:
        """The kernel's read-out for these params; refuses a bias that fires without input."""
        p = self.params
        if p.output == "evidence":
            return Readout(EVIDENCE, bias, 0.0, True)
        keep_map = p.output == "spikes"
        logit_readout = not keep_map and p.readout == "logit"
        if len(bias) < 2 and (logit_readout or p.decision == "argmax"):
            raise ParamError("weights", f"{p.weights} has one class: a softmax over classes "
                                        f"needs two (use output: spikes, decision: logistic)")
        if logit_readout:
            return Readout(LOGIT, bias, 0.0, False)
        if p.decision == "logistic":
            logit = math.log(p.threshold / (1 - p.threshold))
            if bias.max() > logit:
                raise ParamError("threshold", f"class {self.names[int(bias.argmax())]!r} fires "
                                              f"without input (sigmoid(bias) = "
                                              f"{1 / (1 + math.exp(-bias.max())):.3g} > "
                                              f"threshold {p.threshold:g}): raise threshold")
            return Readout(LOGISTIC, bias, logit, keep_map)
        prior = softmax(bias).max()
        if prior > p.threshold:
            raise ParamError("threshold", f"the bias alone gives class "
                                          f"{self.names[int(bias.argmax())]!r} probability "
                                          f"{prior:.3g} > threshold {p.threshold:g}, so neurons "
                                          f"without input would fire: raise threshold")
        return Readout(ARGMAX, bias, p.threshold, keep_map)

    def open(self) -> None:
        """Compile the kernels (or load them from Numba's cache) before the first frame."""
        warm_up(EVENT_DTYPE)

    def reset(self) -> None:
        """No evidence, no clock: the next event starts the steps again."""
        super().reset()
        self.state: HDState = initial_state(self.taps, self.geo)
        self.stamp = 0  # t_origin_ns of the last input frame

    def figures(self) -> dict[str, Figure]:
        synops = self.counters[OPS] / self.events if self.events else 0.0
        return {**super().figures(), "events": self.events, "synops_per_event": float(synops),
                "late": int(self.counters[LATE]), "restarts": self.restarts}

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        events = self.checked(frame.data)
        self.stamp = frame.t_origin_ns
        self.events += events.shape[0]
        i = 0
        while True:
            i, why = run_events(events, i, self.dt, self.window, self.taps, self.geo,
                                self.readout, self.state, self.counters)
            if why == WINDOW:
                yield self._emit()
            elif why == RESTART:
                yield from self._flush()
                self.state = initial_state(self.taps, self.geo)
                self.restarts += 1
            else:
                return

    def close(self) -> Iterable[Output]:
        """Read out the evidence still in the ring, as if time ran on without events."""
        yield from self._flush()
        self.reset()

    def _flush(self) -> Iterable[Output]:
        clock = self.state.clock
        while clock[PENDING] > 0 or clock[HAS_EVIDENCE]:
            target = int(clock[STEP]) + self.taps.n_delays + self.window
            if advance(target, self.window, self.geo, self.readout, self.state) == WINDOW:
                yield self._emit()

    def _emit(self) -> Output:
        """The frame of the window that just ended; its sums cleared."""
        st = self.state
        start_us = (int(st.clock[STEP]) - self.window) * self.dt
        n_cls = len(self.names)
        sums, pairs = st.window_sum[:n_cls], int(st.window_sum[n_cls])
        if self.params.output == "prediction":
            if self.readout.mode == LOGIT:
                probs = softmax(sums / pairs)
                meta = {}
            else:
                total = sums.sum()
                probs = sums / total if total > 0 else np.full(n_cls, 1.0 / n_cls)
                meta = {"spikes": int(total)}
            k = int(np.argmax(probs))
            frame = Frame(FrameKind.PREDICTION, probs.astype(np.float32), self.stamp,
                          t_device=start_us / 1e6,
                          meta={"label": self.names[k], "index": k, "positions": pairs, **meta})
        else:
            grid = st.window_map.reshape(self.geo.height, self.geo.width, n_cls)
            data = np.ascontiguousarray(grid.transpose(2, 0, 1), np.float32)
            meta = {"spikes": int(sums.sum())} if self.params.output == "spikes" else None
            frame = Frame(FrameKind.TENSOR, data, self.stamp, t_device=start_us / 1e6,
                          meta=meta)
            st.window_map[:] = 0.0
        st.window_sum[:] = 0.0
        st.clock[HAS_EVIDENCE] = 0
        return "out", frame
