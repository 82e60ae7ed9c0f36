"""From a `GraphSpec` to a checked graph: node classes, validated params, resolved ports, no cycles,
stream infos propagated through every node (``setup``), and a placement of every edge.

Everything here runs before any process starts, so `neuroflow validate` catches every mismatch
with the file, the line, the node and the port (DESIGN.md §2, STYLE.md: NIR's ``check_types``).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from pipeline.config import ConfigError, GraphSpec, describe_error
from pipeline.info import StreamInfo, StreamMismatch
from pipeline.node import Node, ParamError
from pipeline.registry import UnknownNodeType, resolve


@dataclass
class Edge:
    """One resolved connection ``src.src_port -> dst.dst_port``."""

    id: int
    src: str
    src_port: str
    dst: str
    dst_port: str
    policy: str
    queue: int
    line: int

    @property
    def label(self) -> str:
        return f"{self.src}.{self.src_port} -> {self.dst}.{self.dst_port}"


@dataclass
class Graph:
    """A validated graph: node instances set up, infos known for every port, in topological order."""

    spec: GraphSpec
    nodes: dict[str, Node]
    edges: list[Edge]
    order: list[str]
    inputs: dict[str, dict[str, StreamInfo]]
    outputs: dict[str, dict[str, StreamInfo]]
    group_of: dict[str, str]

    def host_of(self, node: str) -> str:
        return self.spec.group_hosts[self.group_of[node]]


def build(spec: GraphSpec) -> Graph:
    """Resolve, check and set up every node of ``spec``.

    Raises
    ------
    ConfigError
        ``file:line: ...`` for unknown types, bad params, bad ports, cycles, stream mismatches.
    """
    where = spec.where
    classes: dict[str, type[Node]] = {}
    params: dict[str, Any] = {}
    for name, ns in spec.nodes.items():
        try:
            cls = resolve(ns.type)
        except UnknownNodeType as e:
            raise ConfigError(f"{where(ns.param_lines.get('type', ns.line))}: node {name!r}: {e}") from None
        try:
            params[name] = cls.Params(**ns.params)
        except ValidationError as e:
            err = e.errors()[0]
            key = str(err["loc"][0]) if err["loc"] else ""
            raise ConfigError(f"{where(ns.param_lines.get(key, ns.line))}: node {name!r} "
                              f"({ns.type}): {describe_error(err, cls.Params)}") from None
        classes[name] = cls
    edges = _resolve_edges(spec, classes)
    order = _topological_order(spec, edges)
    group_of = {m: g for g, members in spec.groups.items() for m in members}
    host = {n: spec.group_hosts[g] for n, g in group_of.items()}
    crossing = [e for e in edges if host[e.src] != host[e.dst]]
    if crossing and spec.keys is None:
        raise ConfigError(f"{where(spec.line_of_top.get('hosts', 1))}: edge {crossing[0].label} "
                          f"crosses hosts: give 'keys:' (a folder made by `neuroflow keys`)")
    nodes: dict[str, Node] = {}
    inputs: dict[str, dict[str, StreamInfo]] = {}
    outputs: dict[str, dict[str, StreamInfo]] = {}
    feeding = {(e.dst, e.dst_port): e for e in edges}
    for name in order:
        cls, ns = classes[name], spec.nodes[name]
        node = cls(params[name], name)
        info_in = {}
        for port in cls.inputs:
            edge = feeding.get((name, port))
            if edge is None:  # an optional input left unconnected
                continue
            info = outputs[edge.src][edge.src_port]
            allowed = cls.accepts.get(port)
            if allowed and info.kind not in allowed:
                raise ConfigError(
                    f"{where(edge.line)}: edge {edge.label}: {name} ({ns.type}) input {port!r} "
                    f"accepts {', '.join(k.value for k in allowed)}, but {edge.src}.{edge.src_port} "
                    f"produces {info.describe()}")
            info_in[port] = info
        try:
            info_out = node.setup(info_in)
        except StreamMismatch as e:
            ends = ", ".join(f"{feeding[(name, p)].label} ({i.describe()})" for p, i in info_in.items())
            raise ConfigError(f"{where(ns.line)}: node {name!r} ({ns.type}) cannot take {ends}: {e}") from None
        except ParamError as e:
            raise ConfigError(f"{where(ns.param_lines.get(e.field, ns.line))}: node {name!r} "
                              f"({ns.type}): field {e.field!r}: {e}") from None
        except ConfigError:
            raise
        except Exception as e:
            tb = traceback.format_exc(limit=-3)
            raise ConfigError(f"{where(ns.line)}: node {name!r} ({ns.type}): setup failed: "
                              f"{type(e).__name__}: {e}\n{tb}") from None
        missing = set(cls.outputs) - set(info_out or {})
        if missing:
            raise ConfigError(f"{where(ns.line)}: node {name!r} ({ns.type}): setup() returned no "
                              f"stream info for output(s) {', '.join(sorted(missing))}")
        nodes[name], inputs[name], outputs[name] = node, info_in, dict(info_out)
    return Graph(spec, nodes, edges, order, inputs, outputs, group_of)


def _default_port(ports: tuple[str, ...], node: str, kind: str, line: int, where) -> str:
    """The port a bare node name means: its only one, else its main one (``in`` / ``out``)."""
    if len(ports) == 1:
        return ports[0]
    main = "in" if kind == "input" else "out"
    if main in ports:
        return main
    if not ports:
        raise ConfigError(f"{where(line)}: node {node!r} has no {kind} ports")
    raise ConfigError(f"{where(line)}: node {node!r} has {kind} ports {', '.join(ports)}; "
                      f"name one as {node}.{ports[0]}")


def _resolve_edges(spec: GraphSpec, classes: dict[str, type[Node]]) -> list[Edge]:
    where = spec.where
    edges: list[Edge] = []
    fed: dict[tuple[str, str], Edge] = {}
    for es in spec.edges:
        for end in (es.src, es.dst):
            if end not in classes:
                raise ConfigError(f"{where(es.line)}: edge {es.src} -> {es.dst}: no node {end!r}; "
                                  f"nodes: {', '.join(classes)}")
        src_cls, dst_cls = classes[es.src], classes[es.dst]
        src_port = es.src_port or _default_port(src_cls.outputs, es.src, "output", es.line, where)
        dst_port = es.dst_port or _default_port(dst_cls.inputs, es.dst, "input", es.line, where)
        if src_port not in src_cls.outputs:
            raise ConfigError(f"{where(es.line)}: edge {es.src}.{src_port} -> {es.dst}.{dst_port}: "
                              f"{es.src} ({spec.nodes[es.src].type}) has no output {src_port!r}; "
                              f"outputs: {', '.join(src_cls.outputs) or 'none'}")
        if dst_port not in dst_cls.inputs:
            raise ConfigError(f"{where(es.line)}: edge {es.src}.{src_port} -> {es.dst}.{dst_port}: "
                              f"{es.dst} ({spec.nodes[es.dst].type}) has no input {dst_port!r}; "
                              f"inputs: {', '.join(dst_cls.inputs) or 'none'}")
        edge = Edge(len(edges), es.src, src_port, es.dst, dst_port, es.policy, es.queue, es.line)
        if (es.dst, dst_port) in fed:
            raise ConfigError(f"{where(es.line)}: edge {edge.label}: input {es.dst}.{dst_port} is "
                              f"already fed by {fed[(es.dst, dst_port)].label} (line "
                              f"{fed[(es.dst, dst_port)].line}); merge streams with a node")
        fed[(es.dst, dst_port)] = edge
        edges.append(edge)
    for name, cls in classes.items():
        for port in cls.inputs:
            if (name, port) not in fed and port not in cls.optional:
                raise ConfigError(f"{where(spec.nodes[name].line)}: node {name!r} "
                                  f"({spec.nodes[name].type}): input {port!r} is not connected")
    return edges


def _topological_order(spec: GraphSpec, edges: list[Edge]) -> list[str]:
    succ: dict[str, list[Edge]] = {n: [] for n in spec.nodes}
    for e in edges:
        succ[e.src].append(e)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    order: list[str] = []
    path: list[Edge] = []

    def visit(n: str) -> None:
        state[n] = 1
        for e in succ[n]:
            if state.get(e.dst) == 1:
                start = next((i for i, p in enumerate(path) if p.src == e.dst), len(path))
                cycle = " -> ".join([p.src for p in path[start:]] + [e.src, e.dst])
                raise ConfigError(f"{spec.where(e.line)}: cycle {cycle}; a graph must be acyclic")
            if e.dst not in state:
                path.append(e)
                visit(e.dst)
                path.pop()
        state[n] = 2
        order.append(n)

    for n in spec.nodes:
        if n not in state:
            visit(n)
    return order[::-1]
