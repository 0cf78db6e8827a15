"""Rendering check results: streamed lines for people (marked √, ‼ or a cross), one JSON
document for programs.

The JSON shape is stable (scripts and tests read it):
    {"checks": [{"id", "group", "description", "status": "ok|warning|failed|skipped",
                 "message", "hint", "docs", "details"}], "ok": bool}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tulle.checks.runner import Result, Status, exit_code

CROSS = "\u00d7"  # the multiplication sign, as `linkerd check` prints it
MARKS = {Status.OK: "√", Status.WARNING: "‼", Status.FAILED: CROSS, Status.SKIPPED: "-"}


def result_lines(result: Result) -> list[str]:
    """One result: a marked line, then for warnings and failures the hint and docs link."""
    mark = MARKS[result.status]
    if result.status is Status.OK:
        text = f"{mark} {result.check.description}"
        return [f"{text}: {result.message}" if result.message else text]
    lines = [f"{mark} {result.check.description}"]
    lines += [f"    {line}" for line in result.message.splitlines() if line.strip()]
    if result.status is Status.SKIPPED:
        return lines
    extra_hint = result.details.get("hint")
    if extra_hint and str(extra_hint) not in result.check.hint:
        lines.append(f"    hint: {extra_hint}")
    lines.append(f"    hint: {result.check.hint}")
    lines.append(f"    see: {result.check.docs}")
    return lines


class TableWriter:
    """An observer for the runner: writes each group's header once, then each result as it
    arrives, so a slow check shows where the command is."""

    def __init__(self, write: Callable[[str], None], titles: Mapping[str, str]) -> None:
        self._write = write
        self._titles = titles
        self._group: str | None = None

    def __call__(self, result: Result) -> None:
        group = result.check.group
        if group != self._group:
            title = self._titles.get(group, group)
            prefix = "" if self._group is None else "\n"
            self._write(f"{prefix}{title}\n{'-' * len(title)}\n")
            self._group = group
        self._write("\n".join(result_lines(result)) + "\n")


def summary(results: Iterable[Result], strict: bool = False) -> str:
    results = list(results)
    counts = {s: sum(1 for r in results if r.status is s) for s in Status}
    parts = [f"{counts[s]} {s}" for s in (Status.FAILED, Status.WARNING, Status.SKIPPED)
             if counts[s]]
    verdict = CROSS if exit_code(results, strict) else "√"
    details = f" ({counts[Status.OK]} ok, {', '.join(parts)})" if parts else ""
    return f"Status check results are {verdict}{details}"


def as_json(results: Iterable[Result], strict: bool = False) -> dict[str, Any]:
    results = list(results)
    return {"checks": [r.to_dict() for r in results], "ok": exit_code(results, strict) == 0}
