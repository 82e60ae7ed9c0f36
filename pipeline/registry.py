"""Finds node classes by the YAML ``type``: short names from the ``neuroflow.nodes`` entry point
(built-ins are registered there too, so ``pipeline`` never imports a concrete node) or a
``package.module:Class`` path for a plugin that is importable but not installed as one.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points

from pipeline.node import Node

ENTRY_POINT_GROUP = "neuroflow.nodes"


class UnknownNodeType(LookupError):
    """The ``type`` names no registered node and no importable ``module:Class``."""


@lru_cache(maxsize=1)
def registered() -> dict[str, str]:
    """Short name -> ``module:Class`` for every node type installed through the entry point."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _import(target: str) -> type:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


def resolve(type_name: str) -> type[Node]:
    """The node class for ``type_name``.

    Raises
    ------
    UnknownNodeType
        With the registered names when the type is unknown, or the import error of a plugin path.
    """
    target = registered().get(type_name)
    if target is None:
        if ":" not in type_name:
            names = ", ".join(sorted(registered()))
            raise UnknownNodeType(f"unknown node type {type_name!r}; registered types: {names} "
                                  f"(or give a plugin as 'package.module:Class')")
        target = type_name
    try:
        cls = _import(target)
    except (ImportError, AttributeError, ValueError) as e:
        raise UnknownNodeType(f"cannot import node type {type_name!r} ({target}): {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise UnknownNodeType(f"{target} is not a neuroflow Node subclass")
    return cls
