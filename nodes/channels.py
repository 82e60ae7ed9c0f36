"""Channel selection and re-referencing: ``pick`` and ``reref``.

Both are fixed linear maps decided once in ``setup`` from the stream's channel names, so
``process`` is a single indexing or matrix product per chunk. Names may be standardised the way
MNE does it for BCI2000 recordings (``C3..`` -> ``C3``, ``Fc5.`` -> ``FC5``), by MNE itself.
"""

from __future__ import annotations

import re
from typing import Iterable, Literal, Mapping

import mne
import numpy as np
from pydantic import Field

from nodes.checks import check_channels
from pipeline import Frame, FrameKind, Node, NodeParams, ParamError, StreamInfo
from pipeline.node import Output


def standard_names(names: Iterable[str]) -> list[str]:
    """BCI2000-style names as MNE's ``eegbci.standardize`` renames them (dots stripped, 10-05
    capitalisation), computed by MNE on a one-sample stand-in recording."""
    names = list(names)
    raw = mne.io.RawArray(np.zeros((len(names), 1)), mne.create_info(names, 1.0, "eeg"),
                          verbose="error")
    mne.datasets.eegbci.standardize(raw)
    return list(raw.ch_names)


def _names(stream: StreamInfo, field: str) -> list[str]:
    names = list(stream.channel_names)
    if len(names) != stream.n_channels:
        raise ParamError(field, f"the stream has {stream.n_channels} channels but {len(names)} names")
    return names


def _require(field: str, wanted: Iterable[str], names: list[str]) -> None:
    missing = [n for n in wanted if n not in names]
    if missing:
        raise ParamError(field, f"no channel {', '.join(missing)}; the stream has {', '.join(names)}")


class Pick(Node):
    """Keep some channels, in the order given: by name, by regular expression, minus exclusions."""

    type_name = "pick"
    accepts = {"in": (FrameKind.SAMPLES,)}

    class Params(NodeParams):
        channels: list[str] | None = Field(None, description="names to keep, in this order "
                                                             "(default: all)")
        regex: str | None = Field(None, description="keep names matching this regular expression")
        exclude: list[str] = Field([], description="names to drop")
        standardize: bool = Field(False, description="rename BCI2000-style names first "
                                                     "(C3.. -> C3), as MNE's eegbci.standardize")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        stream, p = info["in"], self.params
        names = _names(stream, "channels")
        if p.standardize:
            names = standard_names(names)
        position = {n: i for i, n in enumerate(names)}
        _require("channels", p.channels or [], names)
        _require("exclude", p.exclude, names)
        keep = list(p.channels) if p.channels is not None else names
        if p.regex is not None:
            try:
                pattern = re.compile(p.regex)
            except re.error as e:
                raise ParamError("regex", f"bad regular expression: {e}") from None
            keep = [n for n in keep if pattern.search(n)]
        keep = [n for n in keep if n not in set(p.exclude)]
        if not keep:
            raise ParamError("channels", f"nothing left to keep out of {', '.join(names)}")
        self.index = np.array([position[n] for n in keep])
        self.channels = stream.n_channels
        units = tuple(stream.units[i] for i in self.index) if stream.units else ()
        return {"out": stream.replace(channel_names=tuple(keep), units=units,
                                      shape=(len(keep),) + stream.shape[1:])}

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        check_channels(frame.data, self.channels)
        yield "out", frame.with_data(frame.data[self.index])


class Reref(Node):
    """Re-reference: subtract the average of all channels, or of named reference channels.

    Same result as MNE's ``set_eeg_reference`` (channels in ``exclude`` are neither changed nor
    part of the average: EOG, ECG, triggers)."""

    type_name = "reref"
    accepts = {"in": (FrameKind.SAMPLES,)}

    class Params(NodeParams):
        ref: Literal["average"] | list[str] = Field(
            "average", description="'average', or the names of the reference channels "
                                   "(their mean is subtracted)")
        exclude: list[str] = Field([], description="channels left as they are")

    def setup(self, info: Mapping[str, StreamInfo]) -> dict[str, StreamInfo]:
        stream, p = info["in"], self.params
        names = _names(stream, "ref")
        refs = names if p.ref == "average" else list(p.ref)
        _require("ref", refs, names)
        _require("exclude", p.exclude, names)
        applies = np.array([n not in set(p.exclude) for n in names])
        ref_idx = [i for i, n in enumerate(names) if n in set(refs) and applies[i]]
        if not ref_idx:
            raise ParamError("ref", "every reference channel is excluded")
        n = len(names)
        weights = np.zeros(n)
        weights[ref_idx] = 1.0 / len(ref_idx)
        # y = M x with M = I - applies ⊗ weights: each re-referenced channel minus the mean
        self.matrix = np.eye(n) - np.outer(applies, weights)
        self.channels = n
        return {"out": stream}

    def process(self, port: str, frame: Frame) -> Iterable[Output]:
        x = frame.data
        check_channels(x, self.channels)
        yield "out", frame.with_data((self.matrix @ x.astype(np.float64)).astype(np.float32))
