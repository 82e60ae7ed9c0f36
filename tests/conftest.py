"""Helpers for tests that run real graphs: real worker processes, real ZeroMQ sockets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
# LSL on loopback only, for this process and every worker it starts (set before pylsl is imported).
os.environ["LSLAPICFG"] = str(TESTS.parent / "configs" / "lsl_api.cfg")


def data_path() -> Path:
    """The shared real recordings: ``$NEUROFLOW_DATA``, default ``../shared/data`` of the repo."""
    return Path(os.environ.get("NEUROFLOW_DATA", TESTS.parent.parent / "shared" / "data"))


def edf_files() -> list[Path]:
    """The real EEGMMIDB recordings, or a skip that says where they were looked for."""
    eeg = data_path() / "eeg"
    files = sorted(eeg.glob("*.edf")) if eeg.is_dir() else []
    if not files:
        pytest.skip(f"no EDF recordings under {eeg} (set NEUROFLOW_DATA)")
    return files


def event_recording(name: str) -> Path:
    """One of the real event recordings (``events/NAME``), or a skip that says where it was
    looked for."""
    path = data_path() / "events" / name
    if not path.is_file():
        pytest.skip(f"no event recording {path} (set NEUROFLOW_DATA)")
    return path


def recording_uv(path: Path) -> np.ndarray:
    """A recording's EEG in µV as the eeg_file source emits it (float32, every EEG channel)."""
    import mne

    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    return (raw.get_data(picks="eeg") * 1e6).astype(np.float32)


def pytest_sessionstart(session: pytest.Session) -> None:
    """CI sets NEUROFLOW_REQUIRE_DATA=1: tests on real data must run there, never skip."""
    if os.environ.get("NEUROFLOW_REQUIRE_DATA") == "1" and not data_path().is_dir():
        pytest.exit(f"NEUROFLOW_REQUIRE_DATA=1 but the shared recordings are missing: {data_path()} "
                    f"(set NEUROFLOW_DATA)", returncode=4)


class RunningGraph:
    """A ``neuroflow run`` in a subprocess, with its metrics file read as it grows."""

    def __init__(self, tmp: Path, yaml_text: str, *args: str) -> None:
        self.graph = tmp / "graph.yaml"
        self.graph.write_text(textwrap.dedent(yaml_text))
        self.metrics = tmp / "metrics.jsonl"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "run", str(self.graph), "--metrics",
             str(self.metrics), "--no-live", "--quiet", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp)
        self.stdout = self.stderr = ""

    def records(self) -> list[dict[str, Any]]:
        if not self.metrics.exists():
            return []
        lines = self.metrics.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.records() if "event" in r and (name is None or r["event"] == name)]

    def figures(self) -> dict[str, dict[str, Any]]:
        """The latest per-node figures."""
        ticks = [r for r in self.records() if "nodes" in r]
        return ticks[-1]["nodes"] if ticks else {}

    def wait_for(self, what: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Poll until ``what()`` is truthy (a safety net against hangs, not a timing check)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = what()
            if value:
                return value
            if self.proc.poll() is not None:
                value = what()
                if value:
                    return value
                self.finish()
                raise AssertionError(f"graph exited ({self.proc.returncode}) first:\n{self.stderr}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def finish(self, timeout: float = 60.0) -> int:
        self.stdout, self.stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode


@pytest.fixture
def run_graph(tmp_path: Path):
    started: list[RunningGraph] = []

    def start(yaml_text: str, *args: str, where: str = "") -> RunningGraph:
        """Run ``yaml_text`` as ``graph.yaml`` in ``tmp_path/where`` (one folder per host)."""
        folder = tmp_path / where
        folder.mkdir(exist_ok=True)
        g = RunningGraph(folder, yaml_text, *args)
        started.append(g)
        return g

    yield start
    for g in started:
        if g.proc.poll() is None:
            g.proc.kill()
            g.proc.communicate()


@pytest.fixture
def free_port() -> int:
    """A TCP port free on loopback right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_chunks(n: int, rng: np.random.Generator, most: int,
                  least: int = 1) -> list[tuple[int, int]]:
    """``(start, end)`` of consecutive chunks covering samples 0 .. n, of ``least`` .. ``most``
    samples each drawn from ``rng`` (the last one cut at n; ``least=0`` includes empty chunks):
    a stream cut the way a device or the network might cut it."""
    ends = np.cumsum(rng.integers(least, most + 1, size=n))
    ends = np.concatenate([[0], ends[ends < n], [n]])
    return list(zip(ends[:-1].tolist(), ends[1:].tolist()))
