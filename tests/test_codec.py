"""Wire codec: every frame kind round-trips bit-exactly; no byte string can crash the decoder."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline.codec import FrameDecodeError, FrameEncodeError, decode, encode
from pipeline.frame import EVENT_DTYPE, Frame, FrameKind

NUMERIC = ["<f4", "<f8", "<f2", "i1", "<i2", "<i4", "<i8", "u1", "<u2", "<u4", "<u8", "?"]
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)
meta = st.none() | st.dictionaries(
    st.text(max_size=8),
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=16) | st.lists(st.integers(-1000, 1000), max_size=4),
    max_size=4)
t_device = st.none() | st.floats(allow_nan=True, allow_infinity=True)
header = st.tuples(st.integers(-2**63, 2**63 - 1), st.integers(-2**63, 2**63 - 1), t_device, meta)


def _events(n: int, rng: np.random.Generator) -> np.ndarray:
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 10**9, n))
    ev["x"], ev["y"] = rng.integers(0, 640, n), rng.integers(0, 480, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    kind = draw(st.sampled_from(list(FrameKind)))
    seq, t_origin, t_dev, m = draw(header)
    if kind is FrameKind.SAMPLES:
        data = draw(hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=0,
                                                             max_side=8)))
    elif kind is FrameKind.EVENTS:
        data = _events(draw(st.integers(0, 50)), np.random.default_rng(draw(st.integers(0, 99))))
    elif kind in (FrameKind.MARKERS, FrameKind.CONTROL):
        data = np.array(draw(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=5)))
    else:
        data = draw(hnp.arrays(st.sampled_from(NUMERIC), shapes))
    return Frame(kind, data, t_origin, seq, t_dev, m)


@settings(max_examples=600, deadline=None)
@given(frames(), st.binary(max_size=16))
def test_every_kind_dtype_and_shape_round_trips_bit_exactly(frame: Frame, topic: bytes) -> None:
    parts = encode(frame, topic)
    assert parts[0] == topic
    wire = [bytes(p) if not isinstance(p, np.ndarray) else p.tobytes() for p in parts]
    back = decode(wire)
    assert back.same_as(frame), (frame, back)


def test_payload_is_not_copied_on_decode() -> None:
    data = np.arange(64 * 16, dtype=np.float32).reshape(64, 16)
    wire = [b"", encode(Frame(FrameKind.SAMPLES, data, 1), b"")[1], data.tobytes()]
    back = decode(wire)
    assert np.shares_memory(back.data, np.frombuffer(wire[2], np.uint8))


def test_non_contiguous_payload_is_sent_in_c_order() -> None:
    data = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]
    parts = encode(Frame(FrameKind.SAMPLES, data, 5))
    back = decode([parts[0], parts[1], parts[2].tobytes()])
    np.testing.assert_array_equal(back.data, data)


@pytest.mark.parametrize("data, kind", [
    (np.zeros((2, 2), ">f4"), FrameKind.TENSOR),          # big-endian: not on the wire
    (np.zeros(3, "c8"), FrameKind.TENSOR),               # complex: no code
    (np.zeros((1,) * 9, "f4"), FrameKind.TENSOR),        # ndim 9 > 8
])
def test_unsendable_frames_raise_encode_error(data: np.ndarray, kind: FrameKind) -> None:
    with pytest.raises(FrameEncodeError):
        encode(Frame(kind, data, 0))


def test_meta_that_msgpack_cannot_carry_is_an_encode_error() -> None:
    with pytest.raises(FrameEncodeError):
        encode(Frame(FrameKind.PREDICTION, np.zeros(2, np.float32), 0, meta={"x": object()}))


def _valid_messages() -> list[list[bytes]]:
    rng = np.random.default_rng(7)
    out = []
    for frame in (
        Frame(FrameKind.SAMPLES, rng.standard_normal((8, 10)).astype(np.float32), 10, 3, 1.5),
        Frame(FrameKind.EVENTS, _events(20, rng), 11, 4),
        Frame(FrameKind.MARKERS, np.array(["left", "rest"]), 12, 5, meta={"sample": 3}),
        Frame(FrameKind.PREDICTION, np.array([0.2, 0.8], np.float32), 13, 6,
              meta={"label": "right", "exit": 2}),
        Frame(FrameKind.CONTROL, np.array(["stop"]), 14, 7),
        Frame(FrameKind.TENSOR, rng.standard_normal((2, 3, 4)), 15, 8),
    ):
        parts = encode(frame, b"node.out")
        out.append([parts[0], parts[1], parts[2].tobytes()])
    return out


def _mutate(msg: list[bytes], rng: random.Random) -> list[bytes]:
    parts = [bytearray(p) for p in msg]
    op = rng.randrange(7)
    i = rng.randrange(3)
    if op == 0 and parts[i]:                      # flip random bits
        for _ in range(rng.randint(1, 4)):
            j = rng.randrange(len(parts[i]))
            parts[i][j] ^= 1 << rng.randrange(8)
    elif op == 1:                                 # truncate
        parts[i] = parts[i][:rng.randrange(len(parts[i]) + 1)]
    elif op == 2:                                 # extend with garbage
        parts[i] += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif op == 3:                                 # drop or add a part
        return [bytes(p) for p in parts[:rng.randrange(3)]] if rng.random() < 0.5 else \
            [bytes(p) for p in parts] + [b"x"]
    elif op == 4:                                 # overwrite one header field with an extreme
        off = rng.choice([2, 3, 4, 5, 6, 8, 40])
        if off < len(parts[1]):
            parts[1][off:off + 4] = struct.pack("<I", rng.choice([0, 1, 255, 2**31, 2**32 - 1]))[
                :len(parts[1]) - off]
    elif op == 5:                                 # swap payload with another message's
        parts[2] = bytearray(rng.choice(_VALID)[2])
    else:                                         # huge shape in the header
        if len(parts[1]) >= 48:
            parts[1][40:48] = struct.pack("<Q", rng.choice([2**63, 2**64 - 1, 2**40]))
    return [bytes(p) for p in parts]


_VALID = _valid_messages()


def test_ten_thousand_mutated_and_random_messages_give_only_typed_errors() -> None:
    """Every input yields a Frame or FrameDecodeError: nothing else escapes the decoder."""
    rng = random.Random(1234)
    outcomes = {"frame": 0, "error": 0}
    for i in range(12_000):
        if i % 4 == 0:   # pure random parts
            msg = [bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
                   for _ in range(rng.randint(0, 4))]
        else:            # mutations of valid frames find the deeper checks
            msg = _mutate(rng.choice(_VALID), rng)
        try:
            frame = decode(msg)
        except FrameDecodeError:
            outcomes["error"] += 1
            continue
        # whatever decoded must be a consistent frame: readable and re-encodable
        outcomes["frame"] += 1
        assert frame.data.nbytes == len(msg[2])
        decode([b"", encode(frame)[1], frame.data.tobytes()])
        if frame.data.dtype.kind == "U":
            [str(s) for s in frame.data]
    assert outcomes["error"] > 9_000, outcomes  # the mutations really were malformed


@pytest.mark.parametrize("mutation, message", [
    (lambda m: [m[0], b"XX" + m[1][2:], m[2]], "bad magic"),
    (lambda m: [m[0], m[1][:2] + b"\x09" + m[1][3:], m[2]], "version"),
    (lambda m: [m[0], m[1], m[2][:-1]], "payload is"),
    (lambda m: m[:2], "expected 3 parts"),
    (lambda m: [m[0], m[1][:20], m[2]], "shorter than"),
])
def test_errors_say_what_is_wrong(mutation, message: str) -> None:
    with pytest.raises(FrameDecodeError, match=message):
        decode(mutation(_VALID[0]))


def test_kind_and_payload_must_agree() -> None:
    parts = encode(Frame(FrameKind.TENSOR, np.zeros((2, 3), np.float64), 0))
    header = bytearray(parts[1])
    header[3] = 1  # claim 'samples': those must be float32
    with pytest.raises(FrameDecodeError, match="samples must be 2-D float32"):
        decode([b"", bytes(header), parts[2].tobytes()])


def test_invalid_code_points_in_markers_are_rejected() -> None:
    parts = encode(Frame(FrameKind.MARKERS, np.array(["ab"]), 0))
    payload = np.frombuffer(parts[2].tobytes(), np.uint32).copy()
    payload[0] = 0xD800  # a lone surrogate
    with pytest.raises(FrameDecodeError, match="code points"):
        decode([b"", parts[1], payload.tobytes()])
