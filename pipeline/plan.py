"""The resolved graph handed to worker processes: what each group runs and where each edge goes.

A plan is plain JSON (no pickle): node types and validated params, the stream infos of every input
port, and for every edge its policy and, when it crosses processes, the endpoint the consumer binds
and the one the producer connects to. ``neuroflow graph`` prints it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.graph import Graph


@dataclass
class Plan:
    name: str
    order: list[str]
    groups: dict[str, dict[str, Any]]      # group -> {"host": str, "nodes": [names]}
    nodes: dict[str, dict[str, Any]]       # node -> {"type", "params", "group", "inputs", "outputs"}
    edges: list[dict[str, Any]]
    hosts: dict[str, dict[str, Any]]
    supervisor_endpoint: str
    keys_dir: Path | None
    supervisor: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["keys_dir"] = str(self.keys_dir) if self.keys_dir else None
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Plan:
        d = dict(d)
        d["keys_dir"] = Path(d["keys_dir"]) if d["keys_dir"] else None
        return cls(**d)

    def groups_on(self, host: str) -> list[str]:
        return [g for g, body in self.groups.items() if body["host"] == host]


def make_plan(graph: Graph, run_dir: Path) -> Plan:
    """Place every edge: in-process when both ends share a group, ``ipc://`` under ``run_dir``
    between groups of one host, CURVE-secured ``tcp://`` between hosts.

    TCP ports are numbered from each receiving host's ``port`` in edge order, so every host's
    supervisor derives the same plan from the same file.
    """
    spec = graph.spec
    next_port = {h: hs.port for h, hs in spec.hosts.items()}
    edges = []
    for e in graph.edges:
        src_host, dst_host = graph.host_of(e.src), graph.host_of(e.dst)
        d: dict[str, Any] = {**asdict(e), "src_host": src_host, "dst_host": dst_host,
                             "bind": None, "connect": None,
                             "curve": False}
        if graph.group_of[e.src] == graph.group_of[e.dst]:
            d["transport"] = "local"
        elif src_host == dst_host:
            d["transport"] = "ipc"
            d["bind"] = d["connect"] = f"ipc://{run_dir}/e{e.id}"
        else:
            host = spec.hosts[dst_host]
            port = next_port[dst_host]
            next_port[dst_host] += 1
            d["transport"] = "tcp"
            d["bind"] = f"tcp://{host.bind or host.address}:{port}"
            d["connect"] = f"tcp://{host.address}:{port}"
            d["curve"] = True
        edges.append(d)
    nodes = {
        name: {"type": spec.nodes[name].type,
               "params": graph.nodes[name].params.model_dump(mode="json"),
               "group": graph.group_of[name],
               "inputs": {p: i.to_dict() for p, i in graph.inputs[name].items()},
               "outputs": {p: i.to_dict() for p, i in graph.outputs[name].items()}}
        for name in graph.order
    }
    groups = {g: {"host": spec.group_hosts[g], "nodes": members} for g, members in spec.groups.items()}
    return Plan(
        name=spec.name, order=list(graph.order), groups=groups, nodes=nodes, edges=edges,
        hosts={h: hs.model_dump() for h, hs in spec.hosts.items()},
        supervisor_endpoint=f"ipc://{run_dir}/supervisor", keys_dir=spec.keys,
        supervisor=spec.supervisor.model_dump())
