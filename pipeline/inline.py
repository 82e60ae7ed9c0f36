"""Run a validated graph inside the calling process, with no workers, sockets or threads.

Why: a decoder's training data and its offline scores must come out of the very nodes a live
graph runs (the same params, the same ``setup`` checks, the same state carried across chunks),
or an offline accuracy says nothing about the live one. A benchmark that scores a model on 16
subjects builds each subject's graph from the same YAML a user would run and drains it here in
seconds, instead of starting processes for each.

Semantics are a fused group's (`pipeline.worker`): nodes call each other directly, depth first,
in emission order; every output frame is restamped with its port's sequence number; when all of
a node's inputs have ended, its ``close()`` runs and what it yields goes downstream before the
end travels on. Sources are drained one after another in graph order (``read()`` until ``None``):
give them ``speed: max``, and do not join two sources' streams in one node where their
interleaving matters. Unlike a worker, a node that raises stops the run (offline, an error is a
result to look at, not a frame to skip).

``taps`` observe output ports: ``{("clf", "out"): callback}`` calls ``callback(frame)`` for each
frame ``clf`` emits on ``out``, whether or not an edge consumes it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import yaml

from pipeline.config import loads
from pipeline.frame import Frame
from pipeline.graph import Graph, build
from pipeline.node import Source

Tap = Callable[[Frame], None]


class InlineRun:
    """The nodes of ``graph``, wired as its edges say, driven from this thread."""

    def __init__(self, graph: Graph, taps: Mapping[tuple[str, str], Tap] | None = None) -> None:
        self.graph = graph
        self.taps = dict(taps or {})
        for node, port in self.taps:
            if node not in graph.nodes or port not in graph.nodes[node].outputs:
                raise KeyError(f"tap {node}.{port}: no such output port in the graph")
        self.routes: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for e in graph.edges:
            self.routes.setdefault((e.src, e.src_port), []).append((e.dst, e.dst_port))
        self.seq: dict[tuple[str, str], int] = {}
        self.open_inputs = {name: set(graph.inputs[name]) for name in graph.order}
        self.finished: set[str] = set()

    def run(self) -> None:
        """Open every node, drain every source, and close everything in order."""
        nodes = self.graph.nodes
        for node in nodes.values():
            node.open()
        for name in self.graph.order:
            node = nodes[name]
            if not isinstance(node, Source):
                continue
            while (outs := node.read()) is not None:
                for port, frame in outs:
                    self.emit(name, port, frame)
            self.finish(name)
        for name in self.graph.order:  # nodes no source reaches
            self.finish(name)

    def emit(self, name: str, port: str, frame: Frame) -> None:
        key = (name, port)
        seq = self.seq.get(key, 0)
        self.seq[key] = seq + 1
        frame = frame.with_seq(seq)
        tap = self.taps.get(key)
        if tap is not None:
            tap(frame)
        nodes = self.graph.nodes
        for dst, dst_port in self.routes.get(key, ()):
            for out_port, out in nodes[dst].process(dst_port, frame):
                self.emit(dst, out_port, out)

    def finish(self, name: str) -> None:
        if name in self.finished:
            return
        self.finished.add(name)
        node = self.graph.nodes[name]
        for port, frame in node.close():
            self.emit(name, port, frame)
        for port in node.outputs:
            for dst, dst_port in self.routes.get((name, port), ()):
                self.open_inputs[dst].discard(dst_port)
                if not self.open_inputs[dst]:
                    self.finish(dst)


def collect(doc: Mapping[str, Any], taps: list[tuple[str, str]], name: str = "<inline>"
            ) -> dict[tuple[str, str], list[Frame]]:
    """Validate a graph given as the mapping its YAML file would hold (exactly as `neuroflow
    validate` does, errors naming ``name``), drain it here, and return the frames each tapped
    output port emitted."""
    graph = build(loads(yaml.safe_dump(dict(doc), sort_keys=False), name))
    seen: dict[tuple[str, str], list[Frame]] = {t: [] for t in taps}
    InlineRun(graph, {t: seen[t].append for t in taps}).run()
    return seen
