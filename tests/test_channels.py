"""pick and reref on the real EEGMMIDB montage, checked against MNE doing the same offline."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from conftest import data_path
from nodes.channels import Pick, Reref, standard_names
from pipeline import Frame, FrameKind, ParamError, StreamInfo

EDF = data_path() / "eeg" / "S001R04.edf"


@pytest.fixture(scope="module")
def recording() -> tuple[mne.io.BaseRaw, StreamInfo, np.ndarray]:
    if not EDF.is_file():
        pytest.skip(f"no {EDF} (set NEUROFLOW_DATA)")
    raw = mne.io.read_raw_edf(EDF, preload=True, verbose="error")
    info = StreamInfo(FrameKind.SAMPLES, 160.0, tuple(raw.ch_names), ("uV",) * 64, shape=(64,))
    return raw, info, (raw.get_data() * 1e6).astype(np.float32)


def run(node: Pick | Reref, info: StreamInfo, x: np.ndarray) -> tuple[StreamInfo, np.ndarray]:
    """``x`` through ``node`` in 16-sample frames: the output info and the output signal."""
    out = node.setup({"in": info})["out"]
    chunks = []
    for a in range(0, x.shape[1], 16):
        [(_, frame)] = node.process("in", Frame(FrameKind.SAMPLES, x[:, a:a + 16], 0))
        chunks.append(frame.data)
    return out, np.concatenate(chunks, axis=1)


def test_standard_names_are_mnes(recording) -> None:
    raw, info, _ = recording
    std = raw.copy()
    mne.datasets.eegbci.standardize(std)
    assert standard_names(info.channel_names) == std.ch_names
    assert standard_names(["C3..", "Fc5.", "Fpz.", "Iz.."]) == ["C3", "FC5", "Fpz", "Iz"]


def test_pick_by_standard_name_keeps_the_given_order_and_units(recording) -> None:
    raw, info, x = recording
    out, y = run(Pick(Pick.Params(channels=["Cz", "C3", "C4"], standardize=True)), info, x)
    assert out.channel_names == ("Cz", "C3", "C4") and out.shape == (3,) and out.units == ("uV",) * 3
    np.testing.assert_array_equal(y, x[[raw.ch_names.index(n) for n in ("Cz..", "C3..", "C4..")]])


def test_pick_by_regex_minus_exclusions(recording) -> None:
    _, info, x = recording
    out, y = run(Pick(Pick.Params(regex="^C[0-9z]", exclude=["Cz"], standardize=True)), info, x)
    assert out.channel_names == ("C5", "C3", "C1", "C2", "C4", "C6")
    assert y.shape == (6, x.shape[1])


@pytest.mark.parametrize(("params", "field", "text"), [
    ({"channels": ["C3"]}, "channels", "no channel C3; the stream has Fc5., Fc3."),
    ({"exclude": ["Nope"]}, "exclude", "no channel Nope"),
    ({"regex": "("}, "regex", "bad regular expression"),
    ({"regex": "^X"}, "channels", "nothing left to keep"),
])
def test_pick_errors_name_the_field_and_the_channels(recording, params: dict, field: str,
                                                     text: str) -> None:
    _, info, _ = recording
    with pytest.raises(ParamError) as e:
        Pick(Pick.Params(**params)).setup({"in": info})
    assert e.value.field == field and text in str(e.value)


@pytest.mark.parametrize("ref", ["average", ["Cz.."], ["T9..", "T10."]])
def test_reref_equals_mne_set_eeg_reference(recording, ref) -> None:
    """Against MNE on the same float32 µV signal; float32 output, so within 1e-4 µV
    (float32 resolution at ~100 µV is ~1e-5 µV)."""
    raw, info, x = recording
    _, y = run(Reref(Reref.Params(ref=ref)), info, x)
    ref_raw = mne.io.RawArray(x.astype(np.float64), raw.info, verbose="error")
    ref_raw.set_eeg_reference(ref, projection=False, verbose="error")
    np.testing.assert_allclose(y, ref_raw.get_data(), rtol=0, atol=1e-4)


def test_reref_leaves_excluded_channels_alone_and_out_of_the_average(recording) -> None:
    _, info, x = recording
    _, y = run(Reref(Reref.Params(ref="average", exclude=["Fp1.", "Fp2."])), info, x)
    i1, i2 = info.channel_names.index("Fp1."), info.channel_names.index("Fp2.")
    np.testing.assert_array_equal(y[[i1, i2]], x[[i1, i2]])
    rest = [i for i in range(64) if i not in (i1, i2)]
    np.testing.assert_allclose(y[rest].astype(np.float64).mean(axis=0), 0, atol=1e-3)


def test_reref_errors_name_the_missing_channels(recording) -> None:
    _, info, _ = recording
    with pytest.raises(ParamError, match="no channel Cz; the stream has") as e:
        Reref(Reref.Params(ref=["Cz"])).setup({"in": info})
    assert e.value.field == "ref"


@pytest.mark.parametrize(("cls", "params"), [(Pick, {"channels": ["b"]}), (Reref, {})])
def test_a_frame_with_another_channel_count_is_refused(cls: type[Pick | Reref],
                                                       params: dict) -> None:
    node = cls(cls.Params(**params), cls.type_name)
    node.setup({"in": StreamInfo(FrameKind.SAMPLES, 160.0, ("a", "b", "c"), shape=(3,))})
    with pytest.raises(ValueError, match="frame has 2 channels, the stream has 3"):
        list(node.process("in", Frame(FrameKind.SAMPLES, np.zeros((2, 16), np.float32), 0)))
