"""``snn``: a spiking network, read from a NIR file, run on tensor frames clock-driven at ``dt``.

Why a node of its own: a spiking model is a dynamical system, not a function of one window. Its
membranes, synaptic currents and delay lines carry over from one frame to the next, so the node
owns that state (`reset` returns it to time 0) and a stream cut into frames anywhere gives
exactly the spikes of one long run. The arithmetic (forward Euler, strict threshold, zero or
subtract reset, which simulators it matches) is `kernels.snn`'s, documented there.

Frames to time steps: the model's Input node takes one step's input of shape I. A stream of
shape I (an ``event_frames`` / ``voxel_grid`` window, a feature vector) gives one step per
frame; a stream of shape (T, *I) gives T steps per frame, one per row (a window of T bins).
Each step's input is presented ``steps_per_frame`` time steps in a row (a static frame shown
for k steps, rate-coding style). A frame of S steps in all (T x ``steps_per_frame``) comes out
as one frame:

* ``tensor`` (default): the Output node's values at each step, (S, *O) float32 (spikes 0/1 for
  a spiking layer, membranes for an ``LI`` read-out);
* ``prediction`` when ``class_names`` are given (one per Output value): ``readout: rate``
  counts each output neuron's spikes over the frame's S steps, the probabilities are the counts
  over their total (all equal when no neuron fired) and the label is the most active class (the
  first on a tie); ``readout: softmax`` takes the softmax of the mean Output value over the S
  steps (for a membrane read-out). ``meta``: ``label``, ``index``, ``steps`` (S) and ``spikes``
  (the count total, rate read-out). The frame keeps the input's ``t_origin_ns`` and ``t_device``.

Bad input is survived: a frame of another shape raises ``ValueError`` (the runtime counts it);
non-finite values are taken as no input (0) so the clock still advances, counted in
``nonfinite`` (values). ``figures()``: ``steps`` run, ``nonfinite``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Literal, Mapping

import nir
import numpy as np
from pydantic import Field
from scipy.special import softmax

from kernels.snn import GraphError, Network
from pipeline import Frame, FrameKind, Node, NodeParams, ParamError, StreamInfo
from pipeline.node import Figure, Output

#: NIR nodes whose output is spikes (0 / 1), the only ones a rate read-out can count.
SPIKING = ("LIF", "IF", "CubaLIF", "Threshold")


class SNN(Node):
    """Run a NIR spiking network over tensor frames; its Output node's values (or a class
    prediction from them) per frame."""

    type_name = "snn"
    accepts = {"in": (FrameKind.TENSOR,)}

    class Params(NodeParams):
        model: str = Field(description="path of the NIR (.nir) file")
        dt: float | None = Field(None, gt=0, description="time step (s); default: the "
                                                         "model's metadata 'dt'")
        reset: Literal["zero", "subtract"] | None = Field(
            None, description="after a spike, v = v_reset (zero) or v -= v_threshold "
                              "(subtract); default: the model's metadata, else zero")
        steps_per_frame: int = Field(1, ge=1, le=100_000, description="time steps each "
                                                                      "input step is presented")
        output: str | None = Field(None, description="the Output node to read (default: the "
                                                     "model's only one)")
        class_names: list[str] | None = Field(None, min_length=1, description="emit "
                                              "predictions, one class per Output value")
        readout: Literal["rate", "softmax"] = Field("rate", description="prediction from "
                                                    "spike counts, or softmax of the mean value")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        stream, p = info["in"], self.params
        self.net = _load(Path(p.model), p.dt, p.reset, p.output)
        one, shape = self.net.input_shape, tuple(stream.shape)
        if shape == one:
            self.stacked, rows = False, 1
        elif len(shape) == len(one) + 1 and shape[1:] == one:
            self.stacked, rows = True, shape[0]
        else:
            raise ParamError("model", f"{p.model}: the Input node {self.net.input_name!r} takes "
                                      f"{list(one)} per step, or (T, {', '.join(map(str, one))}) "
                                      f"for T steps; the stream gives {list(shape)}")
        self.frame_shape = shape
        steps = -1 if rows < 0 else rows * p.steps_per_frame
        extra = {"dt": self.net.dt, "reset": self.net.reset_mode, "model": p.model,
                 "output": self.net.output_name}
        self.nonfinite = 0
        self.steps = 0
        self.reset()
        if p.class_names is None:
            return {"out": StreamInfo(FrameKind.TENSOR, stream.srate, dtype="float32",
                                      shape=(steps, *self.net.output_shape), clock=stream.clock,
                                      extra=extra)}
        if len(p.class_names) != self.net.output_size:
            raise ParamError("class_names", f"{len(p.class_names)} class names for the "
                                            f"{self.net.output_size} values of Output "
                                            f"{self.net.output_name!r}")
        if p.readout == "rate" and self.net.feeding_kind(self.net.output_name) not in SPIKING:
            raise ParamError("readout", f"Output {self.net.output_name!r} carries "
                                        f"{self.net.feeding_kind(self.net.output_name)} values, "
                                        f"not spikes: use readout: softmax")
        return {"out": StreamInfo(FrameKind.PREDICTION, stream.srate, dtype="float32",
                                  shape=(len(p.class_names),), class_names=tuple(p.class_names),
                                  clock=stream.clock, extra=extra)}

    def open(self) -> None:
        """Compile the kernels (or load them from Numba's cache) before the first frame."""
        self.net.warm_up()

    def reset(self) -> None:
        """Back to time 0: membranes, synaptic currents and delay lines at zero."""
        self.state = self.net.initial_state()

    def figures(self) -> dict[str, Figure]:
        return {"steps": self.steps, "nonfinite": self.nonfinite}

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        x = frame.data
        expected = self.frame_shape
        if x.ndim != len(expected) or any(e >= 0 and a != e for a, e in zip(x.shape, expected)):
            raise ValueError(f"frame has shape {list(x.shape)}, the stream {list(expected)}")
        xs = np.array(x if self.stacked else x[None], np.float64)  # a copy: never write input
        bad = ~np.isfinite(xs)
        if bad.any():
            self.nonfinite += int(bad.sum())
            xs[bad] = 0.0
        if self.params.steps_per_frame > 1:
            xs = np.repeat(xs, self.params.steps_per_frame, axis=0)
        ys, self.state = self.net.run(xs, self.state)
        self.steps += len(ys)
        if self.params.class_names is None:
            yield "out", frame.with_data(
                ys.reshape(len(ys), *self.net.output_shape).astype(np.float32))
        else:
            yield "out", self._prediction(frame, ys)

    def _prediction(self, frame: Frame, ys: np.ndarray) -> Frame:
        """One PREDICTION frame from the Output values of a frame's steps (S, n)."""
        names = self.params.class_names
        meta = {"steps": len(ys)}
        if self.params.readout == "rate":
            counts = ys.sum(axis=0)
            total = counts.sum()
            probs = counts / total if total > 0 else np.full(len(names), 1.0 / len(names))
            meta["spikes"] = int(total)
        else:
            probs = softmax(ys.mean(axis=0)) if len(ys) else np.full(len(names), 1 / len(names))
        i = int(np.argmax(probs))
        return Frame(FrameKind.PREDICTION, probs.astype(np.float32), frame.t_origin_ns,
                     t_device=frame.t_device, meta={"label": names[i], "index": i, **meta})


def _load(path: Path, dt: float | None, reset: str | None, output: str | None) -> Network:
    """The compiled network of a NIR file; every failure a `ParamError` on the field to fix."""
    if not path.is_file():
        raise ParamError("model", f"no NIR file {path}")
    try:  # shapes are checked by Network; nir 1.0.8's check refuses grouped convolutions
        graph = nir.read(path, type_check=False)
    except Exception as e:  # h5py errors, nir's own asserts: all mean a bad file
        raise ParamError("model", f"{path} is not a NIR graph nir {nir.version} can read: "
                                  f"{type(e).__name__}: {e}") from None
    try:
        return Network(graph, dt, reset, output)
    except GraphError as e:
        raise ParamError(e.about, f"{path}: {e}") from None
