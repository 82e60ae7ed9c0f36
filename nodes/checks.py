"""Checks every node makes of its stream and its frames, written once so that they read the same
everywhere.

Why here: nodes and devices import this module, and it imports only `pipeline`, so no node
depends on another node for them. A stream without a regular rate is the stream's fault, not a
parameter's: `require_srate` raises `StreamMismatch`, which `neuroflow validate` reports with
both ends of the edge; a frame that does not match its StreamInfo is a runtime error
(``ValueError``) of the node that received it.
"""

from __future__ import annotations

import numpy as np

from pipeline import StreamInfo, StreamMismatch


def require_srate(stream: StreamInfo, node_type: str) -> float:
    """The stream's sampling rate (Hz), from ``setup`` of a node that needs one.

    Parameters
    ----------
    stream : StreamInfo
        The input stream.
    node_type : str
        The node's ``type_name``, named in the error.

    Raises
    ------
    StreamMismatch
        If the stream has no regular rate (``srate`` 0: markers, irregular LSL streams).
    """
    if stream.srate <= 0:
        raise StreamMismatch(f"{node_type} needs a regular sampling rate; the stream has none")
    return stream.srate


def check_channels(x: np.ndarray, channels: int) -> None:
    """Refuse a samples frame's data ``x`` (channels x n) with another channel count.

    Raises
    ------
    ValueError
        ``frame has N channels, the stream has M``.
    """
    if x.shape[0] != channels:
        raise ValueError(f"frame has {x.shape[0]} channels, the stream has {channels}")


def check_window(x: np.ndarray, shape: tuple[int, ...]) -> None:
    """Refuse a window frame's data ``x`` unless it is 2-D with the stream's (channels x samples)
    ``shape`` (a negative length accepts any number of samples).

    Raises
    ------
    ValueError
        ``frame has shape [..], the stream [C, L] (channels x samples)``.
    """
    channels, length = shape
    if x.ndim != 2 or x.shape[0] != channels or (length >= 0 and x.shape[1] != length):
        raise ValueError(f"frame has shape {list(x.shape)}, the stream {list(shape)} "
                         f"(channels x samples)")
