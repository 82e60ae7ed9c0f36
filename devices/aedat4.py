"""AEDAT4 (iniVation DV) event files, read through dv-processing.

Why dv-processing: it is iniVation's own reader (Apache-2.0), decodes LZ4/Zstd packets in C++ and
hands each packet over as a NumPy array whose 16-byte records have our EVENT_DTYPE layout, so a
batch arrives here without a copy. It is the ``[events]`` extra: without it an AEDAT4 file is a
clear error naming the extra. Other streams of the file (frames, IMU, triggers) are not replayed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from devices.event_formats import EventReader
from pipeline.frame import EVENT_DTYPE


def import_dv() -> Any:
    """dv_processing, imported on use (an optional extra), or a ValueError naming the extra."""
    try:
        import dv_processing
    except ImportError:
        raise ValueError("AEDAT4 files and iniVation cameras need dv-processing: "
                         "pip install 'neuroflow[events]'") from None
    return dv_processing


class Aedat4Reader(EventReader):
    """The event stream of an AEDAT4 recording, packet by packet (the file's own batching)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._open()
        if not self.rec.isEventStreamAvailable():
            raise ValueError(f"{path}: the AEDAT4 file has no event stream (streams: "
                             f"{', '.join(self.rec.getStreamNames()) or 'none'})")
        w, h = self.rec.getEventResolution()
        self.sensor_size: tuple[int, int] | None = (int(w), int(h))

    def _open(self) -> None:
        try:
            self.rec = import_dv().io.MonoCameraRecording(self.path)
        except RuntimeError as e:  # dv-processing raises RuntimeError for unreadable files
            raise ValueError(f"{self.path}: not a readable AEDAT4 file: {e}") from None

    def read(self, max_events: int) -> np.ndarray | None:
        """The next packet (dv-processing's batching; ``max_events`` is not needed to bound it,
        a packet holds at most what the camera sent in one transfer); None at the end."""
        store = self.rec.getNextEventBatch()
        if store is None:
            return None
        return store.numpy().view(EVENT_DTYPE)

    def rewind(self) -> None:
        self.rec.resetSequentialRead()

    def counters(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        self.rec = None
