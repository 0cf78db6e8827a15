"""`tulle rollout status|pause|resume|abort`: where each Rollout is, and control over it."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from tulle.cli.cmd_telemetry import NamespaceOption, View, ViewOption, _get, _show
from tulle.cli.output import WatchOption, duration, table
from tulle.client import ApiClient
from tulle.errors import NotFoundError

rollout = typer.Typer(help="Canary rollouts: where each one is, and pause, resume or abort.",
                      no_args_is_help=True)

NameArgument = Annotated[str, typer.Argument(help="The Rollout")]
ControlNamespace = Annotated[str, typer.Option("-n", "--namespace")]


def register(app: typer.Typer) -> None:
    app.add_typer(rollout, name="rollout")


@rollout.command()
def status(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="One Rollout")] = None,
    namespace: NamespaceOption = None,
    output: ViewOption = View.TABLE,
    watch_: WatchOption = False,
) -> None:
    """Each Rollout's phase, step and weight, the analysis of the step so far, and (for one
    rollout, or with -o wide) every move with the numbers that decided it."""
    def fetch() -> dict[str, Any]:
        data = _get(ctx, "/v1/rollouts", namespace=namespace, name=name)
        if name is not None and not data["rollouts"]:
            raise NotFoundError(f"no Rollout {name}" + (f" in namespace {namespace}"
                                                        if namespace else ""),
                                hint="list them with `tulle rollout status`")
        return data
    _show(fetch, output, lambda data, wide: render(data, wide or name is not None), watch_)


def _control(ctx: typer.Context, name: str, namespace: str, action: str, output: View) -> None:
    row = ApiClient.from_state(ctx.obj.paths).post(
        f"/v1/rollouts/{namespace}/{name}/{action}", {})
    if output is View.JSON:
        sys.stdout.write(json.dumps(row, indent=2) + "\n")
    else:
        sys.stdout.write(f"rollout {namespace}/{name}: {row['phase']}: {row['message']}\n")


@rollout.command()
def pause(ctx: typer.Context, name: NameArgument, namespace: ControlNamespace = "default",
          output: ViewOption = View.TABLE) -> None:
    """Hold the rollout at its step: weights stay, nothing is promoted or rolled back."""
    _control(ctx, name, namespace, "pause", output)


@rollout.command()
def resume(ctx: typer.Context, name: NameArgument, namespace: ControlNamespace = "default",
           output: ViewOption = View.TABLE) -> None:
    """Go on: a paused rollout from its step (the pause counts again); a stopped one takes
    its route back at its weight; a rolled back or aborted one starts again at step 1."""
    _control(ctx, name, namespace, "resume", output)


@rollout.command()
def abort(ctx: typer.Context, name: NameArgument, namespace: ControlNamespace = "default",
          output: ViewOption = View.TABLE) -> None:
    """Send every request to stable now and end the rollout."""
    _control(ctx, name, namespace, "abort", output)


def _analysis(row: dict[str, Any]) -> str:
    analysis = row.get("analysis")
    if not analysis:
        return "-"
    return f"{analysis['outcome']}: {analysis['reason']}"


def render(data: dict[str, Any], wide: bool) -> str:
    rows = data["rollouts"]
    if not rows:
        return "no Rollouts: apply one (docs/rollouts.md)"
    headers = ["NAMESPACE", "NAME", "SERVICE", "STABLE", "CANARY", "PHASE", "STEP", "WEIGHT",
               "PAUSE LEFT", "ANALYSIS"]
    lines = [[r["namespace"], r["name"], r["service"], r["stable"], r["canary"], r["phase"],
              f"{r['step']}/{r['steps']}" if r["step"] else f"-/{r['steps']}",
              f"{r['weight']}%",
              "-" if r["pauseLeftSeconds"] is None else duration(r["pauseLeftSeconds"]),
              _analysis(r)] for r in rows]
    text = table(headers, lines)
    for r in rows:
        text += f"\n\n{r['namespace']}/{r['name']}: {r['message'] or r['phase']}"
        if wide:
            text += "\n" + _moves(r)
    return text


def _moves(row: dict[str, Any]) -> str:
    if not row["moves"]:
        return "  no moves yet"
    lines = []
    for move in row["moves"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(move["at"]))
        lines.append(f"  {when}  {move['phase']:<11} {move['weight']:>3}%  {move['reason']}")
    return "\n".join(lines)
