"""A DV network stream for tests: publishes a real AEDAT4 recording's events over TCP with
dv-processing's own ``NetworkWriter``, in a loop, paced at about the recording's rate, until
killed. Usage: ``python dv_publisher.py RECORDING PORT``."""

from __future__ import annotations

import sys
import time

import dv_processing as dv


def main(path: str, port: int) -> None:
    rec = dv.io.MonoCameraRecording(path)
    stream = dv.io.Stream.EventStream(0, "events", "TEST_PUBLISHER", rec.getEventResolution())
    writer = dv.io.NetworkWriter("127.0.0.1", port, stream)
    print("ready", flush=True)
    while True:
        batch = rec.getNextEventBatch()
        if batch is None:
            rec.resetSequentialRead()
            continue
        writer.writeEvents(batch)
        time.sleep(0.005)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
