"""tulle's Grafana dashboards (dashboards/grafana/) and the PromQL in them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "dashboards" / "grafana").glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def expressions(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and query variable."""
    for panel in board["panels"]:
        for target in panel.get("targets", ()):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            inner = re.fullmatch(r"label_values\((.+),\s*([a-z_]+)\)", query)
            assert inner, f"variable {variable['name']}: {query}"
            yield f"variable {variable['name']}", inner.group(1)
            yield (f"variable {variable['name']}",
                   f"sum by ({inner.group(2)}) ({inner.group(1)})")


def substitute(expr: str, variables: dict[str, str]) -> str:
    """The PromQL Grafana sends, with its ``$name`` and ``${name}`` variables set."""
    def value(match: re.Match[str]) -> str:
        return variables[match.group(1) or match.group(2)]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)
