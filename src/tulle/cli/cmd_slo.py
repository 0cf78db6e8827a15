"""`tulle slo`: how the mesh's ServiceLevelObjectives stand, from the control plane's windows
(its last 15 minutes): each indicator against its objective, how fast its error budget burns,
and the sidecars whose requests burn it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tulle.cli.cmd_telemetry import NamespaceOption, View, ViewOption, _get, _seconds, _show
from tulle.cli.output import WatchOption, table

NOTE = ("over the last {window}: tulle keeps 15 minutes. For compliance over each SLO's own "
        "window, load `tulle prometheus rules` into Prometheus.")


def register(app: typer.Typer) -> None:
    app.command(name="slo")(slo)


def slo(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="One ServiceLevelObjective")] = None,
    namespace: NamespaceOption = None,
    window: Annotated[str, typer.Option("--window", help="How far back: 1s to 15m")] = "15m",
    output: ViewOption = View.TABLE,
    watch_: WatchOption = False,
) -> None:
    """ServiceLevelObjectives: each indicator against its objective, and its budget's burn."""
    seconds = _seconds(window)
    _show(lambda: _get(ctx, "/v1/telemetry/slos", window=seconds, namespace=namespace,
                       name=name), output, render, watch_)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}".rstrip("0").rstrip(".") + "%"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:g}x"


def _objective(row: dict[str, Any]) -> str:
    within = f" <= {row['threshold']}" if row["threshold"] else ""
    return f"{row['objective']:g}%{within} / {row['window']}"


def _burners(row: dict[str, Any]) -> str:
    return ", ".join(f"{b['proxy']} ({b['bad']})" for b in row["burnedBy"])


def render(data: dict[str, Any], wide: bool) -> str:
    rows = data["slos"]
    if not rows:
        return "no ServiceLevelObjectives: apply one (docs/slo.md)"
    headers = ["NAMESPACE", "NAME", "TARGET", "SLI", "OBJECTIVE", "ACTUAL", "REQUESTS",
               "BUDGET LEFT", "BURN", "BURN 5M", "VERDICT"]
    if wide:
        headers.append("BURNED BY")
    lines = []
    for row in rows:
        line = [row["namespace"], row["name"], row["target"], row["sli"], _objective(row),
                _percent(row["actual"]), row["requests"], _percent(row["budgetLeft"]),
                _rate(row["burnRate"]), _rate(row["burnRateRecent"]), row["verdict"]]
        if wide:
            line.append(_burners(row))
        lines.append(line)
    minutes = f"{data['windowSeconds'] / 60:g}m"
    return table(headers, lines) + "\n\n" + NOTE.format(window=minutes)
