"""LSL in and out, on loopback only (tests/conftest.py points LSLAPICFG at configs/lsl_api.cfg).

Producers and consumers on the other side are plain pylsl, in their own processes where it matters:
an independent outlet feeds a real graph and an independent inlet checks what comes out.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pylsl
import pytest
from scipy.signal import sosfilt

from devices.lsl import LSLInlet, LSLOutlet
from lsl_producer import data
from nodes.filters import Bandpass
from pipeline import Frame, FrameKind, ParamError, StreamInfo

TESTS = Path(__file__).resolve().parent


def unique(prefix: str) -> str:
    """A stream name no other test (or leftover process) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def producer(*args: str, wait_go: bool = False) -> subprocess.Popen:
    """Start tests/lsl_producer.py; returns once its outlets exist."""
    proc = subprocess.Popen([sys.executable, str(TESTS / "lsl_producer.py"), *args,
                             *(["--wait-go"] if wait_go else [])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def inlet(**params) -> LSLInlet:
    node = LSLInlet(LSLInlet.Params(**params), "inlet")
    node.info = node.setup({})["out"]
    node.open()
    return node


def pull_until(node: LSLInlet, done, timeout: float = 30.0) -> list[Frame]:
    """Frames read until ``done(frames)`` (a guard against hangs, not a timing check)."""
    frames: list[Frame] = []
    end = time.monotonic() + timeout
    while not done(frames):
        assert time.monotonic() < end, f"timed out with {len(frames)} frames"
        frames += [f for _, f in node.read()]
    return frames


def test_a_missing_stream_names_what_was_looked_for_and_what_was_found() -> None:
    present = unique("present")
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(present, "EEG", 3, 100, "float32", "p1"))
    with pytest.raises(ParamError) as e:
        LSLInlet(LSLInlet.Params(name=unique("absent"), stream_type="EEG", timeout=0.3)).setup({})
    assert e.value.field == "name"
    assert "name='absent-" in str(e.value) and "type='EEG'" in str(e.value)
    assert f"'{present}' (type 'EEG', 3 ch @ 100 Hz, source_id 'p1'" in str(e.value)
    with pytest.raises(ParamError, match="give the name, stream_type or source_id"):
        LSLInlet(LSLInlet.Params()).setup({})
    del outlet


def test_two_streams_that_both_match_are_refused_rather_than_one_picked() -> None:
    name = unique("twin")
    a = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 2, 100, "float32", "amp-a"))
    b = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 2, 100, "float32", "amp-b"))
    for sid in ("amp-a", "amp-b"):  # both answer queries before the inlet looks
        assert pylsl.resolve_bypred(f"source_id='{sid}'", 1, 10.0)
    with pytest.raises(ParamError, match="2 LSL streams match") as e:
        LSLInlet(LSLInlet.Params(name=name, timeout=5.0)).setup({})
    assert "source_id 'amp-a'" in str(e.value) and "source_id 'amp-b'" in str(e.value)
    info = LSLInlet(LSLInlet.Params(name=name, source_id="amp-b", timeout=5.0)).setup({})["out"]
    assert "source_id 'amp-b'" in info.extra["lsl"]
    del a, b


def test_outlet_meta_data_is_what_any_lsl_tool_reads_and_the_inlet_maps_it_back() -> None:
    name = unique("meta")
    stream = StreamInfo(FrameKind.SAMPLES, 160.0, ("C3", "Cz", "C4"), ("uV", "uV", "uV"),
                        "float32", (3,), clock="file")
    out = LSLOutlet(LSLOutlet.Params(name=name), "out")
    out.setup({"in": stream})
    out.open()
    out.process("in", Frame(FrameKind.SAMPLES, np.zeros((3, 4), np.float32), time.monotonic_ns()))
    (seen,) = pylsl.resolve_bypred(f"name='{name}'", 1, 5.0)
    full = pylsl.StreamInlet(seen).info(timeout=5.0)  # the full XML header, as LabRecorder reads it
    assert (full.type(), full.channel_count(), full.nominal_srate()) == ("EEG", 3, 160.0)
    assert full.source_id() == f"neuroflow-{name}"
    assert full.get_channel_labels() == ["C3", "Cz", "C4"]
    assert full.get_channel_units() == ["microvolts"] * 3
    assert full.get_channel_types() == ["EEG"] * 3
    info = LSLInlet(LSLInlet.Params(name=name, timeout=5.0)).setup({})["out"]
    assert info.channel_names == ("C3", "Cz", "C4") and info.units == ("uV",) * 3
    assert (info.srate, info.clock, info.kind) == (160.0, "lsl", FrameKind.SAMPLES)


def test_string_streams_become_marker_frames_with_their_stamps() -> None:
    name = unique("marks")
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "Markers", 1, 0, "string", name))
    node = inlet(name=name, timeout=5.0)
    assert node.info.kind is FrameKind.MARKERS
    outlet.wait_for_consumers(5.0)
    t = pylsl.local_clock()
    for k, word in enumerate(["T0", "left hand", "T2 ü"]):
        outlet.push_sample([word], t + k)
    frames = pull_until(node, lambda f: len(f) == 3)
    assert [f.data.tolist() for f in frames] == [["T0"], ["left hand"], ["T2 ü"]]
    # same host: time_correction() is ~0, so the stamps come through as pushed
    assert np.allclose([f.t_device for f in frames], t + np.arange(3), atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("clock", ["lsl", "arrival"])
def test_markers_land_on_their_samples_despite_a_ten_second_clock_offset(clock: str) -> None:
    # 'lsl': the producer's host clock is 10 s ahead (samples and markers alike);
    # 'arrival': only the device's sample stamps are 10 s ahead, the markers are on the host's
    # LSL clock, so the samples must be mapped onto it from their arrival times.
    name, srate = unique("offset"), 250.0
    marker_offset = "10" if clock == "lsl" else "0"
    proc = producer("--name", name, "--source-id", name, "--samples", "1500", "--chunk", "5",
                    "--offset", "10", "--marker-offset", marker_offset, "--markers-every", "50")
    try:
        samples = inlet(name=name, clock=clock, timeout=5.0)
        marks = inlet(name=f"{name}-markers", timeout=5.0)
        with ThreadPoolExecutor(2) as pool:  # one thread per source, as in a worker
            got_frames = pool.submit(pull_until, samples,
                                     lambda f: f and f[-1].data[0, -1] == 1499)
            got_markers = pool.submit(pull_until, marks, lambda f: len(f) == 30)
            frames, markers = got_frames.result(), got_markers.result()
    finally:
        proc.kill()
    index = np.concatenate([f.data[0] for f in frames]).astype(int)
    assert (index == np.arange(len(index))).all()  # every sample, in order
    times = np.concatenate([f.t_device + np.arange(f.data.shape[1]) / srate for f in frames])
    # 'arrival' learns the offset from the fastest chunk so far (a minimum over arrivals):
    # judged once it has seen one second of chunks
    settled = 0 if clock == "lsl" else int(srate)
    errors = [m.t_device - times[int(m.data[0][1:])] for m in markers
              if int(m.data[0][1:]) >= settled]
    assert len(errors) >= 25
    # every marker within 1 ms of the sample it was sent for (a sample period is 4 ms)
    assert np.abs(errors).max() < 1e-3, errors
    fig = samples.figures()
    assert fig["samples"] == 1500 and fig["gaps"] == 0 and fig["lost_samples"] == 0
    assert fig["srate_stamps"] == pytest.approx(srate, rel=1e-6)
    if clock == "lsl":  # the stamps say "10 s in the future": the figures make that plain
        assert fig["arrival_lag_ms"] < -9_900 and abs(fig["time_correction_ms"]) < 1
    else:
        assert fig["clock_offset_ms"] == pytest.approx(-10_000, abs=5)


def test_dejitter_smooths_the_stamps_of_a_regular_stream() -> None:
    name, srate = unique("jitter"), 100.0
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 1, srate, "float32", name))
    # one sample per frame, so that every sample's stamp is seen
    rough = inlet(name=name, timeout=5.0, max_chunk=1)
    smooth = inlet(name=name, timeout=5.0, max_chunk=1, dejitter=True)
    outlet.wait_for_consumers(5.0)
    t0, k = pylsl.local_clock(), np.arange(500)
    jitter = np.random.default_rng(0).uniform(0, 0.004, k.size)  # up to 40 % of a period late
    for chunk in np.array_split(k, 50):
        outlet.push_chunk(np.zeros((len(chunk), 1), np.float32), list(t0 + chunk / srate
                                                                     + jitter[chunk]))
    stamps = {}
    for key, node in (("rough", rough), ("smooth", smooth)):
        frames = pull_until(node, lambda f: sum(x.data.shape[1] for x in f) == k.size)
        stamps[key] = np.array([f.t_device for f in frames]) - t0 - k / srate  # off the grid
    # liblsl's dejitter fits a line through the stamps: what is left is far below the jitter
    assert np.std(stamps["smooth"][10:]) < np.std(stamps["rough"][10:]) / 4


@pytest.mark.slow
def test_gaps_and_the_true_rate_are_measured_from_the_stamps() -> None:
    name, srate = unique("liar"), 256.0
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 2, srate, "float32", name))
    node = inlet(name=name, timeout=5.0)
    outlet.wait_for_consumers(5.0)
    t0, true_rate = pylsl.local_clock(), 250.0   # claims 256 Hz, stamps at 250 Hz
    k = np.arange(1000)
    k = k[(k < 400) | (k >= 450)]                # 50 samples lost on the way
    for chunk in np.array_split(k, 100):
        outlet.push_chunk(np.zeros((len(chunk), 2), np.float32), list(t0 + chunk / true_rate))
    pull_until(node, lambda f: sum(x.data.shape[1] for x in f) == len(k))
    fig = node.figures()
    # 50 missing samples of 250 Hz stamps look like 51 periods of 256 Hz: within one sample
    assert fig["gaps"] == 1 and abs(fig["lost_samples"] - 50) <= 1
    assert fig["samples"] == 950


@pytest.mark.slow
def test_an_inlet_finds_its_stream_again_when_the_producer_comes_back() -> None:
    # no source_id: liblsl cannot recover the stream itself, the node must look for it again
    name = unique("flaky")
    first = producer("--name", name, "--samples", "100", "--linger", "0.5")
    node = inlet(name=name, timeout=5.0)
    got = pull_until(node, lambda f: sum(x.data.shape[1] for x in f) == 100)
    first.wait(timeout=30)
    second = producer("--name", name, "--samples", "200", "--seed", "1", "--linger", "30")
    try:
        got = pull_until(node, lambda f: sum(x.data.shape[1] for x in f) == 200)
    finally:
        second.kill()
    assert np.concatenate([f.data[0] for f in got]).tolist() == list(range(200))
    assert node.figures()["reconnects"] == 1 and node.figures()["connected"]


@pytest.mark.slow
def test_a_stream_that_comes_back_with_another_shape_is_not_taken_for_the_lost_one() -> None:
    name = unique("shape")
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 4, 100, "float32"))
    node = inlet(name=name, timeout=5.0, stall=1.0)
    outlet.wait_for_consumers(5.0)
    outlet.push_chunk(np.zeros((10, 4), np.float32))
    pull_until(node, lambda f: sum(x.data.shape[1] for x in f) == 10)
    del outlet
    pull_until(node, lambda f: not node.figures()["connected"])   # silent for 1 s: lost
    wrong = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 3, 100, "float32"))
    for _ in range(30):  # several searches (3 s): each finds the 3-channel stream and refuses it
        assert node.read() == []
    assert not node.figures()["connected"] and node.figures()["reconnects"] == 0
    del wrong
    right = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 4, 100, "float32"))
    pull_until(node, lambda f: node.figures()["connected"])
    right.wait_for_consumers(5.0)
    right.push_chunk(np.ones((5, 4), np.float32))
    got = pull_until(node, lambda f: sum(x.data.shape[1] for x in f) == 5)
    assert got[0].data.shape == (4, 5) and node.figures()["reconnects"] == 1


@pytest.mark.slow
def test_independent_outlet_to_graph_to_independent_inlet_gets_every_sample_filtered(
        run_graph) -> None:
    name, n, channels, srate = unique("raw"), 2000, 4, 250.0
    out_name = f"{name}-filtered"
    proc = producer("--name", name, "--source-id", name, "--samples", str(n), "--channels",
                    str(channels), "--chunk", "7", "--seed", "3", wait_go=True)
    try:
        g = run_graph(f"""\
            nodes:
              inlet:  {{type: lsl_inlet, name: {name}}}
              band:   {{type: bandpass, low: 1, high: 40}}
              outlet: {{type: lsl_outlet, name: {out_name}, stream_type: EEG}}
            edges:
              - {{chain: inlet -> band -> outlet, policy: lossless}}
            """)
        (seen,) = pylsl.resolve_bypred(f"name='{out_name}'", 1, 60.0)
        consumer = pylsl.StreamInlet(seen, max_buflen=360)
        consumer.open_stream(timeout=10.0)
        assert consumer.info(timeout=5.0).get_channel_labels() == \
            ["index", "E1", "E2", "E3"]
        proc.stdin.write("go\n")
        proc.stdin.flush()
        chunks, stamps = [], []
        end = time.monotonic() + 60
        while sum(len(c) for c in chunks) < n:
            assert time.monotonic() < end, f"timed out at {sum(len(c) for c in chunks)} samples"
            x, t = consumer.pull_chunk(timeout=0.5, max_samples=1024, as_numpy=True)
            chunks.append(x)
            stamps.append(t)
        # the inlet's own figures reach the metrics file while the graph runs
        g.wait_for(lambda: (g.figures().get("inlet", {}).get("node") or {}).get("samples") == n)
        live = g.figures()["inlet"]["node"]
        assert live["gaps"] == 0 and live["lost_samples"] == 0 and live["connected"]
        assert live["srate_stamps"] == pytest.approx(srate, rel=1e-6)
        g.interrupt()
        assert g.finish() == 0, g.stderr
    finally:
        proc.kill()
    got = np.concatenate(chunks).T
    x = data(3, n, channels)
    # the reference: the same MNE design, filtered offline in one go in float64; the graph
    # carries float32 between nodes, so the comparison is at float32 resolution of the output
    band = Bandpass(Bandpass.Params(low=1, high=40), "ref")
    band.setup({"in": StreamInfo(FrameKind.SAMPLES, srate, shape=(channels,))})
    expected = sosfilt(band.sos, x.astype(np.float64), axis=1).astype(np.float32)
    assert got.shape == expected.shape                   # every sample, none twice
    # in order, correctly filtered: streaming and offline agree to 1e-10 in float64 (test_filters),
    # so the float32 outputs differ by at most one rounding step (|x| < 300, ulp < 3e-5)
    np.testing.assert_allclose(got, expected, rtol=0, atol=3e-5)
    stamps = np.concatenate(stamps)
    assert (np.diff(stamps) > 0).all()
