"""synthetic_eeg, realistic mode: the properties a demo or a decoder relies on, measured offline."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt, welch

from devices.synthetic import SyntheticEEG
from pipeline import Frame, ParamError

SRATE = 160.0


def record(seconds: float, chunk: int = 16, **params) -> tuple[tuple[str, ...], np.ndarray,
                                                                   list[Frame]]:
    """Names, samples (channels x n) and marker frames of a realistic headset run at full speed."""
    node = SyntheticEEG(SyntheticEEG.Params(mode="realistic", srate=SRATE, chunk=chunk,
                                            speed="max", **params), "eeg")
    names = node.setup({})["out"].channel_names
    frames, markers = [], []
    while sum(f.data.shape[1] for f in frames) < seconds * SRATE:
        for port, f in node.read():
            (frames if port == "out" else markers).append(f)
    return names, np.concatenate([f.data for f in frames], axis=1), markers


@pytest.fixture(scope="module")
def five_minutes() -> tuple[tuple[str, ...], np.ndarray, list[Frame]]:
    return record(300, channels=16, seed=7)


def test_the_signal_and_its_cues_do_not_depend_on_the_chunking() -> None:
    names, a, ma = record(20, chunk=16, channels=8, seed=1)
    _, b, mb = record(20, chunk=7, channels=8, seed=1)
    n = min(a.shape[1], b.shape[1])
    np.testing.assert_array_equal(a[:, :n], b[:, :n])
    cues = lambda ms: [(m.data[0], m.meta["sample"]) for m in ms if m.meta["sample"] < n]  # noqa
    assert cues(ma) == cues(mb) and len(cues(ma)) >= 4
    assert names == ("C3", "Cz", "C4", "Fz", "Pz", "O1", "Oz", "O2")  # the motor strip first
    _, c, _ = record(5, channels=8, seed=2)
    assert not np.array_equal(a[:, :c.shape[1]], c)


def test_spectrum_is_one_over_f_with_alpha_and_mains_where_they_belong(five_minutes) -> None:
    names, x, _ = five_minutes
    f, p = welch(x, SRATE, nperseg=int(4 * SRATE))
    fz, o1 = names.index("Fz"), names.index("O1")
    # background: log-log slope over 2-40 Hz away from the rhythms and the mains is ~-1 (pink);
    # 0.3 either way allows for the Welch estimate's spread on 5 minutes
    band = ((f >= 2) & (f <= 40)) & ~((f >= 7) & (f <= 15))
    slope = np.polyfit(np.log10(f[band]), np.log10(p[fz, band]), 1)[0]
    assert -1.3 < slope < -0.7, slope
    at = lambda hz: np.argmin(abs(f - hz))  # noqa: E731
    assert p[o1, at(10)] > 5 * p[fz, at(10)]          # alpha is occipital
    assert p[o1, at(10)] > 5 * p[o1, at(20)]          # ... and a peak
    assert (p[:, at(50)] > 20 * p[:, at(45)]).all()    # mains on every channel


def test_imagined_fists_desynchronise_the_contralateral_mu_rhythm(five_minutes) -> None:
    names, x, markers = five_minutes
    mu = sosfiltfilt(butter(4, [9, 13], "bandpass", fs=SRATE, output="sos"), x, axis=1)
    c3, c4 = names.index("C3"), names.index("C4")
    lateral, truth = [], []
    for m in markers:
        code, start = m.data[0], m.meta["sample"]
        assert m.t_device == start / SRATE and m.meta["duration"] == 4.0
        if code == "T0" or start + 4 * SRATE > x.shape[1]:
            continue
        seg = mu[:, start + int(0.5 * SRATE):start + int(4 * SRATE)]
        lateral.append(np.log(seg[c3].var() / seg[c4].var()))
        truth.append(code)
    assert len(truth) >= 30 and {"T1", "T2"} <= set(truth)
    # left fist (T1): mu falls over the right hemisphere (C4), so C3/C4 power rises; right: falls
    guess = np.where(np.array(lateral) > 0, "T1", "T2")
    assert (guess == np.array(truth)).mean() >= 0.9
    codes = [m.data[0] for m in markers]
    assert codes[0::2] == ["T0"] * len(codes[0::2])    # rest between every two imagery trials


def test_names_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ParamError) as e:
        SyntheticEEG(SyntheticEEG.Params(channels=3, names=["a", "b"])).setup({})
    assert e.value.field == "names"


@pytest.mark.parametrize(("params", "field"), [({"srate": 20.0}, "srate"),
                                               ({"srate": 100.0, "line_freq": 50.0}, "line_freq"),
                                               ({"srate": 30.0, "freq": 14.0}, "freq")])
def test_rates_too_low_for_the_model_name_the_field(params: dict, field: str) -> None:
    with pytest.raises(ParamError, match="at or above Nyquist") as e:
        SyntheticEEG(SyntheticEEG.Params(mode="realistic", **params)).setup({})
    assert e.value.field == field
