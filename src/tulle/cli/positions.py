"""Where each field of a YAML document is written, so that errors point at its line.

The control plane validates resources and names the offending field by its path
(``spec.rules[0].backendRefs[1].weight``) and the document by where it starts
(``books.yaml:12``). The CLI still holds the YAML it sent, so it turns that pair into the
field's own line and column (``books.yaml:27:9``). A field that is missing is placed at the
nearest enclosing field that is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

import yaml

from tulle.errors import Problem

# path -> (line, column), both 1-based
Positions = dict[str, tuple[int, int]]


def field_positions(node: yaml.Node) -> Positions:
    """Every field and list item under ``node`` (a resource's mapping), by its path."""
    out: Positions = {}
    stack: list[tuple[yaml.Node, str]] = [(node, "")]
    seen: set[int] = set()
    while stack:
        current, path = stack.pop()
        if id(current) in seen:  # an alias: its fields are where the anchor is
            continue
        seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                if not isinstance(key, yaml.ScalarNode):
                    continue
                child = f"{path}.{key.value}" if path else str(key.value)
                out.setdefault(child, (key.start_mark.line + 1, key.start_mark.column + 1))
                stack.append((value, child))
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                child = f"{path}[{index}]"
                out.setdefault(child, (item.start_mark.line + 1, item.start_mark.column + 1))
                stack.append((item, child))
    return out


def _parents(path: str) -> Iterable[str]:
    """``a.b[0].c`` -> ``a.b[0].c``, ``a.b[0]``, ``a.b``, ``a``."""
    while path:
        yield path
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""


def locate(problems: Iterable[Problem], positions: Mapping[str, Positions]) -> list[Problem]:
    """``problems`` with each source narrowed to its field's line and column, where known."""
    out = []
    for problem in problems:
        fields = positions.get(problem.source)
        where = None
        if fields is not None and problem.field:
            where = next((fields[p] for p in _parents(problem.field) if p in fields), None)
        if where is None:
            out.append(problem)
            continue
        file, _, _ = problem.source.rpartition(":")
        out.append(replace(problem, source=f"{file}:{where[0]}:{where[1]}"))
    return out
