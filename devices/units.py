"""Unit names: ours (``uV``, as in StreamInfo), LSL's meta-data convention (``microvolts``, also
XDF's), and how many volts each voltage unit is."""

from __future__ import annotations

#: Volts per unit of the voltage units a samples stream may declare.
VOLTS = {"V": 1.0, "mV": 1e-3, "uV": 1e-6, "µV": 1e-6}
#: LSL / XDF unit names to ours (LSL's meta-data conventions spell units out).
FROM_LSL = {"microvolts": "uV", "µV": "uV", "uV": "uV", "millivolts": "mV", "mV": "mV",
            "volts": "V", "V": "V"}
_TO_LSL = {"uV": "microvolts", "µV": "microvolts", "mV": "millivolts", "V": "volts"}


def from_lsl(unit: str | None) -> str:
    """Our name for an LSL unit; ``NA`` when there is none."""
    return FROM_LSL.get(unit or "", unit or "NA")


def to_lsl(unit: str) -> str:
    """The LSL meta-data name of one of our units (unknown ones pass through)."""
    return _TO_LSL.get(unit, unit)
