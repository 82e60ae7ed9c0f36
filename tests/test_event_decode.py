"""Prophesee RAW (EVT 2.0 / 3.0), DAT and N-MNIST decoding (kernels/prophesee.py) and the
streaming readers built on it (devices/event_formats.py).

References, all independent of the code under test: expelliarmus (a GPL-2.0 decoder, run here
only as a cross-check), plain NumPy decodes written below from the documented layouts, and the
test-only encoders of `prophesee_encode` (round trips through every word type).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import event_recording
from prophesee_encode import encode_evt2, encode_evt3, raw_header

from devices.event_formats import BlockReader, EventReader, open_reader
from kernels.prophesee import event_words
from pipeline.frame import EVENT_DTYPE, concat_events


def read_all(reader: EventReader, rng: np.random.Generator | None = None,
             most: int = 1 << 16) -> np.ndarray:
    """Every event of ``reader``, in batches of a random 1 .. ``most`` (``most`` without rng)."""
    parts = []
    while True:
        want = int(rng.integers(1, most + 1)) if rng is not None else most
        batch = reader.read(want)
        if batch is None:
            break
        assert batch.dtype == EVENT_DTYPE
        assert len(batch) <= want
        parts.append(batch)
    # dtype: else numpy 2 packs the records to 13 bytes
    return concat_events(parts)


def decode(data: bytes, name: str, fmt: str | None = None) -> tuple[np.ndarray, dict[str, int]]:
    with open_reader(NamedBytes(data, name), fmt) as r:
        return read_all(r), r.counters()


class NamedBytes(io.BytesIO):
    """An in-memory file with a name (the suffix says the format)."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


class ChoppyFile(io.RawIOBase):
    """A seekable file whose every read returns a random 1 .. ``most`` bytes, as a pipe or a
    socket may: the stream cut at any byte."""

    def __init__(self, data: bytes, name: str, rng: np.random.Generator, most: int) -> None:
        self._f = io.BytesIO(data)
        self.name, self.rng, self.most = name, rng, most

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._f.seek(pos, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, b) -> int:
        k = min(len(b), int(self.rng.integers(1, self.most + 1)))
        return self._f.readinto(memoryview(b)[:k])


def synthetic_events(rng: np.random.Generator, n: int, t0: int, width: int = 1280,
                     height: int = 720, long_gap: int = 1 << 22,
                     gap: int = 3000) -> np.ndarray:
    """``n`` events from ``t0`` on: row bursts (same t, y, p, nearby x: what becomes EVT 3.0
    vectors) and lone events; time steps of 0, 1, up to ``gap`` µs and (1 %) up to
    ``long_gap`` µs."""
    batches = []
    t = t0
    total = 0
    while total < n:
        step = rng.choice(4, p=[0.45, 0.3, 0.24, 0.01])
        t += (0, 1, int(rng.integers(1, gap)), int(rng.integers(1, long_gap)))[step]
        y, p = int(rng.integers(0, height)), int(rng.integers(0, 2))
        if rng.random() < 0.5:
            x0 = int(rng.integers(0, width - 40))
            xs = np.unique(x0 + rng.integers(0, 40, size=int(rng.integers(1, 24))))
        else:
            xs = rng.integers(0, width, size=1)
        ev = np.zeros(len(xs), EVENT_DTYPE)
        ev["t"], ev["x"], ev["y"], ev["p"] = t, xs, y, p
        batches.append(ev)
        total += len(ev)
    return concat_events(batches)[:n]


def rows(t: int, y: int, p: int, xs) -> np.ndarray:
    ev = np.zeros(len(xs), EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = t, xs, y, p
    return ev


#: Vector patterns met by the encoder: a full 32-pixel row (masks 12 + 12 + 8 bits), a row
#: whose middle VECT_12 is empty, a single 2-pixel vector, one at the right edge of an 11-bit x.
VECTOR_CASES = np.concatenate([rows(10, 7, 1, range(1000, 1032)), rows(10, 7, 1, [1000, 1030]),
                               rows(11, 719, 0, [5, 6]), rows(12, 0, 1, [2016, 2047])],
                              dtype=EVENT_DTYPE)


def evt3_reference(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EVT 3.0 decoded with whole-array NumPy, independent of the Numba kernel: every state
    value is forward-filled from the word that last set it. Returns the events and the index of
    the word each came from."""
    w = words.astype(np.int64)
    w = w[np.flatnonzero(w >> 12 == 8)[0]:]  # nothing before the first time high
    kind, idx = w >> 12, np.arange(len(w))

    def last(mask: np.ndarray) -> np.ndarray:  # last word with ``mask`` at or before each word
        return np.maximum.accumulate(np.where(mask, idx, -1))

    th = kind == 8
    high = (w & 0xFFF)[last(th)]
    th_values = (w & 0xFFF)[th]
    loops = np.concatenate([[0], np.cumsum(np.diff(th_values) <= -2048)])[np.cumsum(th) - 1]
    changed = th.copy()
    changed[th] = np.concatenate([[True], np.diff(th_values) != 0])
    last_low = last(kind == 6)
    low = np.where(last_low > last(changed), (w & 0xFFF)[last_low], 0)  # a new high clears low
    t = (loops << 24) | (high << 12) | low
    last_y = last(kind == 0)
    y = np.where(last_y >= 0, (w & 0x7FF)[last_y], 0)
    last_base = last(kind == 3)
    advance = np.where(kind == 4, 12, np.where(kind == 5, 8, 0))
    before = np.cumsum(advance) - advance  # vector advances before each word
    base = np.where(last_base >= 0, (w & 0x7FF)[last_base] + before - before[last_base], before)
    vect_p = np.where(last_base >= 0, (w[last_base] >> 11) & 1, 0)
    single = np.flatnonzero(kind == 2)
    vec = np.flatnonzero((kind == 4) | (kind == 5))
    valid = np.where(kind[vec] == 4, w[vec] & 0xFFF, w[vec] & 0xFF)
    r, bit = np.nonzero((valid[:, None] >> np.arange(12)) & 1)
    word = np.concatenate([single, vec[r]])
    order = np.lexsort((np.concatenate([np.zeros(len(single), int), bit]), word))
    ev = np.zeros(len(word), EVENT_DTYPE)
    ev["t"] = t[word]
    ev["x"] = np.concatenate([w[single] & 0x7FF, base[vec[r]] + bit])
    ev["y"] = y[word]
    ev["p"] = np.concatenate([(w[single] >> 11) & 1, vect_p[vec[r]]])
    return ev[order], word[order] + (len(words) - len(w))


def raw_body(path: Path) -> tuple[bytes, bytes]:
    """(header, data) of a RAW file: the header is its ``% `` lines."""
    data = path.read_bytes()
    pos = 0
    while data.startswith(b"% ", pos):
        pos = data.index(b"\n", pos) + 1
    return data[:pos], data[pos:]


def dat_bytes(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray,
              header: str = "% Data file containing CD events\n% Version 2\n",
              kind: int = 12) -> bytes:
    """A DAT file from the documented layout: uint32 t, uint32 x | y << 14 | p << 28."""
    rec = np.zeros(len(t), [("t", "<u4"), ("d", "<u4")])
    rec["t"] = t
    rec["d"] = x.astype(np.uint32) | (y.astype(np.uint32) << 14) | (p.astype(np.uint32) << 28)
    return header.encode() + bytes([kind, 8]) + rec.tobytes()


def nmnist_bytes(x: np.ndarray, y: np.ndarray, p: np.ndarray, t: np.ndarray) -> bytes:
    """N-MNIST records: x, y, then p (bit 7) and t (23 bits) big-endian over 3 bytes."""
    rec = np.zeros((len(x), 5), np.uint8)
    rec[:, 0], rec[:, 1] = x, y
    rec[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    rec[:, 3], rec[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    return rec.tobytes()


def synthetic_file(fmt: str, rng: np.random.Generator, n: int = 4000) -> tuple[bytes, str]:
    """A small file of each format, with every kind of word its format has."""
    if fmt in ("evt3", "evt2"):
        ev = synthetic_events(rng, n, 1000, long_gap=1 << 16)
        enc = encode_evt3 if fmt == "evt3" else encode_evt2
        data, _ = enc(ev, rng, extras=n // 20)
        return raw_header("3.0" if fmt == "evt3" else "2.0") + data, "s.raw"
    t = np.sort(rng.integers(0, 1 << 22, n))
    x, y, p = rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n)
    if fmt == "dat":
        return dat_bytes(t, x, y, p), "s.dat"
    y[rng.integers(0, n, 5)] = 240  # time-overflow markers
    return nmnist_bytes(x, y, p, t & 0x7FFFFF), "s.bin"


# --- round trips through the encoders ---------------------------------------------------------

def test_evt3_round_trip_every_word_type_and_time_wraps():
    rng = np.random.default_rng(3)
    # starts 1 s before the first 2^24 µs wrap; 1 % of the steps up to 2^22 µs: many wraps
    ev = np.concatenate([VECTOR_CASES, synthetic_events(rng, 30_000, (1 << 24) - 1_000_000)],
                        dtype=EVENT_DTYPE)
    data, counts = encode_evt3(ev, rng, extras=300, system_bit=True)
    out, found = decode(raw_header("3.0") + data, "a.raw")
    assert ev["t"].max() > 3 << 24  # the stream did cross several wraps
    np.testing.assert_array_equal(out, ev)
    assert not np.frombuffer(out.tobytes(), np.uint8).reshape(-1, 16)[:, 13:].any()  # padding: 0
    assert found == {"truncated_bytes": 0, "before_time_high": 0, "non_monotonic": 0, **counts}
    assert counts["ext_triggers"] and counts["other_words"] and counts["continued_words"] \
        and counts["unknown_words"]
    ref, _ = evt3_reference(np.frombuffer(data, "<u2"))
    np.testing.assert_array_equal(ref, ev)  # the NumPy reference agrees with the encoder too


def test_evt3_single_words_only():
    rng = np.random.default_rng(4)
    ev = synthetic_events(rng, 5000, 0)
    data, _ = encode_evt3(ev, vectors=False)
    assert not np.any(np.isin(np.frombuffer(data, "<u2") >> 12, [3, 4, 5]))
    np.testing.assert_array_equal(decode(raw_header("3.0") + data, "a.raw")[0], ev)


def test_evt2_round_trip_every_word_type_and_time_wrap():
    rng = np.random.default_rng(5)
    ev = synthetic_events(rng, 20_000, (1 << 34) - 3_000_000, width=640, height=480)
    data, counts = encode_evt2(ev, rng, extras=200)
    out, found = decode(raw_header("2.0") + data, "a.raw")
    assert ev["t"].max() > 1 << 34  # crossed the 2^34 µs wrap of the EVT 2.0 time
    np.testing.assert_array_equal(out, ev)
    assert found == {"truncated_bytes": 0, "before_time_high": 0, "non_monotonic": 0, **counts}
    assert all(counts.values())


def test_encoders_agree_with_expelliarmus(tmp_path):
    """The encoders checked from outside: expelliarmus decodes what they write. (EVT 3.0 over
    one time high only: expelliarmus adds 4096 µs when the time low steps back, even where a
    new time high says so; see test_evt3_real_file.)"""
    expelliarmus = pytest.importorskip("expelliarmus")
    rng = np.random.default_rng(6)
    for fmt, enc, ev in [("evt2", encode_evt2, synthetic_events(rng, 5000, 77, 640, 480, 1 << 16)),
                         ("evt3", encode_evt3, np.concatenate(
                             [VECTOR_CASES, synthetic_events(rng, 5000, 20, long_gap=2, gap=2)],
                             dtype=EVENT_DTYPE))]:
        assert fmt == "evt2" or ev["t"].max() < 4096
        path = tmp_path / f"{fmt}.raw"
        path.write_bytes(raw_header(fmt[-1] + ".0") + enc(ev)[0])
        ref = expelliarmus.Wizard(encoding=fmt).read(path)
        for k in "txyp":
            np.testing.assert_array_equal(ref[k].astype(np.int64), ev[k].astype(np.int64))


def test_dat_round_trip_unwraps_32_bit_time_and_counts_steps_back():
    rng = np.random.default_rng(7)
    n = 3000
    t = (1 << 32) - 500_000 + np.cumsum(rng.integers(0, 1000, n)).astype(np.int64)
    t[2000] = t[1999] - 5  # a small step back: kept, counted
    x, y, p = rng.integers(0, 1 << 14, n), rng.integers(0, 1 << 14, n), rng.integers(0, 2, n)
    header = "% Data file containing CD events\n% Version 2\n% Width 640\n% Height 480\n"
    data = dat_bytes(t & 0xFFFFFFFF, x, y, p, header)
    with open_reader(NamedBytes(data, "a.dat")) as r:
        out = read_all(r)
        assert r.sensor_size == (640, 480)
        assert r.counters() == {"truncated_bytes": 0, "non_monotonic": 1}
    assert t.max() > 1 << 32  # crossed the wrap
    for k, v in zip("txyp", (t, x, y, p)):
        np.testing.assert_array_equal(out[k], v)


def test_nmnist_overflow_markers():
    """A record with y == 240 adds 2^13 µs to every later time stamp and is not an event (as
    in Orchard et al.'s reader)."""
    rng = np.random.default_rng(8)
    n = 2000
    t = np.sort(rng.integers(0, 1 << 23, n))
    x, y, p = rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n)
    marker = np.zeros(n, bool)
    marker[[3, 500, 501, 1999]] = True
    y[marker] = 240
    out, found = decode(nmnist_bytes(x, y, p, t), "a.bin")
    expected_t = t + (np.cumsum(marker) << 13)
    keep = ~marker
    assert found == {"truncated_bytes": 0, "non_monotonic": 0}
    for k, v in zip("txyp", (expected_t, x, y, p)):
        np.testing.assert_array_equal(out[k], v[keep])


# --- any split, same events ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["evt3", "evt2", "dat", "nmnist"])
def test_any_split_gives_the_same_events(fmt):
    """Reads of 1-7 bytes (a word cut anywhere, often in single bytes) and batches of 1-40
    events give exactly the events and counters of one whole decode."""
    rng = np.random.default_rng(9)
    data, name = synthetic_file(fmt, rng)
    whole, counts = decode(data, name)
    assert len(whole) > 1000
    with open_reader(ChoppyFile(data, name, rng, most=7)) as r:
        pieces = read_all(r, rng, most=40)
        assert r.counters() == counts
    np.testing.assert_array_equal(pieces, whole)


@pytest.mark.parametrize("name", ["evt3_sample.raw", "evt2_sample.raw"])
def test_real_file_any_split(name):
    data = event_recording(name).read_bytes()
    whole, counts = decode(data, name)
    rng = np.random.default_rng(10)
    with open_reader(ChoppyFile(data, name, rng, most=40_000)) as r:
        np.testing.assert_array_equal(read_all(r, rng, most=3000), whole)
        assert r.counters() == counts


def test_block_without_events_returns_empty_batches():
    """A stretch of time-high words longer than a block gives empty batches, not None (None is
    the end of the file only)."""
    ev = rows(1 << 20, 3, 1, [4, 5])
    data = np.full(300, (8 << 28) | 7, "<u4").tobytes() + encode_evt2(ev)[0]
    r = BlockReader(io.BytesIO(data), "a.raw", "evt2", 0, None, block_bytes=64)
    batches = []
    while (b := r.read(100)) is not None:
        batches.append(b)
    assert len(batches[0]) == 0 and len(batches[-1]) == 2
    np.testing.assert_array_equal(np.concatenate(batches, dtype=EVENT_DTYPE), ev)


# --- the real recordings ------------------------------------------------------------------------

def test_evt3_real_file():
    """Count, x, y and p equal expelliarmus' decode; t equals the NumPy reference. Expelliarmus'
    t is off by 4096 µs for every time-low word that stepped back before the event (it counts a
    step back as one more time high, on top of the time-high words): 9 spurious time-low words
    in this file and 2 real time-high changes, so its times run 45 ms longer than the stream."""
    expelliarmus = pytest.importorskip("expelliarmus")
    path = event_recording("evt3_sample.raw")
    with open_reader(path) as r:
        assert r.sensor_size == (1280, 720)
        ours = read_all(r)
        assert set(r.counters().values()) == {0}
    ref = expelliarmus.Wizard(encoding="evt3").read(path)
    assert len(ours) == len(ref) == 219_596
    for k in "xyp":
        np.testing.assert_array_equal(ours[k], ref[k].astype(np.int64))
    words = np.frombuffer(raw_body(path)[1], "<u2")
    numpy_ref, word = evt3_reference(words)
    np.testing.assert_array_equal(ours, numpy_ref)
    w = words.astype(np.int64)
    low_words = np.flatnonzero(w >> 12 == 6)
    steps_back = np.zeros(len(w), np.int64)
    steps_back[low_words[1:][np.diff(w[low_words] & 0xFFF) < 0]] = 1
    np.testing.assert_array_equal(ref["t"], ours["t"] + 4096 * np.cumsum(steps_back)[word])
    assert np.all(np.diff(ours["t"]) >= 0)


def test_evt2_real_file():
    expelliarmus = pytest.importorskip("expelliarmus")
    path = event_recording("evt2_sample.raw")
    with open_reader(path) as r:
        assert r.sensor_size == (640, 480)
        ours = read_all(r, np.random.default_rng(11), most=100_000)
        assert set(r.counters().values()) == {0}
    ref = expelliarmus.Wizard(encoding="evt2").read(path)
    assert len(ours) == 539_481
    for k in "txyp":
        np.testing.assert_array_equal(ours[k], ref[k].astype(np.int64))


def test_dat_real_file():
    """N-CARS sample: expelliarmus' "dat" decode and a NumPy decode of the documented layout."""
    path = event_recording("sample_ncars.dat")
    with open_reader(path) as r:
        assert r.sensor_size is None  # the header names no width/height
        ours = read_all(r)
        assert r.counters() == {"truncated_bytes": 0, "non_monotonic": 0}
    data = path.read_bytes()
    pos = 0
    while data.startswith(b"%", pos):
        pos = data.index(b"\n", pos) + 1
    assert data[pos:pos + 2] == bytes([0, 8])  # Event2d, 8 bytes
    rec = np.frombuffer(data[pos + 2:], [("t", "<u4"), ("d", "<u4")])
    assert len(ours) == len(rec) == 2009
    np.testing.assert_array_equal(ours["t"], rec["t"])
    np.testing.assert_array_equal(ours["x"], rec["d"] & 0x3FFF)
    np.testing.assert_array_equal(ours["y"], (rec["d"] >> 14) & 0x3FFF)
    np.testing.assert_array_equal(ours["p"], rec["d"] >> 28)
    expelliarmus = pytest.importorskip("expelliarmus")
    ref = expelliarmus.Wizard(encoding="dat").read(path)
    for k in "txyp":
        np.testing.assert_array_equal(ours[k], ref[k].astype(np.int64))


def test_nmnist_real_file():
    path = event_recording("sample_nmnist.bin")
    with open_reader(path) as r:
        assert r.sensor_size == (34, 34)
        ours = read_all(r, np.random.default_rng(12), most=500)
    raw = np.frombuffer(path.read_bytes(), np.uint8).reshape(-1, 5).astype(np.int64)
    assert not np.any(raw[:, 1] == 240)  # no overflow marker in this sample
    assert len(ours) == 4325
    np.testing.assert_array_equal(ours["x"], raw[:, 0])
    np.testing.assert_array_equal(ours["y"], raw[:, 1])
    np.testing.assert_array_equal(ours["p"], raw[:, 2] >> 7)
    np.testing.assert_array_equal(ours["t"], ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8)
                                  | raw[:, 4])


# --- damaged and foreign files ------------------------------------------------------------------

@pytest.mark.parametrize("fmt, record", [("evt3", 2), ("evt2", 4), ("dat", 8), ("nmnist", 5)])
def test_truncated_file_decodes_what_is_whole(fmt, record):
    rng = np.random.default_rng(13)
    data, name = synthetic_file(fmt, rng, 500)
    whole_records, _ = decode(data[:-record], name)
    for cut in range(1, record):
        out, counts = decode(data[:-cut], name)
        assert counts["truncated_bytes"] == record - cut
        np.testing.assert_array_equal(out, whole_records)


def test_truncated_real_file():
    data = event_recording("evt3_sample.raw").read_bytes()
    out, counts = decode(data[:-1], "cut.raw")
    assert counts["truncated_bytes"] == 1
    np.testing.assert_array_equal(out, decode(data[:-2], "shorter.raw")[0])
    whole, _ = decode(data, "whole.raw")
    np.testing.assert_array_equal(out, whole[:len(out)])


def test_words_before_the_first_time_high_are_skipped_and_counted():
    ev = rows(5000, 9, 1, [1, 2, 50])
    data3, _ = encode_evt3(ev)
    prefix3 = np.array([0x0005, 0x2001, 0x6123, 0x4FFF], "<u2").tobytes()  # y, x, low, vector
    out, counts = decode(raw_header("3.0") + prefix3 + data3, "a.raw")
    np.testing.assert_array_equal(out, ev)
    assert counts["before_time_high"] == 4
    data2, _ = encode_evt2(ev)
    prefix2 = np.array([(1 << 28) | 5, (0xA << 28)], "<u4").tobytes()
    out, counts = decode(raw_header("2.0") + prefix2 + data2, "a.raw")
    np.testing.assert_array_equal(out, ev)
    assert counts["before_time_high"] == 2


def test_time_stepping_back_is_kept_and_counted():
    """A time high one step back is not a wrap: the events keep their (earlier) time, and the
    event earlier than the one before it is counted as non-monotonic (the definition of
    `kernels.event_checks`: the events after it are in order again)."""
    a, b = rows(3 << 12, 1, 0, [10, 11, 12]), rows(2 << 12 | 5, 1, 1, [20, 40])
    c = rows(2 << 12 | 9, 3, 0, [7])
    for enc, version in ((encode_evt3, "3.0"), (encode_evt2, "2.0")):
        data = enc(a)[0] + enc(b)[0] + enc(c)[0]
        out, counts = decode(raw_header(version) + data, "a.raw")
        np.testing.assert_array_equal(out, np.concatenate([a, b, c], dtype=EVENT_DTYPE))
        assert counts["non_monotonic"] == 1


def test_rewind_starts_again_with_fresh_state():
    rng = np.random.default_rng(14)
    data, name = synthetic_file("evt3", rng, 2000)
    with open_reader(NamedBytes(data + b"\x01", name)) as r:
        first = read_all(r, rng, most=300)
        r.rewind()
        second = read_all(r, rng, most=300)
        assert r.counters()["truncated_bytes"] == 2  # counters add up over the two passes
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("lines, size", [
    (["evt 3.0", "format EVT3;height=720;width=1280"], (1280, 720)),
    (["format EVT3;height=320;width=320"], (320, 320)),
    (["evt 3.0", "geometry 640x480"], (640, 480)),
    (["evt 2.0", "width 304", "height 240"], (304, 240)),
    (["evt 2.0", "plugin_name hal_plugin_gen31_fx3"], (640, 480)),
    (["evt 3.0", "sensor_generation 4.1"], (1280, 720)),
    (["evt 3.0", "plugin_name hal_plugin_imx636_evk4"], (1280, 720)),
    (["evt 3.0", "serial_number 0001"], None),
])
def test_sensor_size_from_raw_header(lines, size):
    header = "".join(f"% {line}\n" for line in lines).encode() + b"% end\n"
    encode = encode_evt2 if "evt 2.0" in lines else encode_evt3
    with open_reader(NamedBytes(header + encode(rows(0, 0, 0, [1]))[0], "a.raw")) as r:
        assert r.sensor_size == size
        assert len(r.read(10)) == 1


def test_raw_without_encoding_from_an_evt2_only_plugin():
    header = b"% plugin_name hal_plugin_gen3_fx3\n"
    out, _ = decode(header + encode_evt2(rows(70, 2, 1, [3]))[0], "a.raw")
    np.testing.assert_array_equal(out, rows(70, 2, 1, [3]))


@pytest.mark.parametrize("data, name, fmt, found", [
    (np.random.default_rng(0).bytes(1000), "noise.raw", None, "no '% evt' or '% format'"),
    (b"% Data file containing CD events\n% Version 2\n\x0c\x08", "cars.raw", None, "DAT file"),
    (b"% evt 2.1\n", "v21.raw", None, "evt 2.1"),
    (b"% format EVT21;height=720;width=1280\n", "v21f.raw", None, "EVT21"),
    (b"% evt 3.0\n% format EVT2\n", "both.raw", None, "contradicts"),
    (b"% evt 3.0\n", "x.raw", "evt2", "header says evt3"),
    (b"% Data file containing CD events\n% Version 2\n\x0e\x08", "trig.dat", None,
     "external trigger"),
    (b"\x0c\x08" + bytes(16), "nohead.dat", None, "no '% Data file containing'"),
    (b"% evt 3.0\n" + bytes(10), "digits.bin", None, "text header"),
    (bytes(100), "mystery.xyz", None, "unknown event file format"),
    (b"% evt 3.0\n", "x.raw", "aedat", "unknown event file format 'aedat'"),
])
def test_wrong_format_is_a_clear_error(data, name, fmt, found):
    with pytest.raises(ValueError) as err:
        open_reader(NamedBytes(data, name), fmt)
    assert name in str(err.value) and found in str(err.value)


def test_kernels_refuse_another_record_layout():
    with pytest.raises(ValueError, match="layout"):
        event_words(np.zeros(4, [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "<i2")]))


def test_open_by_path_and_header_sniffing(tmp_path):
    ev = rows(123, 4, 0, [7, 8, 9])
    path = tmp_path / "recording.evt"  # no known suffix: the RAW header says what it is
    path.write_bytes(raw_header("2.0") + encode_evt2(ev)[0])
    with open_reader(str(path)) as r:
        np.testing.assert_array_equal(read_all(r), ev)
    missing = tmp_path / "missing.raw"
    with pytest.raises(FileNotFoundError):
        open_reader(missing)
