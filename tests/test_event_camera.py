"""event_camera on a real DV network stream (dv-processing's NetworkWriter in another process,
publishing a real recording): events arrive intact, and a publisher killed and started again is
counted as lost and reconnected while the node keeps being called. No camera here: the USB and
Metavision paths are not exercised (devices/event_camera.py says so)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import event_recording
from devices.event_camera import EventCamera
from pipeline import ParamError
from pipeline.frame import EVENT_DTYPE

PUBLISHER = Path(__file__).with_name("dv_publisher.py")


def publish(path: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(PUBLISHER), str(path), str(port)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def events_for(node: EventCamera, seconds: float) -> list[np.ndarray]:
    """Batches the node sends while it is called for ``seconds`` (the source thread's loop)."""
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        out.extend(frame.data for _, frame in node.read())
    return out


def recording_events(path: Path) -> np.ndarray:
    import dv_processing as dv

    rec, parts = dv.io.MonoCameraRecording(str(path)), []
    while (batch := rec.getNextEventBatch()) is not None:
        parts.append(batch.numpy().view(EVENT_DTYPE).copy())
    return np.concatenate(parts, dtype=EVENT_DTYPE)


def test_network_stream_events_arrive_intact_and_a_lost_publisher_is_reconnected(
        free_port: int) -> None:
    path = event_recording("sample.aedat4")
    publisher = publish(path, free_port)
    try:
        node = EventCamera(EventCamera.Params(source="network", address=f"127.0.0.1:{free_port}",
                                              backoff=0.05), "cam")
        info = node.setup({})
        assert info["out"].sensor_size == (320, 240, 2)  # asked of the stream at validation
        node.open()
        got = np.concatenate(events_for(node, 1.5), dtype=EVENT_DTYPE)
        assert got.dtype == EVENT_DTYPE and len(got) > 10_000
        # every event is one of the recording's, in its order (the stream loops the file)
        ref = recording_events(path)
        start = int(np.flatnonzero(ref["t"] == got["t"][0])[0])
        n = min(len(got), len(ref) - start)
        np.testing.assert_array_equal(got[:n], ref[start:start + n])

        publisher.kill()
        publisher.wait()
        events_for(node, 0.5)
        assert node.figures()["losses"] == 1 and node.figures()["connected"] == 0
        publisher = publish(path, free_port)
        again = events_for(node, 1.5)
        assert node.figures()["reconnects"] == 1 and sum(map(len, again)) > 1000
    finally:
        publisher.kill()
        publisher.wait()


def test_a_stream_that_is_not_there_is_a_config_error_unless_its_size_is_given(
        free_port: int) -> None:
    node = EventCamera(EventCamera.Params(source="network", address=f"127.0.0.1:{free_port}"),
                       "cam")
    with pytest.raises(ParamError, match="cannot be opened") as e:
        node.setup({})
    assert e.value.field == "source"
    node = EventCamera(EventCamera.Params(source="network", address=f"127.0.0.1:{free_port}",
                                          sensor_size=(640, 480)), "cam")
    assert node.setup({})["out"].sensor_size == (640, 480, 2)
    node.open()  # nobody there: retried later, no exception
    assert node.read() == [] and node.figures()["connected"] == 0
