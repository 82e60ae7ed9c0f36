"""Versioned wire codec for frames on ZeroMQ, in one of two forms:

- ``[header ‖ payload]``, one part, for payloads under `INLINE_MAX` (64 KiB, pyzmq's own copy
  threshold: below it a "zero-copy" send copies anyway, and each extra part costs a system call and
  ~2 µs of Python); flag bit 2 marks it and the payload starts where the header ends;
- ``[topic, header, payload]``, three parts, for larger payloads: the array's buffer is sent with
  ``copy=False`` and received without a copy.

Header, version 1 (little-endian, 40 bytes + shape + optional meta)::

    offset size  field
    0      2     magic b"NF"
    2      1     version (1)
    3      1     kind code (1 samples, 2 events, 3 markers, 4 tensor, 5 prediction, 6 control)
    4      1     dtype code (see _DTYPES; 12 = EVENT_DTYPE, 13 = unicode)
    5      1     ndim (0..8)
    6      2     flags: bit 0 t_device present, bit 1 meta present, bit 2 inline payload
    8      4     itemsize in bytes (checked against the dtype; gives the width of unicode)
    12     4     reserved (0)
    16     8     seq (int64)
    24     8     t_origin_ns (int64, host monotonic clock)
    32     8     t_device (float64; NaN when absent and flag 0 clear)
    40     8*nd  shape (uint64 each)
    ...    4+n   meta length + msgpack map (only with flag 1)

The payload is the array's raw C-order buffer, read back with ``np.frombuffer`` (no pickle
anywhere). ``decode`` trusts nothing: every malformed message
raises `FrameDecodeError`, never anything else.
"""

from __future__ import annotations

import struct
from typing import Any, Sequence

import msgpack
import numpy as np

from pipeline.frame import EVENT_DTYPE, Frame, FrameKind, check_payload

VERSION = 1
MAGIC = b"NF"
MAX_NDIM = 8
MAX_META_BYTES = 64 * 1024
MAX_DIM = 2**31 - 1

_FIXED = struct.Struct("<2sBBBBHIIqqd")
_FIXED_STATIC = struct.Struct("<2sBBBBHII")  # bytes 0-15: the same for every frame of a stream
_DYNAMIC = struct.Struct("<qqd")              # bytes 16-39: seq, t_origin_ns, t_device
_NAN = float("nan")
# A stream's frames share their static header: checked in full once, then recognised by its bytes.
_CACHE_MAX = 256
_STATIC: dict[tuple, tuple[bytes, bytes]] = {}             # encode: layout -> static bytes, shape
_KNOWN: dict[bytes, tuple[FrameKind, np.dtype, tuple, int, int, bool]] = {}  # decode: static bytes
_KINDS: tuple[FrameKind, ...] = (FrameKind.SAMPLES, FrameKind.EVENTS, FrameKind.MARKERS,
                                 FrameKind.TENSOR, FrameKind.PREDICTION, FrameKind.CONTROL)
_KIND_CODE = {k: i + 1 for i, k in enumerate(_KINDS)}
_DTYPES: tuple[np.dtype, ...] = tuple(np.dtype(t) for t in (
    "<f4", "<f8", "<f2", "i1", "<i2", "<i4", "<i8", "u1", "<u2", "<u4", "<u8", "?")) + (EVENT_DTYPE,)
_UNICODE_CODE = len(_DTYPES)
_DTYPE_CODE = {dt: i for i, dt in enumerate(_DTYPES)}
_SHAPES = [struct.Struct(f"<{n}Q") for n in range(MAX_NDIM + 1)]
_META_LEN = struct.Struct("<I")
_FLAG_TDEVICE, _FLAG_META, _FLAG_INLINE = 1, 2, 4
#: Payloads smaller than this travel in the header's part (pyzmq's ``zmq.COPY_THRESHOLD``).
INLINE_MAX = 65536


class FrameDecodeError(ValueError):
    """A message on a data edge is not a valid frame; the receiver counts it and drops it."""


class FrameEncodeError(ValueError):
    """A node emitted a frame the wire cannot carry (bad dtype, meta, shape)."""


def _dtype_code(dt: np.dtype) -> int:
    if dt.kind == "U" and dt.byteorder != ">":
        return _UNICODE_CODE
    code = None if dt.byteorder == ">" else _DTYPE_CODE.get(dt)
    if code is None:
        raise FrameEncodeError(f"dtype {dt} cannot be sent; use one of "
                               f"{[str(d) for d in _DTYPES]} or unicode")
    return code


def encode_header(frame: Frame, inline: bool = False) -> bytes:
    """The header bytes of ``frame``; ``inline``: the payload will follow in the same part."""
    data = frame.data
    t_device = frame.t_device
    flags = (_FLAG_INLINE if inline else 0) | (_FLAG_META if frame.meta else 0)
    if t_device is None:
        t_device = _NAN
    else:
        flags |= _FLAG_TDEVICE
    key = (frame.kind, data.dtype, data.shape, flags)
    static = _STATIC.get(key)
    if static is None:  # first frame of this layout: check it once
        if data.ndim > MAX_NDIM:
            raise FrameEncodeError(f"ndim {data.ndim} > {MAX_NDIM}")
        try:
            check_payload(frame.kind, data)  # what the receiver would reject, refused here
        except ValueError as e:
            raise FrameEncodeError(str(e)) from None
        static = (_FIXED_STATIC.pack(MAGIC, VERSION, _KIND_CODE[frame.kind], _dtype_code(data.dtype),
                                     data.ndim, flags, data.itemsize, 0),
                  _SHAPES[data.ndim].pack(*data.shape))
        _remember(_STATIC, key, static)
    head = static[0] + _DYNAMIC.pack(frame.seq, frame.t_origin_ns, t_device) + static[1]
    if frame.meta:
        try:
            meta = msgpack.packb(dict(frame.meta), use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as e:
            raise FrameEncodeError(f"meta cannot be encoded: {e}") from e
        if len(meta) > MAX_META_BYTES:
            raise FrameEncodeError(f"meta is {len(meta)} bytes > {MAX_META_BYTES}")
        head += _META_LEN.pack(len(meta)) + meta
    return head


def _remember(cache: dict, key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_MAX:  # a stream changing layout every frame: stay bounded
        cache.clear()
    cache[key] = value


def payload_of(frame: Frame) -> np.ndarray:
    """The array to send as the payload: C-contiguous (the dtype is checked by the encoder)."""
    data = frame.data
    return data if data.flags.c_contiguous else np.ascontiguousarray(data)


def encode(frame: Frame, topic: bytes = b"") -> list[Any]:
    """The message parts of ``frame``: ``[header ‖ payload]`` (small) or ``[topic, header, payload]``
    (payload >= INLINE_MAX, to send with ``copy=False``)."""
    payload = payload_of(frame)
    if payload.nbytes < INLINE_MAX:
        return [b"".join((encode_header(frame, inline=True), payload))]
    return [topic, encode_header(frame), payload]


def decode(parts: Sequence[Any]) -> Frame:
    """Parse ``[header ‖ payload]`` or ``[topic, header, payload]`` (bytes or zmq.Frame) into a
    `Frame`; the payload is not copied.

    Raises
    ------
    FrameDecodeError
        For any malformed message: wrong part count, bad magic or version, unknown kind or
        dtype, impossible shape, payload size mismatch, payload invalid for its kind, bad meta.
    """
    if len(parts) == 1:
        frame = _decode_known(parts[0])
        if frame is not None:
            return frame
    if len(parts) == 3:
        head = parts[1]
        payload = parts[2]
        head = getattr(head, "buffer", head)
        payload = getattr(payload, "buffer", payload)
    elif len(parts) == 1:
        head = memoryview(getattr(parts[0], "buffer", parts[0]))
        payload = None
    else:
        raise FrameDecodeError(f"expected 1 part [header+payload] or 3 parts [topic, header, "
                               f"payload], got {len(parts)}")
    n = len(head)
    if n < _FIXED.size:
        raise FrameDecodeError(f"header is {n} bytes, shorter than the fixed {_FIXED.size}")
    (magic, version, kind_code, dtype_code, ndim, flags, itemsize, _reserved,
     seq, t_origin_ns, t_device) = _FIXED.unpack_from(head)
    if magic != MAGIC:
        raise FrameDecodeError(f"bad magic {bytes(magic)!r}")
    if version != VERSION:
        raise FrameDecodeError(f"unsupported header version {version} (this build reads {VERSION})")
    if not 1 <= kind_code <= len(_KINDS):
        raise FrameDecodeError(f"unknown kind code {kind_code}")
    if ndim > MAX_NDIM:
        raise FrameDecodeError(f"ndim {ndim} > {MAX_NDIM}")
    if flags & ~(_FLAG_TDEVICE | _FLAG_META | _FLAG_INLINE):
        raise FrameDecodeError(f"unknown flags 0x{flags:x}")
    if bool(flags & _FLAG_INLINE) != (payload is None):
        raise FrameDecodeError("the inline flag does not match the number of parts")
    end = _FIXED.size + 8 * ndim
    if n < end:
        raise FrameDecodeError(f"header truncated in the shape ({n} < {end} bytes)")
    shape = _SHAPES[ndim].unpack_from(head, _FIXED.size)
    dtype = _decode_dtype(dtype_code, itemsize)
    meta = None
    if flags & _FLAG_META:
        meta, end = _decode_meta(head, end)
    if payload is None:
        payload = head[end:]
    elif n != end:
        raise FrameDecodeError(f"{n - end} trailing header bytes")
    count = 1
    for s in shape:
        if s > MAX_DIM:  # with a zero elsewhere the size would match, but numpy cannot hold it
            raise FrameDecodeError(f"dimension {s} of shape {list(shape)} is too large")
        count *= s
    if count * dtype.itemsize != len(payload):
        raise FrameDecodeError(f"payload is {len(payload)} bytes, shape {list(shape)} of {dtype} "
                               f"needs {count * dtype.itemsize}")
    kind = _KINDS[kind_code - 1]
    data = np.frombuffer(payload, dtype=dtype).reshape(shape)
    try:
        check_payload(kind, data)
    except ValueError as e:
        raise FrameDecodeError(str(e)) from None
    if dtype.kind == "U":
        _check_unicode(data)
    elif flags & _FLAG_INLINE and meta is None and data.nbytes:
        key = bytes(head[:_FIXED_STATIC.size]) + bytes(head[_FIXED.size:end])
        _remember(_KNOWN, key, (kind, dtype, shape, end, data.nbytes, bool(flags & _FLAG_TDEVICE)))
    return Frame(kind, data, t_origin_ns, seq, t_device if flags & _FLAG_TDEVICE else None, meta)


def _decode_known(part: Any) -> Frame | None:
    """Fast path: an inline frame whose static header bytes (layout, shape) equal those of a frame
    already decoded in full; None when it is not one (then the full checks run)."""
    buf = getattr(part, "buffer", part)
    n = len(buf)
    if n < _FIXED.size:
        return None
    shape_end = _FIXED.size + 8 * min(buf[5], MAX_NDIM)  # byte 5: ndim
    key = bytes(buf[:_FIXED_STATIC.size]) + bytes(buf[_FIXED.size:shape_end])
    known = _KNOWN.get(key)
    if known is None:
        return None
    kind, dtype, shape, end, nbytes, has_t_device = known
    if n - end != nbytes:
        return None
    seq, t_origin_ns, t_device = _DYNAMIC.unpack_from(buf, _FIXED_STATIC.size)
    data = np.frombuffer(buf, dtype, offset=end).reshape(shape)
    return Frame(kind, data, t_origin_ns, seq, t_device if has_t_device else None)


def _decode_dtype(code: int, itemsize: int) -> np.dtype:
    if code == _UNICODE_CODE:
        if itemsize == 0 or itemsize % 4 or itemsize > 4 * 4096:
            raise FrameDecodeError(f"bad unicode itemsize {itemsize}")
        return np.dtype(f"<U{itemsize // 4}")
    if code >= len(_DTYPES):
        raise FrameDecodeError(f"unknown dtype code {code}")
    dtype = _DTYPES[code]
    if itemsize != dtype.itemsize:
        raise FrameDecodeError(f"itemsize {itemsize} does not match {dtype} ({dtype.itemsize})")
    return dtype


def _decode_meta(head: Any, start: int) -> tuple[dict[str, Any], int]:
    """The meta map at ``start`` and where the header ends after it."""
    n = len(head)
    if n < start + 4:
        raise FrameDecodeError("header truncated before the meta length")
    (size,) = _META_LEN.unpack_from(head, start)
    end = start + 4 + size
    if size > MAX_META_BYTES or end > n:
        raise FrameDecodeError(f"meta length {size} does not fit the header ({n - start - 4} left)")
    try:
        meta = msgpack.unpackb(bytes(head[start + 4:end]), raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises many types (ExtraData, FormatError, ValueError, ...)
        raise FrameDecodeError(f"meta is not valid msgpack: {type(e).__name__}: {e}") from None
    if not isinstance(meta, dict) or not all(isinstance(k, str) for k in meta):
        raise FrameDecodeError("meta must be a map with string keys")
    return meta, end


def _check_unicode(data: np.ndarray) -> None:
    codes = data.view(np.uint32)
    if codes.size and (int(codes.max()) > 0x10FFFF
                       or bool(((codes >= 0xD800) & (codes <= 0xDFFF)).any())):
        raise FrameDecodeError("unicode payload holds invalid code points")
