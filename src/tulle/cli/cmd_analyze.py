"""`tulle analyze`: analyzers over resource files (no control plane needed), the live mesh,
or files overlaid on the live mesh as if applied. Exit 1 when a message that is not
suppressed is at or above --failure-threshold."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from tulle.cli.messages import render_message
from tulle.cli.output import Format, OutputOption, emit

DEFAULT_WINDOW = "1m"


class Threshold(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def register(app: typer.Typer) -> None:
    app.command()(analyze)


def analyze(
    ctx: typer.Context,
    files: Annotated[list[str] | None, typer.Option(
        "-f", "--filename", help="A YAML/JSON file, a directory of them, or - for stdin")
    ] = None,
    live: Annotated[bool, typer.Option(
        "--live", help="Analyze the live mesh (the default without -f); with -f, the files "
                       "as if applied to it")] = False,
    suppress: Annotated[list[str] | None, typer.Option(
        "--suppress", help="Hide a message: CODE=KIND/NAME or CODE=KIND/NAMESPACE/NAME "
                           "(NAME may be *); repeatable")] = None,
    failure_threshold: Annotated[Threshold, typer.Option(
        "--failure-threshold", help="Exit 1 when a message is at or above this level")
    ] = Threshold.ERROR,
    window: Annotated[str, typer.Option(
        "--window", "-w", help="Telemetry to judge traffic by (live): 10s to 15m")
    ] = DEFAULT_WINDOW,
    output: OutputOption = Format.TABLE,
) -> None:
    """Find configuration that is wrong or will not do what was meant, with stable codes."""
    from tulle.analysis.codes import Level
    from tulle.analysis.filters import fails, parse_suppression, unsuppressed

    suppressions = [parse_suppression(item) for item in suppress or ()]
    result, mode = _result(ctx, files or [], live or not files, window)
    shown = unsuppressed(result.messages, suppressions)
    threshold = Level.parse(failure_threshold.value)
    failed = fails(shown, threshold)
    view = {"mode": mode, "messages": [m.to_dict() for m in shown],
            "suppressed": len(result.messages) - len(shown), "ran": list(result.ran),
            "skipped": [s.to_dict() for s in result.skipped],
            "failureThreshold": failure_threshold.value, "failed": failed}
    emit(view, output, render)
    if failed:
        raise typer.Exit(1)


def _result(ctx: typer.Context, files: list[str], live: bool, window: str) -> tuple[Any, str]:
    from tulle.analysis.engine import AnalysisResult

    documents: list[dict[str, Any]] = []
    if files:
        from tulle.cli.loader import load_documents

        documents = load_documents(files)
    if not live:
        from tulle.analysis.run import run_analysis
        from tulle.model.parse import Document

        return run_analysis([Document(d["source"], d["manifest"]) for d in documents]), \
            "files"
    from tulle.client import ApiClient

    seconds = _seconds(window)
    data = ApiClient.from_state(ctx.obj.paths).post(
        "/v1/analyze", {"documents": documents, "windowSeconds": seconds})
    return AnalysisResult.from_dict(data), str(data.get("mode", "live"))


def _seconds(window: str) -> float:
    from tulle.errors import UsageError
    from tulle.model.durations import parse_duration

    seconds = parse_duration(window)
    if seconds is None or not 1 <= seconds <= 900:
        raise UsageError(f"--window must be a duration from 1s to 15m, got {window!r}",
                         hint="for example --window 30s or --window 5m")
    return seconds


_WHAT = {"files": "the files", "live": "the live mesh",
         "files+live": "the files as if applied to the live mesh"}


def render(view: dict[str, Any]) -> str:
    lines: list[str] = []
    for m in view["messages"]:
        lines += [*render_message(m), ""]
    counts: dict[str, int] = {}
    for m in view["messages"]:
        counts[m["level"]] = counts.get(m["level"], 0) + 1
    what = _WHAT.get(view["mode"], view["mode"])
    if view["messages"]:
        parts = ", ".join(f"{n} {level}{'s' if n != 1 else ''}" for level, n in
                          sorted(counts.items(), key=lambda item: _ORDER[item[0]]))
        summary = f"Analyzed {what}: {parts}"
    else:
        summary = f"Analyzed {what}: no problems found"
    if view["suppressed"]:
        summary += f" ({view['suppressed']} suppressed)"
    lines.append(summary + f"; {len(view['ran'])} analyzers ran.")
    for skipped in view["skipped"]:
        lines.append(f"Skipped {skipped['analyzer']}: {skipped['reason']}.")
    if view["failed"]:
        lines.append(f"Failed: a message is at or above --failure-threshold "
                     f"{view['failureThreshold']}.")
    return "\n".join(lines)


_ORDER = {"error": 0, "warning": 1, "info": 2}
