"""Numba decoders for Prophesee RAW (EVT 2.0, EVT 3.0), Prophesee/Chronocam DAT and N-MNIST
``.bin`` event data: bytes in, event records out, the decoder state carried across calls.

Why our own: the well-known Python decoder (expelliarmus) is GPL-2.0, and Prophesee's own SDK is
not a dependency we want. These kernels are written from Prophesee's public format documentation
(docs.prophesee.ai: "EVT 2.0 Format", "EVT 3.0 Format", "DAT File Format") and the bit layouts of
OpenEB's (Apache-2.0) ``hal/cpp/include/metavision/hal/decoders/evt2|evt3/*_event_types.h``;
N-MNIST follows the layout of Orchard et al.'s reader (5 bytes an event, big-endian bit packing,
time-overflow markers at ``y == 240``).

Each kernel is a pure function of (records, state, counts) in the Norse habit: it decodes whole
records from the start of ``data`` into ``out`` (the int64 view of an EVENT_DTYPE array made by
`event_words`: one (t, packed x/y/p) pair of words per event, two stores instead of four, which
makes EVT 3.0 a third faster and leaves the padding bytes zero) until ``limit`` events are
written or the data ends, updates the decoder ``state`` (an int64 array of `STATE_SIZE` slots,
made by `new_state`) and the problem ``counts`` (an int64 array indexed by `COUNTERS`) in place,
and returns ``(events written, records used)``. Feeding a stream in any pieces, with the unused
records handed back in the next call, gives exactly what decoding it whole gives: the only
memory of the past is ``state``. Splitting bytes into whole records is the caller's job
(`devices.event_formats`).

Semantics shared with OpenEB's decoders:

- words before the first time-high word carry no full time stamp: they are skipped and counted
  (``before_time_high``) rather than given a made-up time;
- time is unwrapped into int64 µs: a time-high (EVT 2.0: 28 bits << 6, wraps every 2^34 µs;
  EVT 3.0: 12 bits << 12, wraps every 2^24 µs) or a DAT time stamp (32 bits) that steps back by
  half its range or more is a wrap, counted in ``state[LOOPS]``; a smaller step back is kept as
  it is, and an event earlier than the one before it is counted as ``non_monotonic`` (as
  `kernels.event_checks` counts: reported, never "fixed");
- EVT 3.0: the time is what the last time-high and time-low words say; a new time high clears
  time low (OpenEB's choice: the time-low word that follows sets it). (expelliarmus 1.1.12
  instead adds 4096 µs whenever a time low steps back, even where a time-high word already
  moved on, so its times drift ahead of the stream's.) Vector words emit their valid bits in
  increasing x from the base x, which then advances by 12 (VECT_12) or 8 (VECT_8);
- external trigger, IMU/"others" and "continued" words are not change-detection events: they are
  skipped and counted; a word type the documentation does not define is counted as
  ``unknown_words``.

Coordinates are written as found (EVT: 11 bits; DAT: 14 bits): events outside the sensor are
the event nodes' business (`kernels.event_checks`), not the decoder's.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

from kernels.event_checks import NO_TIME

#: Names of the ``counts`` slots, in order.
COUNTERS = ("before_time_high", "ext_triggers", "other_words", "continued_words",
            "unknown_words", "non_monotonic")
BEFORE_TIME_HIGH, EXT_TRIGGERS, OTHER_WORDS, CONTINUED_WORDS, UNKNOWN_WORDS, NON_MONOTONIC = \
    range(len(COUNTERS))

#: ``state`` slots: time high seen (EVT), last raw time high (EVT) or raw time stamp (DAT) or
#: N-MNIST overflow count, time wraps, EVT 3.0 time low / y / vector base x / vector polarity /
#: bits of the current vector word already written (when ``out`` filled up inside it), and the
#: last event time written (µs, for ``non_monotonic``).
STARTED, HIGH, LOOPS, LOW, Y, BASE_X, VECT_P, DONE, LAST_T = range(9)
STATE_SIZE = 9


def new_state() -> np.ndarray:
    """A decoder state before the first byte of a stream (any of the four formats)."""
    state = np.zeros(STATE_SIZE, np.int64)
    state[LAST_T] = NO_TIME
    return state


def new_counts() -> np.ndarray:
    """Problem counters at zero, indexed by `COUNTERS`."""
    return np.zeros(len(COUNTERS), np.int64)


def event_words(events: np.ndarray) -> np.ndarray:
    """The (n, 2) int64 view the kernels write of an n-event record array laid out as
    DESIGN.md's EVENT_DTYPE: ``t`` (int64 µs) in word 0; ``x`` (int16, bytes 8-9), ``y``
    (int16, bytes 10-11), ``p`` (int8, byte 12) and zero padding packed in word 1
    (little-endian, as Numba needs native byte order)."""
    if events.dtype.itemsize != 16 or [events.dtype.fields[k][1] for k in "txyp"] != \
            [0, 8, 10, 12]:
        raise ValueError(f"not the 16-byte t/x/y/p event layout: {events.dtype}")
    return events.view(np.int64).reshape(-1, 2)


@numba.njit(cache=True, nogil=True, inline="always")
def _pack(x: int, y: int, p: int) -> int:
    """Word 1 of an event record: x and y as int16 (wrapped), p as int8."""
    return (x & 0xFFFF) | ((y & 0xFFFF) << 16) | ((p & 0xFF) << 32)


@numba.njit(cache=True, nogil=True, inline="always")
def _start(words: np.ndarray, shift: int, mask: int, state: np.ndarray,
           counts: np.ndarray) -> int:
    """Before the first time-high word (type 8 in the bits above ``shift``): skip and count the
    words up to it and take its value (``& mask``); the index of the word to decode next."""
    i = 0
    if state[STARTED] == 0:
        nw = words.shape[0]
        while i < nw and words[i] >> shift != 0x8:
            i += 1
        counts[BEFORE_TIME_HIGH] += i
        if i < nw:
            state[STARTED] = 1
            state[HIGH] = np.int64(words[i]) & mask
            state[LOW] = 0
            i += 1
    return i


@numba.njit(cache=True, nogil=True)
def decode_evt3(words: np.ndarray, out: np.ndarray, limit: int, state: np.ndarray,
                counts: np.ndarray) -> tuple[int, int]:
    """Decode EVT 3.0 16-bit ``words`` (little-endian uint16) into ``out``.

    Parameters
    ----------
    words : ndarray of uint16
        Whole EVT 3.0 words, in stream order.
    out : ndarray of int64, (n, 2)
        `event_words` of the event records to write, from index 0; must hold ``limit`` events.
    limit : int
        Most events to write (>= 1). A vector word that does not fit is written in part: the
        bits written are remembered in ``state`` and the word is not counted as used.
    state, counts : ndarray of int64
        From `new_state` / `new_counts`; updated in place.

    Returns
    -------
    n_events : int
        Events written to ``out[:n_events]``.
    n_words : int
        Words used; the rest (``words[n_words:]``) must be given again to the next call.
    """
    i = _start(words, 12, 0xFFF, state, counts)
    high = state[HIGH]
    loops = state[LOOPS]
    low = state[LOW]
    y = state[Y]
    base_x = state[BASE_X]
    vect_p = state[VECT_P]
    done = state[DONE]
    last_t = state[LAST_T]
    t = (loops << 24) | (high << 12) | low
    backwards = 0
    n = 0
    nw = words.shape[0]
    while i < nw:
        w = np.int64(words[i])
        kind = w >> 12
        if (kind & 0xD) == 0 and n < limit:
            # EVT_ADDR_X (kind 2: one event at x, y with its polarity) or EVT_ADDR_Y (kind 0:
            # y; bit 11 is the master/slave system type, not part of y), most of the words: one
            # path without branches (the record is written either way, counted only for an X)
            is_x = kind >> 1
            out[n, 0] = t
            out[n, 1] = _pack(w & 0x7FF, y, (w >> 11) & 1)
            n += is_x
            backwards += is_x & (t < last_t)
            last_t = t if is_x else last_t
            y = y if is_x else w & 0x7FF
        elif kind == 0x2:  # an X with ``out`` full
            break
        elif kind == 0x4 or kind == 0x5:  # VECT_12 / VECT_8: valid bits from the base x
            valid = w & (0xFFF if kind == 0x4 else 0xFF) & ~done
            while valid and n < limit:
                bit = trailing_zeros(valid)
                out[n, 0] = t
                out[n, 1] = _pack(base_x + bit, y, vect_p)
                n += 1
                backwards += t < last_t
                last_t = t
                valid &= valid - 1
                done |= 1 << bit
            if valid:  # ``out`` full inside the word: the next call goes on from its next bit
                break
            done = 0
            base_x += 12 if kind == 0x4 else 8
        elif kind == 0x0:  # an Y with ``out`` full
            y = w & 0x7FF
        elif kind == 0x3:  # VECT_BASE_X: base x and polarity of the vectors that follow
            base_x = w & 0x7FF
            vect_p = (w >> 11) & 1
        elif kind == 0x6:  # EVT_TIME_LOW
            low = w & 0xFFF
            t = (loops << 24) | (high << 12) | low
        elif kind == 0x8:  # EVT_TIME_HIGH
            new = w & 0xFFF
            if high - new >= 0x800:  # stepped back by half the range or more: a wrap
                loops += 1
            if new != high:
                low = 0
            high = new
            t = (loops << 24) | (high << 12) | low
        elif kind == 0xA:
            counts[EXT_TRIGGERS] += 1
        elif kind == 0xE or kind == 0xD:  # OTHERS (e.g. event-rate counters), IMU
            counts[OTHER_WORDS] += 1
        elif kind == 0x7 or kind == 0xF:  # CONTINUED_4, CONTINUED_12
            counts[CONTINUED_WORDS] += 1
        else:
            counts[UNKNOWN_WORDS] += 1
        i += 1
    state[HIGH] = high
    state[LOOPS] = loops
    state[LOW] = low
    state[Y] = y
    state[BASE_X] = base_x
    state[VECT_P] = vect_p
    state[DONE] = done
    state[LAST_T] = last_t
    counts[NON_MONOTONIC] += backwards
    return n, i


@numba.njit(cache=True, nogil=True)
def decode_evt2(words: np.ndarray, out: np.ndarray, limit: int, state: np.ndarray,
                counts: np.ndarray) -> tuple[int, int]:
    """Decode EVT 2.0 32-bit ``words`` (little-endian uint32) into ``out``.

    A CD word (type 0 = OFF, 1 = ON) holds y (bits 0-10), x (11-21) and the 6 low time bits
    (22-27); a time-high word (type 8) the 28 bits above them. Parameters and returns as
    `decode_evt3`.
    """
    i = _start(words, 28, 0xFFFFFFF, state, counts)
    high = state[HIGH]
    loops = state[LOOPS]
    last_t = state[LAST_T]
    base = (loops << 34) | (high << 6)
    backwards = 0
    n = 0
    nw = words.shape[0]
    while i < nw:
        w = np.int64(words[i])
        kind = w >> 28
        if kind <= 1:  # CD_OFF / CD_ON
            if n >= limit:
                break
            t = base | ((w >> 22) & 0x3F)
            if t < last_t:
                backwards += 1
            last_t = t
            out[n, 0] = t
            out[n, 1] = _pack((w >> 11) & 0x7FF, w & 0x7FF, kind)
            n += 1
        elif kind == 0x8:  # EVT_TIME_HIGH
            new = w & 0xFFFFFFF
            if high - new >= 0x8000000:
                loops += 1
            high = new
            base = (loops << 34) | (high << 6)
        elif kind == 0xA:
            counts[EXT_TRIGGERS] += 1
        elif kind == 0xE or kind == 0xD:  # OTHERS, IMU_EVT
            counts[OTHER_WORDS] += 1
        elif kind == 0xF:  # CONTINUED
            counts[CONTINUED_WORDS] += 1
        else:
            counts[UNKNOWN_WORDS] += 1
        i += 1
    state[HIGH] = high
    state[LOOPS] = loops
    state[LAST_T] = last_t
    counts[NON_MONOTONIC] += backwards
    return n, i


@numba.njit(cache=True, nogil=True)
def decode_dat(records: np.ndarray, out: np.ndarray, limit: int, state: np.ndarray,
               counts: np.ndarray) -> tuple[int, int]:
    """Decode DAT change-detection records (``records``: n x 2 little-endian uint32) into
    ``out``.

    Word 0 is the time stamp (µs, 32 bits, unwrapped); word 1 packs x (bits 0-13), y (14-27)
    and polarity (28-31), as OpenEB's ``EventCD::RawEvent``. Parameters and returns as
    `decode_evt3` (one event per record).
    """
    high = state[HIGH]
    loops = state[LOOPS]
    last_t = state[LAST_T]
    backwards = 0
    m = min(records.shape[0], limit)
    for i in range(m):
        ts = np.int64(records[i, 0])
        if high - ts >= 0x80000000:
            loops += 1
        high = ts
        t = (loops << 32) | ts
        if t < last_t:
            backwards += 1
        last_t = t
        d = np.int64(records[i, 1])
        out[i, 0] = t
        out[i, 1] = _pack(d & 0x3FFF, (d >> 14) & 0x3FFF, d >> 28)
    state[HIGH] = high
    state[LOOPS] = loops
    state[LAST_T] = last_t
    counts[NON_MONOTONIC] += backwards
    return m, m


#: N-MNIST: a record with this y is a time-overflow marker, not an event.
NMNIST_OVERFLOW_Y = 240
#: N-MNIST: µs added to every later time stamp by an overflow marker.
NMNIST_OVERFLOW_US = 1 << 13


@numba.njit(cache=True, nogil=True)
def decode_nmnist(records: np.ndarray, out: np.ndarray, limit: int, state: np.ndarray,
                  counts: np.ndarray) -> tuple[int, int]:
    """Decode N-MNIST records (``records``: n x 5 uint8) into ``out``.

    Byte 0 is x, byte 1 y, bit 7 of byte 2 the polarity and the remaining 23 bits (big-endian
    over bytes 2-4) the time stamp in µs. A record with ``y == 240`` is a time-overflow marker:
    it adds 2^13 µs to its own and every later time stamp (``state[HIGH]`` counts them) and is
    not an event. Parameters and returns as `decode_evt3` (at most one event per record).
    """
    overflows = state[HIGH]
    last_t = state[LAST_T]
    backwards = 0
    n = 0
    i = 0
    nr = records.shape[0]
    while i < nr:
        y = records[i, 1]
        if y == NMNIST_OVERFLOW_Y:
            overflows += 1
        else:
            if n >= limit:
                break
            b2 = np.int64(records[i, 2])
            t = (((b2 & 0x7F) << 16) | (np.int64(records[i, 3]) << 8) | records[i, 4]) \
                + overflows * NMNIST_OVERFLOW_US
            if t < last_t:
                backwards += 1
            last_t = t
            out[n, 0] = t
            out[n, 1] = _pack(np.int64(records[i, 0]), np.int64(y), b2 >> 7)
            n += 1
        i += 1
    state[HIGH] = overflows
    state[LAST_T] = last_t
    counts[NON_MONOTONIC] += backwards
    return n, i
