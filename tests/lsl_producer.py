"""An independent LSL producer (plain pylsl, no neuroflow), run as its own process by the tests.

Sample k of channel c is ``data(seed, n, channels)[c, k]``, except channel 0, which is k itself,
so a consumer can tell exactly which samples it got. Sample k is stamped
``t0 + k / srate + offset``; with ``--markers-every M`` a string stream ``NAME-markers`` carries
``"m<k>"`` for every M-th sample, stamped ``t0 + k / srate + marker_offset``: with both offsets at
+10 s the producer behaves like a host whose clock is 10 s ahead; with only ``offset``, like a
device stamping samples on its own clock while a stimulus program stamps markers on the host's.
``--marker-delay S`` pushes each marker S seconds after the chunk holding its sample (a stimulus
program reporting late; negative: before it), its stamp unchanged; by default right after it.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial

import numpy as np
import pylsl


def data(seed: int, n: int, channels: int) -> np.ndarray:
    """The samples (channels x n, float32) a producer with these arguments sends."""
    x = (20 * np.random.default_rng(seed).standard_normal((channels, n))).astype(np.float32)
    x[0] = np.arange(n)
    return x


def main() -> None:
    a = argparse.ArgumentParser()
    a.add_argument("--name", required=True)
    a.add_argument("--source-id", default="")
    a.add_argument("--channels", type=int, default=4)
    a.add_argument("--srate", type=float, default=250.0)
    a.add_argument("--chunk", type=int, default=5)
    a.add_argument("--samples", type=int, default=1000)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--offset", type=float, default=0.0)
    a.add_argument("--marker-offset", type=float, default=0.0)
    a.add_argument("--markers-every", type=int, default=0)
    a.add_argument("--marker-delay", type=float, default=0.0,
                   help="seconds between a sample's chunk and its marker being pushed")
    a.add_argument("--wait-go", action="store_true", help="start after a line on stdin")
    a.add_argument("--linger", type=float, default=2.0, help="seconds alive after the last push")
    args = a.parse_args()

    info = pylsl.StreamInfo(args.name, "EEG", args.channels, args.srate, "float32", args.source_id)
    chans = info.desc().append_child("channels")
    for c in range(args.channels):
        ch = chans.append_child("channel")
        ch.append_child_value("label", "index" if c == 0 else f"E{c}")
        ch.append_child_value("unit", "microvolts")
        ch.append_child_value("type", "EEG")
    outlet = pylsl.StreamOutlet(info)
    markers = None
    if args.markers_every:
        markers = pylsl.StreamOutlet(pylsl.StreamInfo(
            f"{args.name}-markers", "Markers", 1, 0, "string", f"{args.source_id}-markers"))
    print("ready", flush=True)
    if args.wait_go:
        sys.stdin.readline()
    outlet.wait_for_consumers(30)
    if markers is not None:
        markers.wait_for_consumers(30)
    x = data(args.seed, args.samples, args.channels)
    t0 = pylsl.local_clock() + 0.05
    pushes = []  # (due, order, push): chunks when their last sample is due, markers after them
    for a0 in range(0, args.samples, args.chunk):
        b = min(a0 + args.chunk, args.samples)
        due = t0 + (b - 1) / args.srate
        stamps = t0 + np.arange(a0, b) / args.srate + args.offset
        pushes.append((due, len(pushes), partial(outlet.push_chunk,
                                                 np.ascontiguousarray(x[:, a0:b].T),
                                                 list(stamps))))
        if markers is not None:
            for k in range(a0, b):
                if k % args.markers_every == 0:
                    pushes.append((due + args.marker_delay, len(pushes),
                                   partial(markers.push_sample, [f"m{k}"],
                                           t0 + k / args.srate + args.marker_offset)))
    for due, _, push in sorted(pushes, key=lambda p: p[:2]):
        time.sleep(max(0.0, due - pylsl.local_clock()))
        push()
    time.sleep(args.linger)
    print("done", flush=True)


if __name__ == "__main__":
    main()
