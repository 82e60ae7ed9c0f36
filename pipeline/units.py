"""Unit names: ours (``uV``, as in StreamInfo), LSL's meta-data convention (``microvolts``, also
XDF's), and how many volts each voltage unit is."""

from __future__ import annotations

#: Spellings of microvolts: ours, the micro sign (U+00B5) and the Greek mu (U+03BC).
MICROVOLTS = ("uV", "\u00b5V", "\u03bcV")
#: Volts per unit of the voltage units a samples stream may declare.
VOLTS = {"V": 1.0, "mV": 1e-3, **dict.fromkeys(MICROVOLTS, 1e-6)}
#: LSL / XDF unit names to ours (LSL's meta-data conventions spell units out).
FROM_LSL = {"microvolts": "uV", **dict.fromkeys(MICROVOLTS, "uV"), "millivolts": "mV",
            "mV": "mV", "volts": "V", "V": "V"}
_TO_LSL = {**dict.fromkeys(MICROVOLTS, "microvolts"), "mV": "millivolts", "V": "volts"}


def from_lsl(unit: str | None) -> str:
    """Our name for an LSL unit; ``NA`` when there is none."""
    return FROM_LSL.get(unit or "", unit or "NA")


def to_lsl(unit: str) -> str:
    """The LSL meta-data name of one of our units (unknown ones pass through)."""
    return _TO_LSL.get(unit, unit)
