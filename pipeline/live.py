"""The live terminal view: one row per node, refreshed with every supervisor tick (1 s)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def view(title: str, figures: dict[str, dict[str, Any]]) -> Group:
    """The runtime's figures per node, then each node's own (a source's measured rate, a
    filter's NaN resets) as ``name=value`` lines: also the end-of-run summary."""
    own = [f"[bold]{node}[/]: " + "  ".join(f"{k}={_fmt(v)}" for k, v in f["node"].items())
           for node, f in figures.items() if f.get("node")]
    return Group(table(title, figures), *own)


def table(title: str, figures: dict[str, dict[str, Any]]) -> Table:
    """The runtime's per-node figures as a rich Table."""
    t = Table(title=title, title_justify="left", expand=False)
    for col, justify in (("node", "left"), ("group", "left"), ("in/s", "right"), ("out/s", "right"),
                         ("proc p50 µs", "right"), ("proc p99 µs", "right"),
                         ("lat p50 ms", "right"), ("lat p99 ms", "right"), ("lat max ms", "right"),
                         ("drops", "right"), ("queue", "right"), ("errors", "right"),
                         ("restarts", "right")):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for node, f in figures.items():
        drops = sum(f.get(k) or 0 for k in ("drops", "queue_drops", "send_drops"))
        errors = (f.get("errors") or 0) + (f.get("decode_errors") or 0)
        t.add_row(node, f.get("group", ""), _fmt(f.get("rate_in_hz"), 1), _fmt(f.get("rate_out_hz"), 1),
                  _fmt(f.get("proc_p50_us"), 1), _fmt(f.get("proc_p99_us"), 1),
                  _fmt(f.get("lat_p50_ms"), 3), _fmt(f.get("lat_p99_ms"), 3),
                  _fmt(f.get("lat_max_ms"), 3), str(drops), _fmt(f.get("queue")),
                  str(errors), _fmt(f.get("restarts")))
    return t


class LiveView:
    """Redraws the table in place on a terminal; silent when output is not a terminal."""

    def __init__(self, name: str, console: Console | None = None) -> None:
        self.name = name
        self.console = console or Console()
        self.t0 = time.monotonic()
        self.live = Live(view(name, {}), console=self.console, auto_refresh=False,
                         transient=False)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def update(self, figures: dict[str, dict[str, Any]]) -> None:
        title = f"{self.name} — {time.monotonic() - self.t0:.0f} s (Ctrl-C stops in order)"
        self.live.update(view(title, figures), refresh=True)
