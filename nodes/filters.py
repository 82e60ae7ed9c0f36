"""Causal band-pass, high-pass, low-pass and notch filters, designed by MNE, run chunk by chunk.

Why MNE: its ``mne.filter.create_filter`` is the design the field already trusts (and checks);
we only make it streaming. IIR filters are second-order sections applied once, forward
(``phase='forward'``: causal, the magnitude response as designed, a non-linear phase); FIR filters
are MNE's ``phase='minimum'`` design (causal, shortest delay). Each channel keeps its filter state
across chunks, so the output does not depend on how the stream is cut: it equals SciPy's
``sosfilt`` / ``lfilter`` of the whole signal (tested on the real EEGMMIDB recordings).

Frames are float32; the state and the arithmetic are float64. A non-finite input (a NaN burst
from a loose electrode) makes that chunk's output non-finite on the affected channels, then
those channels' state restarts from zero instead of staying NaN for ever (``nan_resets``).
"""

from __future__ import annotations

from typing import Iterable, Literal, Mapping

import mne
import numpy as np
from pydantic import Field, field_validator

from kernels.filtering import StreamingFIR, StreamingSOS
from nodes.checks import check_channels, require_srate
from pipeline import Frame, FrameKind, Node, NodeParams, ParamError, StreamInfo
from pipeline.node import Output

#: Bands to design: (l_freq, h_freq) as in MNE; l_freq > h_freq is a band-stop.
Band = tuple[float | None, float | None]


class FilterParams(NodeParams):
    """What every filter takes besides its frequencies."""

    method: Literal["iir", "fir"] = Field("iir", description="'iir' (SOS, applied forward) or "
                                                             "'fir' (minimum phase)")
    order: int = Field(4, ge=1, le=16, description="IIR order (per band edge, as in scipy/MNE)")
    ftype: Literal["butter", "cheby1", "cheby2", "ellip", "bessel"] = Field(
        "butter", description="IIR family")
    rp: float = Field(1.0, gt=0, description="pass-band ripple (dB; cheby1, ellip)")
    rs: float = Field(40.0, gt=0, description="stop-band attenuation (dB; cheby2, ellip)")
    trans_bandwidth: float | Literal["auto"] = Field(
        "auto", description="FIR transition band width (Hz), or MNE's 'auto'")
    initial: Literal["zero", "first"] = Field(
        "zero", description="start from zero state (as offline sosfilt), or from the steady "
                            "state of the first sample (no start-up step)")


class StreamFilter(Node):
    """Base of the four filters: design once in ``setup``, filter each chunk with carried state."""

    accepts = {"in": (FrameKind.SAMPLES,)}
    Params = FilterParams

    def bands(self, srate: float) -> list[Band]:
        """The (l_freq, h_freq) pairs to cascade; raise `ParamError` for impossible ones."""
        raise NotImplementedError

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        stream = info["in"]
        require_srate(stream, self.type_name)
        self.channels = stream.n_channels
        p = self.params
        self.sos: np.ndarray | None = None
        self.taps: list[np.ndarray] = []
        designs = [self._design(band, stream.srate) for band in self.bands(stream.srate)]
        if p.method == "iir":
            self.sos = np.vstack(designs)
            self.stages: list[StreamingSOS | StreamingFIR] = [StreamingSOS(self.sos, self.channels)]
        else:
            self.taps = designs
            self.stages = [StreamingFIR(h, self.channels) for h in designs]
        self.nan_resets = 0
        self.started = False
        return {"out": stream}

    def _design(self, band: Band, srate: float) -> np.ndarray:
        try:
            return self._create(band, srate)
        except (ValueError, ArithmeticError) as e:  # MNE's own checks of the design
            field = "order" if self.params.method == "iir" else "trans_bandwidth"
            raise ParamError(field, f"MNE cannot design the {band} Hz filter: {e}") from None

    def _create(self, band: Band, srate: float) -> np.ndarray:
        p = self.params
        if p.method == "iir":
            iir = {"order": p.order, "ftype": p.ftype, "output": "sos"}
            if p.ftype in ("cheby1", "ellip"):
                iir["rp"] = p.rp
            if p.ftype in ("cheby2", "ellip"):
                iir["rs"] = p.rs
            return mne.filter.create_filter(None, srate, *band, method="iir", iir_params=iir,
                                            phase="forward", verbose="error")["sos"]
        return mne.filter.create_filter(None, srate, *band, method="fir", phase="minimum",
                                        l_trans_bandwidth=p.trans_bandwidth,
                                        h_trans_bandwidth=p.trans_bandwidth,
                                        fir_design="firwin", verbose="error")

    def open(self) -> None:
        """Compile the IIR kernel before the first frame (in the worker, not at validation)."""
        for stage in self.stages:
            if isinstance(stage, StreamingSOS):
                stage.warm_up()

    def figures(self) -> dict[str, int]:
        return {"nan_resets": self.nan_resets}

    def reset(self) -> None:
        for stage in self.stages:
            stage.reset()
        self.started = False

    def filter(self, x: np.ndarray) -> np.ndarray:
        """The next chunk (channels x n, any float dtype) filtered; float64."""
        if not self.started and self.params.initial == "first" and x.shape[1]:
            first = np.asarray(x[:, 0], np.float64)
            for stage in self.stages:
                stage.reset(first)
                first = first * stage.dc_gain()
        self.started = True
        y = x
        for stage in self.stages:
            y = stage(y)
            self.nan_resets += stage.recover()
        return y

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        x = frame.data
        check_channels(x, self.channels)
        yield "out", frame.with_data(self.filter(x).astype(np.float32))


def _check_freq(field: str, value: float, srate: float) -> None:
    if not 0 < value < srate / 2:
        raise ParamError(field, f"{value:g} Hz must be between 0 and Nyquist ({srate / 2:g} Hz "
                                f"for this {srate:g} Hz stream)")


class Bandpass(StreamFilter):
    """Keep ``low`` .. ``high`` Hz (causal; MNE design)."""

    type_name = "bandpass"

    class Params(FilterParams):
        low: float = Field(8.0, gt=0, description="lower pass-band edge (Hz)")
        high: float = Field(30.0, gt=0, description="upper pass-band edge (Hz)")

    def bands(self, srate: float) -> list[Band]:
        p = self.params
        _check_freq("low", p.low, srate)
        _check_freq("high", p.high, srate)
        if p.low >= p.high:
            raise ParamError("high", f"high ({p.high:g} Hz) must be above low ({p.low:g} Hz)")
        return [(p.low, p.high)]


class Highpass(StreamFilter):
    """Remove what is below ``low`` Hz (drifts, DC offset)."""

    type_name = "highpass"

    class Params(FilterParams):
        low: float = Field(1.0, gt=0, description="cut-off (Hz)")

    def bands(self, srate: float) -> list[Band]:
        _check_freq("low", self.params.low, srate)
        return [(self.params.low, None)]


class Lowpass(StreamFilter):
    """Remove what is above ``high`` Hz (muscle, aliasing before a resample)."""

    type_name = "lowpass"

    class Params(FilterParams):
        high: float = Field(40.0, gt=0, description="cut-off (Hz)")

    def bands(self, srate: float) -> list[Band]:
        _check_freq("high", self.params.high, srate)
        return [(None, self.params.high)]


class Notch(StreamFilter):
    """Remove line noise: a band-stop ``width`` Hz wide at each of ``freqs`` (and, with
    ``harmonics``, at their multiples below Nyquist)."""

    type_name = "notch"

    class Params(FilterParams):
        freqs: list[float] = Field([50.0], min_length=1, description="centre frequencies (Hz)")
        width: float = Field(2.0, gt=0, description="stop-band width (Hz)")
        harmonics: bool = Field(False, description="also every multiple below Nyquist")

        @field_validator("freqs", mode="before")
        @classmethod
        def _one(cls, v: object) -> object:
            return [v] if isinstance(v, (int, float)) else v

    def bands(self, srate: float) -> list[Band]:
        p = self.params
        centres: list[float] = []
        for f in p.freqs:
            _check_freq("freqs", f + p.width / 2, srate)
            if f - p.width / 2 <= 0:
                raise ParamError("width", f"a {p.width:g} Hz wide notch at {f:g} Hz reaches 0 Hz")
            k = 1
            while k == 1 or (p.harmonics and k * f + p.width / 2 < srate / 2):
                centres.append(k * f)
                k += 1
        return [(f + p.width / 2, f - p.width / 2) for f in sorted(set(centres))]
