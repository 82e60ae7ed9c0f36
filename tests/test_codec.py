"""Wire codec: every frame kind round-trips bit-exactly; no byte string can crash the decoder."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline.codec import (INLINE_MAX, FrameDecodeError, FrameEncodeError, decode, encode,
                            encode_header)
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


def _wire(parts: list) -> list[bytes]:
    return [p.tobytes() if isinstance(p, np.ndarray) else bytes(p) for p in parts]


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
    inline = _wire(encode(frame, topic))  # these frames are small: one part
    assert len(inline) == 1
    assert decode(inline).same_as(frame)
    three = [topic, encode_header(frame), np.ascontiguousarray(frame.data).tobytes()]
    assert decode(three).same_as(frame)  # the form large payloads take


def test_small_frames_travel_in_one_part_and_large_ones_in_three_without_copies() -> None:
    small = np.arange(64 * 16, dtype=np.float32).reshape(64, 16)
    [one] = encode(Frame(FrameKind.SAMPLES, small, 1), b"eeg.out")
    back = decode([one])
    assert np.shares_memory(back.data, np.frombuffer(one, np.uint8))  # no copy on decode
    large = np.zeros((64, INLINE_MAX // 256 + 1), np.float32)
    topic, header, payload = encode(Frame(FrameKind.SAMPLES, large, 1), b"eeg.out")
    assert topic == b"eeg.out" and payload is large  # sent as is, zero-copy
    wire = [topic, header, large.tobytes()]
    assert np.shares_memory(decode(wire).data, np.frombuffer(wire[2], np.uint8))


def test_non_contiguous_payload_is_sent_in_c_order() -> None:
    data = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]
    back = decode(_wire(encode(Frame(FrameKind.SAMPLES, data, 5))))
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
        Frame(FrameKind.TENSOR, np.zeros((0, 3), np.float32), 17, 10),
        Frame(FrameKind.SAMPLES, np.ones((64, 300), np.float32), 16, 9, meta={"big": True}),
    ):
        out.append(_wire(encode(frame, b"node.out")))
    return out


def _mutate(msg: list[bytes], rng: random.Random) -> list[bytes]:
    parts = [bytearray(p) for p in msg]
    op = rng.randrange(7)
    i = rng.randrange(len(parts))
    h = 0 if len(parts) == 1 else 1  # the part holding the header
    if op == 0 and parts[i]:                      # flip random bits
        for _ in range(rng.randint(1, 4)):
            j = rng.randrange(len(parts[i]))
            parts[i][j] ^= 1 << rng.randrange(8)
    elif op == 1:                                 # truncate
        parts[i] = parts[i][:rng.randrange(len(parts[i]) + 1)]
    elif op == 2:                                 # extend with garbage
        parts[i] += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif op == 3:                                 # drop or add a part
        return [bytes(p) for p in parts[:rng.randrange(len(parts))]] if rng.random() < 0.5 else \
            [bytes(p) for p in parts] + [b"x"]
    elif op == 4:                                 # overwrite one header field with an extreme
        off = rng.choice([2, 3, 4, 5, 6, 8, 40])
        if off < len(parts[h]):
            parts[h][off:off + 4] = struct.pack("<I", rng.choice([0, 1, 255, 2**31, 2**32 - 1]))[
                :len(parts[h]) - off]
    elif op == 5:                                 # splice in another message's tail
        other = rng.choice(_VALID)[-1]
        parts[-1] = parts[-1][:rng.randrange(len(parts[-1]) + 1)] + other[rng.randrange(len(other)):]
    else:                                         # huge dimension in the header
        dims = (len(parts[h]) - 40) // 8
        if dims > 0:
            d = 40 + 8 * rng.randrange(min(dims, 2))
            parts[h][d:d + 8] = struct.pack("<Q", rng.choice([2**63, 2**64 - 1, 2**40, 2**62]))
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
        assert frame.data.nbytes <= len(msg[-1])
        decode(_wire(encode(frame)))
        if frame.data.dtype.kind == "U":
            [str(s) for s in frame.data]
    assert outcomes["error"] > 9_000, outcomes  # the mutations really were malformed


@pytest.mark.parametrize("mutation, message", [
    (lambda m: [m[0], b"XX" + m[1][2:], m[2]], "bad magic"),
    (lambda m: [m[0], m[1][:2] + b"\x09" + m[1][3:], m[2]], "version"),
    (lambda m: [m[0], m[1], m[2][:-1]], "payload is"),
    (lambda m: m[:2], "expected 1 part"),
    (lambda m: [m[0], m[1][:20], m[2]], "shorter than"),
    (lambda m: [m[1] + m[2]], "inline flag does not match"),
    (lambda m: [m[0], m[1] + b"\0", m[2]], "trailing header bytes"),
])
def test_errors_say_what_is_wrong(mutation, message: str) -> None:
    large = _VALID[-1]
    assert len(large) == 3
    with pytest.raises(FrameDecodeError, match=message):
        decode(mutation(large))


@pytest.mark.parametrize("huge", [2**31, 2**62, 2**64 - 1])
def test_a_zero_dimension_cannot_smuggle_a_huge_one(huge: int) -> None:
    frame = Frame(FrameKind.TENSOR, np.zeros((0, 3), np.float32), 0)
    for inline in (True, False):
        header = bytearray(encode_header(frame, inline=inline))
        header[48:56] = struct.pack("<Q", huge)  # shape (0, huge): 0 bytes, like the payload
        msg = [bytes(header)] if inline else [b"", bytes(header), b""]
        with pytest.raises(FrameDecodeError, match="too large"):
            decode(msg)


def test_a_frame_its_receiver_would_reject_is_refused_when_sent() -> None:
    with pytest.raises(FrameEncodeError, match="samples must be 2-D float32"):
        encode(Frame(FrameKind.SAMPLES, np.zeros((2, 3), np.float64), 0))
    with pytest.raises(FrameEncodeError):
        encode(Frame(FrameKind.MARKERS, np.array(["a"]).astype(">U1"), 0))


def test_kind_and_payload_must_agree() -> None:
    frame = Frame(FrameKind.TENSOR, np.zeros((2, 3), np.float64), 0)
    header = bytearray(encode_header(frame))
    header[3] = 1  # claim 'samples': those must be float32
    with pytest.raises(FrameDecodeError, match="samples must be 2-D float32"):
        decode([b"", bytes(header), frame.data.tobytes()])


def test_invalid_code_points_in_markers_are_rejected() -> None:
    frame = Frame(FrameKind.MARKERS, np.array(["ab"]), 0)
    payload = np.frombuffer(frame.data.tobytes(), np.uint32).copy()
    payload[0] = 0xD800  # a lone surrogate
    with pytest.raises(FrameDecodeError, match="code points"):
        decode([b"", encode_header(frame), payload.tobytes()])


def test_concat_events_copies_records_byte_for_byte() -> None:
    """Padding included: np.concatenate would pack the records, or (given the dtype) leave the
    padding uninitialised, and that memory would go on the wire and into recordings."""
    from pipeline.frame import concat_events, copy_events

    rng = np.random.default_rng(0)
    parts = [np.frombuffer(rng.bytes(16 * n), EVENT_DTYPE) for n in (3, 0, 5)]
    out = concat_events(parts)
    assert out.dtype == EVENT_DTYPE and out.tobytes() == b"".join(p.tobytes() for p in parts)
    assert concat_events([]).dtype == EVENT_DTYPE and len(concat_events([])) == 0
    assert copy_events(parts[2]).tobytes() == parts[2].tobytes()
