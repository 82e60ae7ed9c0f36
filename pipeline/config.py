"""YAML graph files -> `GraphSpec`, with the file and line of everything kept for error messages.

Every error a user can make in a graph file is raised as `ConfigError` whose text starts with
``file:line:`` and names the node and field involved, so ``neuroflow validate`` can print it as is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

POLICIES = ("realtime", "lossless")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(ValueError):
    """A graph file that cannot be run; the message starts with ``file:line:``."""


class LineDict(dict):
    """A YAML mapping that remembers the line of itself and of each key."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line = 0
        self.key_lines: dict[str, int] = {}

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    """A YAML sequence that remembers the line of itself and of each item."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.line = 0
        self.item_lines: list[int] = []


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:  # type: ignore[override]
        out = LineDict()
        out.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise ConfigError(f"{self.name}:{key_node.start_mark.line + 1}: a key must be a "
                                  f"plain name, got {type(key).__name__}")
            if key in out:
                raise ConfigError(f"{self.name}:{key_node.start_mark.line + 1}: duplicate key "
                                  f"{key!r} (first on line {out.key_lines[key]})")
            out[key] = self.construct_object(value_node, deep=True)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> LineList:  # type: ignore[override]
        out = LineList(self.construct_object(child, deep=True) for child in node.value)
        out.line = node.start_mark.line + 1
        out.item_lines = [child.start_mark.line + 1 for child in node.value]
        return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _Loader.construct_sequence)


class SupervisorSettings(BaseModel):
    """How the supervisor treats failing workers (the ``supervisor:`` block of a graph)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_restarts: int = Field(5, ge=0, description="restarts in a row (no stable run between) "
                                                   "before a group has failed for good")
    stable_after: float = Field(10.0, gt=0, description="a worker up this long (s) before it "
                                                        "crashed starts its back-off afresh")
    backoff: float = Field(0.1, gt=0, description="first restart delay (s), doubled each time")
    backoff_max: float = Field(5.0, gt=0, description="longest restart delay (s)")
    heartbeat_timeout: float = Field(5.0, gt=0, description="silence (s) after which a worker is killed")
    drain_timeout: float = Field(10.0, gt=0, description="time (s) allowed for an ordered shutdown")


class HostSpec(BaseModel):
    """One machine of a multi-host graph (the ``hosts:`` block)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    address: str = Field("127.0.0.1", description="address the other hosts connect to")
    bind: str | None = Field(None, description="address to bind (default: address)")
    port: int = Field(7300, ge=1, le=65535, description="first TCP port for edges into this host")


@dataclass
class NodeSpec:
    name: str
    type: str
    params: dict[str, Any]
    host: str | None
    line: int
    param_lines: dict[str, int]


@dataclass
class EdgeSpec:
    src: str
    src_port: str | None
    dst: str
    dst_port: str | None
    policy: str
    queue: int
    line: int


@dataclass
class GraphSpec:
    """A graph file, parsed and checked for shape (not yet resolved against node classes)."""

    path: str
    name: str
    nodes: dict[str, NodeSpec]
    edges: list[EdgeSpec]
    groups: dict[str, list[str]]
    group_hosts: dict[str, str]
    group_lines: dict[str, int]
    hosts: dict[str, HostSpec]
    keys: Path | None
    supervisor: SupervisorSettings
    lsl_config: Path | None = None
    line_of_top: dict[str, int] = field(default_factory=dict)

    def where(self, line: int) -> str:
        return f"{self.path}:{line}"


_TOP_KEYS = {"name", "nodes", "edges", "groups", "hosts", "keys", "supervisor", "lsl_config"}
_EDGE_KEYS = {"chain", "policy", "queue"}
DEFAULT_QUEUE = 64


def load(path: str | Path, sets: list[str] | None = None) -> GraphSpec:
    """Parse a graph file; ``sets`` are ``node.param=value`` overrides (values parsed as YAML)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read graph file: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return loads(text, str(path), sets, base_dir=path.parent)


def loads(text: str, name: str = "<graph>", sets: list[str] | None = None,
          base_dir: Path | None = None) -> GraphSpec:
    """Parse graph YAML ``text`` (``name`` is used in messages as the file name)."""
    try:
        loader = _Loader(text)
        loader.name = name
        try:
            doc = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else 0
        raise ConfigError(f"{name}:{line}: YAML syntax error: {e.problem}") from None
    except yaml.YAMLError as e:  # e.g. a control character (ReaderError)
        raise ConfigError(f"{name}: YAML error: {e}") from None
    if not isinstance(doc, LineDict):
        raise ConfigError(f"{name}:1: a graph file must be a mapping with 'nodes' and 'edges'")
    where = lambda line: f"{name}:{line}"  # noqa: E731
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"{where(doc.line_of(key))}: unknown top-level key {key!r}; "
                          f"allowed: {', '.join(sorted(_TOP_KEYS))}")
    nodes = _load_nodes(doc, where)
    for item in sets or []:
        _apply_set(item, nodes)
    edges = _load_edges(doc, where)
    hosts = _load_model_map(doc, "hosts", HostSpec, where)
    groups, group_hosts, group_lines = _load_groups(doc, nodes, hosts, where)
    supervisor = _load_model(doc.get("supervisor") or LineDict(), SupervisorSettings,
                             where, "supervisor", doc.line_of("supervisor"))
    keys = doc.get("keys")
    if keys is not None and not isinstance(keys, str):
        raise ConfigError(f"{where(doc.line_of('keys'))}: 'keys' must be a directory path")
    lsl_config = doc.get("lsl_config")
    if lsl_config is not None:
        if not isinstance(lsl_config, str):
            raise ConfigError(f"{where(doc.line_of('lsl_config'))}: 'lsl_config' must be the path "
                              f"of a liblsl configuration file")
        lsl_config = (base_dir or Path(".")) / lsl_config
        if not lsl_config.is_file():
            raise ConfigError(f"{where(doc.line_of('lsl_config'))}: lsl_config: {lsl_config}: "
                              f"no such file")
    graph_name = doc.get("name", Path(name).stem)
    if not isinstance(graph_name, str):
        raise ConfigError(f"{where(doc.line_of('name'))}: 'name' must be a string")
    return GraphSpec(
        path=name, name=graph_name, nodes=nodes, edges=edges, groups=groups,
        group_hosts=group_hosts, group_lines=group_lines, hosts=hosts,
        keys=(base_dir or Path(".")) / keys if keys else None, supervisor=supervisor,
        lsl_config=lsl_config, line_of_top=dict(doc.key_lines))


def _load_nodes(doc: LineDict, where) -> dict[str, NodeSpec]:
    raw = doc.get("nodes")
    if not isinstance(raw, LineDict) or not raw:
        raise ConfigError(f"{where(doc.line_of('nodes'))}: 'nodes' must be a non-empty mapping "
                          f"of name -> {{type: ..., params...}}")
    nodes = {}
    for name, body in raw.items():
        line = raw.line_of(name)
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{where(line)}: node name {name!r} must be an identifier "
                              f"(letters, digits, _)")
        if isinstance(body, str):  # shorthand: `out: console`
            body = LineDict(type=body)
            body.line = line
        if not isinstance(body, LineDict) or "type" not in body:
            raise ConfigError(f"{where(line)}: node {name!r}: missing field 'type' "
                              f"(a registered short name or 'package.module:Class')")
        params = {k: v for k, v in body.items() if k not in ("type", "host")}
        host = body.get("host")
        nodes[name] = NodeSpec(name, str(body["type"]), params, host, line,
                               {k: body.line_of(k) for k in body})
    return nodes


def _apply_set(item: str, nodes: dict[str, NodeSpec]) -> None:
    """``node.param=value`` overrides one parameter; ``node={type: ..., ...}`` replaces the whole
    node (another type, e.g. a file replay for a synthetic headset), keeping its name and edges."""
    target, eq, value = item.partition("=")
    node, dot, param = target.partition(".")
    if not eq or (dot and not param):
        raise ConfigError(f"--set {item}: expected node.param=value or node={{type: ..., ...}}")
    if node not in nodes:
        raise ConfigError(f"--set {item}: no node {node!r}; nodes: {', '.join(nodes)}")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item}: value is not valid YAML: {e}") from None
    spec = nodes[node]
    if dot:
        spec.params[param] = parsed
        return
    if not isinstance(parsed, dict) or not isinstance(parsed.get("type"), str):
        raise ConfigError(f"--set {item}: a whole node is a mapping with a 'type'")
    spec.type = parsed.pop("type")
    spec.params = parsed
    spec.param_lines = {}


def _split_endpoint(text: str, line: int, where) -> tuple[str, str | None]:
    name, dot, port = text.strip().partition(".")
    if not _NAME.match(name) or (dot and not _NAME.match(port)):
        raise ConfigError(f"{where(line)}: bad edge endpoint {text.strip()!r}; "
                          f"expected 'node' or 'node.port'")
    return name, port or None


def _load_edges(doc: LineDict, where) -> list[EdgeSpec]:
    raw = doc.get("edges")
    if not isinstance(raw, LineList) or not raw:
        raise ConfigError(f"{where(doc.line_of('edges'))}: 'edges' must be a non-empty list of "
                          f"chains like 'a -> b -> c'")
    edges = []
    for item, line in zip(raw, raw.item_lines):
        policy, queue = "realtime", DEFAULT_QUEUE
        if isinstance(item, LineDict):
            bad = set(item) - _EDGE_KEYS
            if bad:
                raise ConfigError(f"{where(item.line_of(sorted(bad)[0]))}: unknown edge field "
                                  f"{sorted(bad)[0]!r}; allowed: chain, policy, queue")
            policy = item.get("policy", policy)
            queue = item.get("queue", queue)
            if policy not in POLICIES:
                raise ConfigError(f"{where(item.line_of('policy'))}: edge policy {policy!r} is not "
                                  f"one of {', '.join(POLICIES)}")
            if not isinstance(queue, int) or isinstance(queue, bool) or queue < 1:
                raise ConfigError(f"{where(item.line_of('queue'))}: edge queue must be an "
                                  f"integer >= 1, got {queue!r}")
            item = item.get("chain")
        if not isinstance(item, str) or "->" not in item:
            raise ConfigError(f"{where(line)}: an edge is a chain 'a -> b [-> c ...]' or a mapping "
                              f"with 'chain', got {item!r}")
        hops = [_split_endpoint(p, line, where) for p in item.split("->")]
        for i, ((src, src_port), (dst, dst_port)) in enumerate(zip(hops, hops[1:])):
            if i > 0 and src_port is not None:
                raise ConfigError(f"{where(line)}: {src}.{src_port}: name ports only at the ends "
                                  f"of a chain; write multi-port edges one per line")
            edges.append(EdgeSpec(src, src_port, dst, dst_port, policy, queue, line))
    return edges


def _load_model(body: Any, model: type[BaseModel], where, what: str, line: int) -> Any:
    if not isinstance(body, LineDict):
        raise ConfigError(f"{where(line)}: {what} must be a mapping")
    try:
        return model(**body)
    except ValidationError as e:
        err = e.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else ""
        raise ConfigError(f"{where(body.line_of(key))}: {what}: {describe_error(err, model)}") from None


def _load_model_map(doc: LineDict, key: str, model: type[BaseModel], where) -> dict[str, Any]:
    raw = doc.get(key)
    if raw is None:
        return {}
    if not isinstance(raw, LineDict):
        raise ConfigError(f"{where(doc.line_of(key))}: '{key}' must be a mapping")
    return {name: _load_model(body if body is not None else LineDict(), model, where,
                              f"{key[:-1]} {name!r}", raw.line_of(name))
            for name, body in raw.items()}


def _load_groups(doc: LineDict, nodes: dict[str, NodeSpec], hosts: dict[str, HostSpec], where):
    raw = doc.get("groups") or LineDict()
    if not isinstance(raw, LineDict):
        raise ConfigError(f"{where(doc.line_of('groups'))}: 'groups' must map a group name to a "
                          f"list of nodes (or to {{nodes: [...], host: NAME}})")
    default_host = next(iter(hosts), "local")
    groups: dict[str, list[str]] = {}
    group_hosts: dict[str, str] = {}
    group_lines: dict[str, int] = {}
    owner: dict[str, str] = {}
    for gname, body in raw.items():
        line = raw.line_of(gname)
        host = None
        if isinstance(body, LineDict):
            host, body = body.get("host"), body.get("nodes")
        if not isinstance(body, list) or not body:
            raise ConfigError(f"{where(line)}: group {gname!r} must list at least one node")
        for member in body:
            if not isinstance(member, str) or member not in nodes:
                raise ConfigError(f"{where(line)}: group {gname!r}: no node {member!r}")
            if member in owner:
                raise ConfigError(f"{where(line)}: node {member!r} is in groups {owner[member]!r} "
                                  f"and {gname!r}; a node runs in one process")
            owner[member] = gname
        groups[gname], group_lines[gname] = list(body), line
        group_hosts[gname] = host or nodes[body[0]].host or default_host
    for name, spec in nodes.items():  # an ungrouped node runs alone, in a group of its own name
        if name not in owner:
            if name in groups:
                raise ConfigError(f"{where(group_lines[name])}: group {name!r} has the name of a "
                                  f"node that is not in it")
            groups[name], group_lines[name] = [name], spec.line
            group_hosts[name] = spec.host or default_host
    for gname, members in groups.items():
        host = group_hosts[gname]
        if host not in (hosts or {"local": None}):
            raise ConfigError(f"{where(group_lines[gname])}: host {host!r} of {gname!r} is not "
                              f"under 'hosts:' ({', '.join(hosts) or 'none: one host, local'})")
        for member in members:
            if nodes[member].host not in (None, host):
                raise ConfigError(f"{where(nodes[member].line)}: node {member!r} is on host "
                                  f"{nodes[member].host!r} but its group {gname!r} is on {host!r}")
    return groups, group_hosts, group_lines


def describe_error(err: dict[str, Any], model: type[BaseModel]) -> str:
    """One pydantic error as ``field 'x': message (got ...)``, listing allowed fields for typos."""
    loc = ".".join(str(p) for p in err["loc"]) or "(params)"
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(model.model_fields) or "none"
        return f"unknown field {loc!r}; allowed: {allowed}"
    got = err.get("input")
    got_text = "" if err["type"] == "missing" else f" (got {got!r})"
    return f"field {loc!r}: {err['msg']}{got_text}"
