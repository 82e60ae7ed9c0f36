"""window: the k-th window is samples k*S .. k*S+L of the stream, however the stream is cut."""

from __future__ import annotations

import numpy as np
import pytest

from nodes.window import Window
from conftest import random_chunks
from pipeline import Frame, FrameKind, ParamError, StreamInfo, StreamMismatch

SRATE = 160.0


def windows(x: np.ndarray, length: float, step: float, chunks: list[tuple[int, int]],
            t0: float | None = 2.0) -> tuple[StreamInfo, list[Frame]]:
    node = Window(Window.Params(length=length, step=step), "win")
    info = node.setup({"in": StreamInfo(FrameKind.SAMPLES, SRATE, ("a", "b", "c"), shape=(3,))})["out"]
    out = []
    for k, (a, b) in enumerate(chunks):
        t_device = None if t0 is None else t0 + a / SRATE
        out += [f for _, f in node.process("in", Frame(FrameKind.SAMPLES, x[:, a:b], 1000 + k,
                                                       t_device=t_device))]
    return info, out


@pytest.mark.parametrize(("length", "step", "most"), [
    (1.0, 0.0625, 16), (1.0, 0.0625, 400), (0.5, 1.0, 50), (0.25, 0.25, 7), (2.0, 0.5, 1)])
def test_windows_are_exact_slices_of_the_stream(length: float, step: float, most: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 3000)).astype(np.float32)
    info, got = windows(x, length, step, random_chunks(x.shape[1], rng, most))
    L, S = round(length * SRATE), round(step * SRATE)
    expected = [(k * S, k * S + L) for k in range((x.shape[1] - L) // S + 1)]
    assert len(got) == len(expected)
    for f, (a, b) in zip(got, expected):
        np.testing.assert_array_equal(f.data, x[:, a:b])
        assert f.kind is FrameKind.TENSOR and f.data.flags.c_contiguous
        assert f.t_device == pytest.approx(2.0 + a / SRATE, abs=1e-9)
    assert info.shape == (3, L) and info.srate == SRATE / S and info.channel_names == ("a", "b", "c")


def test_a_window_is_stamped_with_the_chunk_that_completed_it_and_does_not_change_later() -> None:
    x = np.arange(3 * 400, dtype=np.float32).reshape(3, 400)
    _, got = windows(x, 1.0, 0.0625, [(a, a + 16) for a in range(0, 400, 16)])
    first = got[0]
    assert first.t_origin_ns == 1000 + 160 // 16 - 1  # the 10th chunk brings sample 160
    np.testing.assert_array_equal(first.data, x[:, :160])  # later writes did not touch it


def test_reset_starts_over() -> None:
    x = np.random.default_rng(1).standard_normal((3, 500)).astype(np.float32)
    node = Window(Window.Params(length=1.0, step=0.5), "w")
    node.setup({"in": StreamInfo(FrameKind.SAMPLES, SRATE, shape=(3,))})
    list(node.process("in", Frame(FrameKind.SAMPLES, x[:, :100], 0)))
    node.reset()
    [(_, f)] = list(node.process("in", Frame(FrameKind.SAMPLES, x[:, 100:260], 0)))
    np.testing.assert_array_equal(f.data, x[:, 100:260])


def test_params_shorter_than_a_sample_are_refused() -> None:
    node = Window(Window.Params(length=1.0, step=0.001), "w")
    with pytest.raises(ParamError) as e:
        node.setup({"in": StreamInfo(FrameKind.SAMPLES, SRATE, shape=(3,))})
    assert e.value.field == "step" and "less than one sample at 160 Hz" in str(e.value)


def test_a_stream_without_a_rate_and_a_frame_with_other_channels_are_refused() -> None:
    node = Window(Window.Params(), "w")
    with pytest.raises(StreamMismatch, match="window needs a regular sampling rate; the stream "
                                             "has none"):
        node.setup({"in": StreamInfo(FrameKind.SAMPLES, 0.0, shape=(3,))})
    node.setup({"in": StreamInfo(FrameKind.SAMPLES, SRATE, shape=(3,))})
    with pytest.raises(ValueError, match="frame has 2 channels, the stream has 3"):
        list(node.process("in", Frame(FrameKind.SAMPLES, np.zeros((2, 16), np.float32), 0)))
