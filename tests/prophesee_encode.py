"""Test-only encoders for Prophesee RAW EVT 2.0 / EVT 3.0, so that the decoders of
`kernels.prophesee` are checked by round trip on streams that hold every word type (OpenEB's
habit: its decoder tests carry an encoder).

Written from the format documentation (docs.prophesee.ai "EVT 2.0 Format", "EVT 3.0 Format"),
not from the decoders: an encoder that shared the decoder's mistakes would prove nothing. The EVT
2.0 output is also read by expelliarmus in the tests, an outside check of the encoder itself.

The encoders emit the events in the order given (times must not decrease); what the decoder
must give back is exactly that array. Extra words (triggers, IMU, "others", "continued",
undocumented types) are inserted between the event words at random places and counted, so a
test can check the decoder's counters too.
"""

from __future__ import annotations

import numpy as np

#: EVT 3.0 word types (4 high bits of the 16-bit word).
E3_ADDR_Y, E3_ADDR_X, E3_VECT_BASE_X, E3_VECT_12, E3_VECT_8 = 0x0, 0x2, 0x3, 0x4, 0x5
E3_TIME_LOW, E3_CONTINUED_4, E3_TIME_HIGH, E3_EXT_TRIGGER = 0x6, 0x7, 0x8, 0xA
E3_IMU, E3_OTHERS, E3_CONTINUED_12 = 0xD, 0xE, 0xF
#: EVT 2.0 word types (4 high bits of the 32-bit word).
E2_CD_OFF, E2_CD_ON, E2_TIME_HIGH, E2_EXT_TRIGGER = 0x0, 0x1, 0x8, 0xA
E2_IMU, E2_OTHERS, E2_CONTINUED = 0xD, 0xE, 0xF


def raw_header(evt: str, *lines: str) -> bytes:
    """A RAW text header: ``% evt <evt>`` plus ``lines`` (each without the leading ``% ``)."""
    return "".join(f"% {line}\n" for line in (f"evt {evt}", *lines)).encode()


def _w3(kind: int, payload: int) -> int:
    return (kind << 12) | (payload & 0xFFF)


def encode_evt3(events: np.ndarray, rng: np.random.Generator | None = None,
                vectors: bool = True, extras: int = 0,
                system_bit: bool = False) -> tuple[bytes, dict[str, int]]:
    """EVT 3.0 words (little-endian bytes, no header) for ``events``.

    A time-high word is written whenever bits 12-23 of ``t`` change (so a stream may cross
    2^24 µs as long as no two events are 2^23 µs apart), a time-low word whenever bits 0-11
    change, an address-y word whenever y changes. Runs of 2+ events with the same t, y and p and
    increasing x within 32 pixels become VECT_BASE_X + VECT_12 + VECT_12 + VECT_8 words (the
    sensor's 32-pixel pattern; some masks may be zero), other events single EVT_ADDR_X words.

    Parameters
    ----------
    rng
        For the places of the ``extras`` inserted groups.
    vectors
        False: single EVT_ADDR_X words only.
    extras
        Groups of non-CD words to insert: an external trigger, an IMU word, an "others" word
        with its 12+12+4-bit continuation (an event-rate counter), an undocumented type.
    system_bit
        Set bit 11 of every address-y word (master/slave system type: not part of y).

    Returns
    -------
    data : bytes
    counts : dict
        What a decoder should count: ``ext_triggers``, ``other_words``, ``continued_words``,
        ``unknown_words``.
    """
    words: list[int] = []
    high = low = y = None
    t, x, ys, p = (events[k].astype(np.int64) for k in "txyp")
    n = len(events)
    i = 0
    while i < n:
        h, lo = (t[i] >> 12) & 0xFFF, t[i] & 0xFFF
        if h != high:
            words.append(_w3(E3_TIME_HIGH, h))
            high, low = h, None
        if lo != low:
            words.append(_w3(E3_TIME_LOW, lo))
            low = lo
        if ys[i] != y:
            words.append(_w3(E3_ADDR_Y, ys[i] | (0x800 if system_bit else 0)))
            y = ys[i]
        j = i + 1
        while (vectors and j < n and t[j] == t[i] and ys[j] == ys[i] and p[j] == p[i]
               and x[j] > x[j - 1] and x[j] - x[i] < 32):
            j += 1
        if j - i >= 2:
            offsets = x[i:j] - x[i]
            words.append(_w3(E3_VECT_BASE_X, x[i] | (p[i] << 11)))
            for start, width, kind in ((0, 12, E3_VECT_12), (12, 12, E3_VECT_12),
                                       (24, 8, E3_VECT_8)):
                if start > offsets[-1]:
                    break
                inside = offsets[(offsets >= start) & (offsets < start + width)] - start
                words.append(_w3(kind, int(np.sum(1 << inside))))
        else:
            words.append(_w3(E3_ADDR_X, x[i] | (p[i] << 11)))
        i = j
    groups = [[_w3(E3_EXT_TRIGGER, 0x301)], [_w3(E3_IMU, 0x123)],
              [_w3(E3_OTHERS, 0x016), _w3(E3_CONTINUED_12, 0xABC), _w3(E3_CONTINUED_12, 0x001),
               _w3(E3_CONTINUED_4, 0x5)],
              [_w3(0x1, 0x7)], [_w3(0x9, 0)], [_w3(0xB, 0xFFF)], [_w3(0xC, 1)]]
    words, counts = _insert(words, groups, extras, rng,
                            {0: "ext_triggers", 1: "other_words", 2: "other_words"},
                            {2: 3})
    return np.asarray(words, "<u2").tobytes(), counts


def encode_evt2(events: np.ndarray, rng: np.random.Generator | None = None,
                extras: int = 0) -> tuple[bytes, dict[str, int]]:
    """EVT 2.0 words (little-endian bytes, no header) for ``events``: a time-high word (``t``
    bits 6-33) whenever it changes, then one CD word per event (type = polarity, 6 low time
    bits, x, y). ``extras`` and the returned counts as `encode_evt3` (here an IMU group is the
    IMU word and its 5 CONTINUED words)."""
    words: list[int] = []
    high = None
    for t, x, y, p in zip(*(events[k].astype(np.int64).tolist() for k in "txyp")):
        if t >> 6 != high:
            high = t >> 6
            words.append((E2_TIME_HIGH << 28) | (high & 0xFFFFFFF))
        words.append((p << 28) | ((t & 0x3F) << 22) | (x << 11) | y)
    groups = [[(E2_EXT_TRIGGER << 28) | (1 << 8) | 1],
              [(E2_IMU << 28) | 0x1234] + [(E2_CONTINUED << 28) | k for k in range(5)],
              [(E2_OTHERS << 28) | 0x14],
              [(0x2 << 28) | 5], [(0x7 << 28) | 5], [(0x9 << 28)], [(0xB << 28) | 9],
              [(0xC << 28) | 3]]
    words, counts = _insert(words, groups, extras, rng,
                            {0: "ext_triggers", 1: "other_words", 2: "other_words"},
                            {1: 5})
    return np.asarray(words, "<u4").tobytes(), counts


def _insert(words: list[int], groups: list[list[int]], extras: int,
            rng: np.random.Generator | None, first_counter: dict[int, str],
            continued: dict[int, int]) -> tuple[list[int], dict[str, int]]:
    """Insert ``extras`` random ``groups`` after random words (never before the first, a time
    high) and count them: the group's first word under ``first_counter`` (else
    ``unknown_words``), ``continued[g]`` continuation words."""
    counts = dict.fromkeys(("ext_triggers", "other_words", "continued_words", "unknown_words"), 0)
    if not extras:
        return words, counts
    assert rng is not None, "extras need an rng"
    after = np.sort(rng.integers(1, len(words) + 1, size=extras))
    picks = rng.integers(0, len(groups), size=extras)
    out: list[int] = []
    k = 0
    for pos in range(len(words) + 1):
        while k < extras and after[k] == pos:
            g = int(picks[k])
            out.extend(groups[g])
            counts[first_counter.get(g, "unknown_words")] += 1
            counts["continued_words"] += continued.get(g, 0)
            k += 1
        if pos < len(words):
            out.append(words[pos])
    return out, counts
