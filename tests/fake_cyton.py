"""A stand-in OpenBCI Cyton on a pseudo-terminal, so that BrainFlow's real Cyton driver can be
tested without the board: plugged in, streaming, unplugged (kill the process), plugged back.

Run as ``python fake_cyton.py LINK [--skip K] [--reply-delay S]``: it opens a pty pair, points
the symlink ``LINK`` at the terminal end (as udev's ``/dev/serial/by-id`` links point at
``/dev/ttyUSB0``), prints ``ready`` and answers the part of the Cyton protocol BrainFlow uses:
``v`` (reset: a banner ending in ``$$$``, sent ``--reply-delay`` seconds later, as a board slow
to wake up), ``d`` (default channel settings), ``b`` / ``s`` (start / stop streaming). Streaming
sends one 33-byte packet per sample at 250 Hz: ``0xA0``, the sample number (one byte, wrapping),
eight 24-bit big-endian signed counts, six aux bytes, ``0xC0``. The counts encode the sample's
index (`counts`), so a test can tell which samples arrived; with ``--skip K`` every K-th sample
is not sent (its number is skipped), as a radio drops packets.

Standard library only: it starts fast and needs nothing from the project.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import time
import tty
from pathlib import Path

SRATE = 250.0
BANNER = (b"OpenBCI V3 8-16 channel\nOn Board ADS1299 Device ID: 0x3E\n"
          b"LIS3DH Device ID: 0x33\nFirmware: v3.1.2\n$$$")
DEFAULTS_REPLY = b"updating channel settings to default$$$"


def counts(index: int) -> list[int]:
    """The eight ADC counts of sample ``index``: channel c holds ``index * (c + 1)``, the last
    channel ``-index`` (so the sign path is exercised too)."""
    return [index * (c + 1) for c in range(7)] + [-index]


def packet(index: int) -> bytes:
    """Sample ``index`` as a standard Cyton packet (end byte 0xC0: accelerometer aux, zeros)."""
    body = b"".join(v.to_bytes(3, "big", signed=True) for v in counts(index))
    return bytes([0xA0, index % 256]) + body + bytes(6) + bytes([0xC0])


def serve(link: Path, skip: int | None, reply_delay: float) -> None:
    master, terminal = os.openpty()
    tty.setraw(terminal)  # the fake keeps the terminal end open: the device exists until killed
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.ttyname(terminal))
    tmp.replace(link)
    print("ready", flush=True)
    streaming, index, t_start = False, 0, 0.0
    banner_due: float | None = None  # when the reply to "v" is sent
    while True:
        due = [t for t in (banner_due, t_start + index / SRATE if streaming else None)
               if t is not None]
        timeout = max(0.0, min(due) - time.monotonic()) if due else None
        ready, _, _ = select.select([master], [], [], timeout)
        if ready:
            for command in os.read(master, 256):
                if command == ord("v"):
                    banner_due = time.monotonic() + reply_delay
                elif command == ord("d"):
                    os.write(master, DEFAULTS_REPLY)
                elif command == ord("b"):
                    streaming, index, t_start = True, 0, time.monotonic()
                elif command == ord("s"):
                    streaming = False
            continue
        now = time.monotonic()
        if banner_due is not None and now >= banner_due:
            os.write(master, BANNER)
            banner_due = None
        if streaming and now >= t_start + index / SRATE:
            if skip is None or index % skip != skip - 1:
                os.write(master, packet(index))
            index += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("link", type=Path, help="symlink to create, pointing at the pty")
    parser.add_argument("--skip", type=int, default=None, help="drop every K-th sample")
    parser.add_argument("--reply-delay", type=float, default=0.0,
                        help="seconds before the banner answering 'v' is sent")
    args = parser.parse_args(argv)
    serve(args.link, args.skip, args.reply_delay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
