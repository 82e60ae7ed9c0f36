"""What flows between nodes: a small header plus one numpy array (DESIGN.md §2).

A `Frame` is deliberately a plain ``__slots__`` object rather than a dataclass: it is created
once per hop on the hot path, and ``with_data`` / ``with_seq`` must cost well under a microsecond.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Mapping, Sequence

import numpy as np

#: Event record: 16-byte aligned, byte-identical to dv-processing's and expelliarmus' layout.
#: ``t`` in microseconds, ``p`` in {0, 1} (never bool: a bool polarity turns OFF events into +1).
#: Trap: ``np.concatenate`` of such records packs them to 13 bytes (NumPy 2 promotion); with
#: ``dtype=EVENT_DTYPE``, and in ``.copy()`` / ``np.array()``, NumPy copies field by field and
#: leaves the padding uninitialised: join and copy batches with `concat_events` / `copy_events`.
EVENT_DTYPE = np.dtype(
    {"names": ["t", "x", "y", "p"], "formats": ["<i8", "<i2", "<i2", "i1"],
     "offsets": [0, 8, 10, 12], "itemsize": 16}
)


def concat_events(parts: Sequence[np.ndarray]) -> np.ndarray:
    """EVENT_DTYPE batches joined byte for byte (padding included: what goes on the wire and into
    a recording is never uninitialised memory)."""
    if not parts:
        return np.empty(0, EVENT_DTYPE)
    raw = [np.ascontiguousarray(p, EVENT_DTYPE).view(np.uint8) for p in parts]
    return np.concatenate(raw).view(EVENT_DTYPE)


def copy_events(events: np.ndarray) -> np.ndarray:
    """A byte-for-byte copy of an EVENT_DTYPE array (padding included)."""
    return concat_events([events])


class FrameKind(str, Enum):
    """The six kinds of payload a frame may carry."""

    SAMPLES = "samples"        # channels x n, float32
    EVENTS = "events"          # 1-D EVENT_DTYPE records
    MARKERS = "markers"        # 1-D unicode strings
    TENSOR = "tensor"          # a window or a feature vector, any numeric shape
    PREDICTION = "prediction"  # class probabilities; label and exit info in ``meta``
    CONTROL = "control"        # 1-D unicode command(s) for a device; arguments in ``meta``


#: Meta values must survive the wire codec (msgpack) unchanged.
MetaValue = str | int | float | bool | None | list


class Frame:
    """One unit of data on an edge.

    Parameters
    ----------
    kind : FrameKind
        What the payload is.
    data : numpy.ndarray
        The payload; sent zero-copy on the wire, so it must not be mutated after emission.
    t_origin_ns : int
        When the frame's data was acquired, on the host's ``time.monotonic_ns()`` clock: a source
        stamps the moment it read the chunk from the device (so, its newest sample, to within
        the device's transport); a frame derived from several (a window, an epoch) carries the
        stamp of the one that completed it. Latency = now - t_origin_ns.
    seq : int
        Per-output-port counter, stamped by the runtime when the frame is emitted.
    t_device : float or None
        Device timestamp of the first sample (seconds, in the clock named by the StreamInfo).
    meta : mapping or None
        Small per-frame annotations (a prediction's label, a command's arguments).
    """

    __slots__ = ("kind", "data", "t_origin_ns", "seq", "t_device", "meta")

    def __init__(self, kind: FrameKind, data: np.ndarray, t_origin_ns: int, seq: int = 0,
                 t_device: float | None = None, meta: Mapping[str, MetaValue] | None = None):
        self.kind = kind
        self.data = data
        self.t_origin_ns = t_origin_ns
        self.seq = seq
        self.t_device = t_device
        self.meta = meta

    def with_data(self, data: np.ndarray) -> Frame:
        """Same header (kind, times, meta), new payload: what a transform node returns."""
        return Frame(self.kind, data, self.t_origin_ns, self.seq, self.t_device, self.meta)

    def with_seq(self, seq: int) -> Frame:
        """Same frame, restamped for an output port (the runtime calls this)."""
        return Frame(self.kind, self.data, self.t_origin_ns, seq, self.t_device, self.meta)

    def __repr__(self) -> str:
        return (f"Frame({self.kind.value}, seq={self.seq}, t_origin_ns={self.t_origin_ns}, "
                f"data={self.data.dtype}{list(self.data.shape)})")

    def same_as(self, other: Any) -> bool:
        """Header and payload equal (bit for bit): for tests and round trips."""
        return (isinstance(other, Frame) and self.kind == other.kind and self.seq == other.seq
                and self.t_origin_ns == other.t_origin_ns
                and _same_time(self.t_device, other.t_device)
                and (self.meta or None) == (other.meta or None)
                and self.data.dtype == other.data.dtype and self.data.shape == other.data.shape
                and self.data.tobytes() == other.data.tobytes())


def _same_time(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (a != a and b != b)  # NaN == NaN for round-trip purposes


def check_payload(kind: FrameKind, data: np.ndarray) -> None:
    """Raise ValueError if ``data`` is not a valid payload for ``kind`` (DESIGN.md §2)."""
    if kind is FrameKind.SAMPLES:
        if data.dtype != np.float32 or data.ndim != 2:
            raise ValueError(f"samples must be 2-D float32 (channels x n), got {data.dtype}"
                             f"{list(data.shape)}")
    elif kind is FrameKind.EVENTS:
        if data.dtype != EVENT_DTYPE or data.ndim != 1:
            raise ValueError(f"events must be 1-D EVENT_DTYPE records, got {data.dtype}"
                             f"{list(data.shape)}")
    elif kind in (FrameKind.MARKERS, FrameKind.CONTROL):
        if data.dtype.kind != "U" or data.ndim != 1:
            raise ValueError(f"{kind.value} must be a 1-D unicode array, got {data.dtype}"
                             f"{list(data.shape)}")
    elif data.dtype.kind not in "fiub":
        raise ValueError(f"{kind.value} must be numeric, got {data.dtype}")
