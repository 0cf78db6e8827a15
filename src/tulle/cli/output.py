"""Rendering command results: aligned tables for people, JSON and YAML for programs."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer
import yaml


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


OutputOption = Annotated[Format, typer.Option("-o", "--output", help="Output format")]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[["-" if c in (None, "") else str(c) for c in row]
                                         for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
             for row in cells]
    return "\n".join(lines)


WatchOption = Annotated[bool, typer.Option(
    "-w", "--watch", help="Keep watching: print again whenever the answer changes (Ctrl-C stops)")]
WATCH_INTERVAL_S = 2.0


def render(data: Any, fmt: Format, as_table: Callable[[Any], str]) -> str:
    if fmt is Format.JSON:
        return json.dumps(data, indent=2, sort_keys=False) + "\n"
    if fmt is Format.YAML:
        return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    text = as_table(data)
    return text + "\n" if text else ""


def emit(data: Any, fmt: Format, as_table: Callable[[Any], str]) -> None:
    sys.stdout.write(render(data, fmt, as_table))


def watch(show: Callable[[], str], interval_s: float = WATCH_INTERVAL_S) -> None:
    """Print ``show()`` now and again each time it changes, until Ctrl-C. A table is
    separated from the previous one by a blank line; JSON and YAML print one document each."""
    last: str | None = None
    try:
        while True:
            text = show()
            if text != last:
                if last is not None and not text.startswith(("{", "[", "---")):
                    sys.stdout.write("\n")
                sys.stdout.write(text)
                sys.stdout.flush()
                last = text
            time.sleep(interval_s)
    except KeyboardInterrupt:
        return


def age(since: float | None) -> str:
    if not since:
        return "-"
    return duration(time.time() - since)


def duration(seconds: float) -> str:
    """A rough length of time for people: 42s, 5m, 3h, 2d."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
