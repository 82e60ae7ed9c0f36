"""``neuroflow`` command line: run, validate, nodes, graph, keys.

Exit codes: 0 success; 1 the graph ran but a node failed for good (or a worker had to be killed);
2 the graph file or the command line is wrong (the message names the file, line, node and field).
"""

from __future__ import annotations

import argparse
import os
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from pipeline import config, graph, plan, registry
from pipeline.config import ConfigError
from pipeline.transport import CurveKeys

EXIT_CONFIG = 2


def _build(args: argparse.Namespace) -> graph.Graph:
    spec = config.load(args.graph, args.set)
    if spec.lsl_config is not None and "LSLAPICFG" not in os.environ:
        # before any LSL node is imported; the workers inherit it. A machine-wide setting wins.
        os.environ["LSLAPICFG"] = str(spec.lsl_config.resolve())
    return graph.build(spec)


def cmd_validate(args: argparse.Namespace) -> int:
    g = _build(args)
    print(f"{args.graph}: ok — graph {g.spec.name!r}: {len(g.nodes)} nodes, {len(g.edges)} edges, "
          f"{len(g.spec.groups)} process groups")
    for name in g.order:
        for port, info in g.outputs[name].items():
            print(f"  {name}.{port}: {info.describe()}")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    g = _build(args)
    p = plan.make_plan(g, Path("/tmp/nf-RUN"))  # each run makes its own private folder
    if args.json:
        print(json.dumps(p.to_json(), indent=2))
        return 0
    print(f"graph {p.name!r} ({args.graph})")
    print("groups (one process each):")
    for gname, body in p.groups.items():
        print(f"  {gname} on {body['host']}: {', '.join(body['nodes'])}")
    print("nodes:")
    for name, n in p.nodes.items():
        print(f"  {name} ({n['type']}, group {n['group']})")
        for port, info in n["outputs"].items():
            print(f"    out {port}: {g.outputs[name][port].describe()}")
    print("edges:")
    for e in p.edges:
        where = e["connect"] or "in-process call"
        print(f"  {e['src']}.{e['src_port']} -> {e['dst']}.{e['dst_port']}  "
              f"[{e['policy']}, queue {e['queue']}, {e['transport']}] {where}")
    return 0


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def cmd_nodes(args: argparse.Namespace) -> int:
    names = [args.type] if args.type else sorted(registry.registered())
    for name in names:
        try:
            cls = registry.resolve(name)
        except registry.UnknownNodeType as e:
            print(f"{name}: unavailable ({e})")
            continue
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        ins = ", ".join(p + ("?" if p in cls.optional else "") for p in cls.inputs) or "-"
        outs = ", ".join(cls.outputs) or "-"
        print(f"{name}  [in: {ins}; out: {outs}]  {doc}")
        for field, info in cls.Params.model_fields.items():
            default = "required" if info.is_required() else f"default {info.get_default()!r}"
            desc = f" — {info.description}" if info.description else ""
            print(f"    {field}: {_type_name(info.annotation)}, {default}{desc}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    import zmq.auth

    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    for host in args.hosts:
        public, secret = zmq.auth.create_certificates(str(out), host)
        Path(secret).chmod(0o600)
        print(f"{host}: public {public}, secret {secret} (copy the secret to {host} only)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.live import LiveView, view
    from pipeline.supervisor import Supervisor, make_run_dir, remove_run_dir

    g = _build(args)
    hosts = list(g.spec.hosts) or ["local"]
    host = args.host or (hosts[0] if len(hosts) == 1 else None)
    if host not in hosts:
        raise ConfigError(f"{args.graph}: choose this machine's part with --host, one of: "
                          f"{', '.join(hosts)}" + (f" (got {args.host!r})" if args.host else ""))
    ends = [(g.host_of(e.src), g.host_of(e.dst)) for e in g.edges]
    if any(a != b and host in (a, b) for a, b in ends):  # CURVE edges: check the keys up front
        try:
            CurveKeys.load(g.spec.keys, host, [h for h in hosts if h != host])
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"{args.graph}: keys of host {host!r}: {e}") from None
    run_dir = make_run_dir()
    metrics = open(args.metrics, "w") if args.metrics else None
    console = Console()
    live = args.live if args.live is not None else console.is_terminal
    screen = LiveView(g.spec.name, console) if live else None
    try:
        sup = Supervisor(plan.make_plan(g, run_dir), host, run_dir, duration=args.duration,
                         metrics_file=metrics,
                         on_tick=(lambda s: screen.update(s.figures())) if screen else None)
        if screen:
            with screen:
                rc = sup.run()
                screen.update(sup.figures())  # the final counts stay on screen
        else:
            rc = sup.run()
            if not args.quiet:
                console.print(view(f"{g.spec.name}: final figures", sup.figures()))
        for msg in sup.failures:
            console.print(f"[red]failed:[/red] {msg}", markup=True, highlight=False)
        return rc
    finally:
        if metrics:
            metrics.close()
        remove_run_dir(run_dir)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neuroflow", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def graph_cmd(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.add_argument("graph", help="graph YAML file")
        sp.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="override a node parameter (value parsed as YAML), or replace a "
                             "whole node: NODE='{type: eeg_file, path: F}'; repeatable")
        return sp

    run = graph_cmd("run", "run a graph")
    run.add_argument("--duration", type=float, help="stop in order after this many seconds")
    run.add_argument("--metrics", metavar="FILE", help="write figures and events as JSON lines")
    run.add_argument("--host", help="run this host's part of a multi-host graph")
    run.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                     help="live table (default: when the output is a terminal)")
    run.add_argument("--quiet", action="store_true", help="no summary table at the end")
    run.set_defaults(func=cmd_run)
    graph_cmd("validate", "check a graph without running it").set_defaults(func=cmd_validate)
    gr = graph_cmd("graph", "print the resolved graph: groups, endpoints, stream infos")
    gr.add_argument("--json", action="store_true", help="the full plan as JSON")
    gr.set_defaults(func=cmd_graph)
    nodes = sub.add_parser("nodes", help="list node types with their parameters")
    nodes.add_argument("type", nargs="?", help="only this type")
    nodes.set_defaults(func=cmd_nodes)
    keys = sub.add_parser("keys", help="create CURVE key pairs for the hosts of a graph")
    keys.add_argument("dir", help="directory to write HOST.key and HOST.key_secret into")
    keys.add_argument("hosts", nargs="+", help="host names, as under 'hosts:'")
    keys.set_defaults(func=cmd_keys)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())

