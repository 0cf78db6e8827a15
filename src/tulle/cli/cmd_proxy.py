"""`tulle proxy log-level` and `tulle proxy logs`: a sidecar's Envoy log, for debugging."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from tulle.cli import proxies
from tulle.cli.output import Format, OutputOption, emit, table
from tulle.client import ApiClient
from tulle.errors import UsageError

FOLLOW_INTERVAL_S = 1.0

ProxyArgument = Annotated[str, typer.Argument(help="NAME.NAMESPACE, or NAME with -n")]
NamespaceOption = Annotated[str, typer.Option("-n", "--namespace")]


def register(app: typer.Typer) -> None:
    proxy_app = typer.Typer(help="One sidecar's Envoy: log levels and logs.",
                            no_args_is_help=True)
    proxy_app.command("log-level")(log_level)
    proxy_app.command("logs")(logs)
    app.add_typer(proxy_app, name="proxy")


def log_level(
    ctx: typer.Context,
    proxy: ProxyArgument,
    levels: Annotated[list[str] | None, typer.Argument(
        help="LEVEL for every logger, or COMPONENT=LEVEL pairs; none shows the levels")] = None,
    namespace: NamespaceOption = "default",
    output: OutputOption = Format.TABLE,
) -> None:
    """Show or change the log levels of a proxy's Envoy."""
    body = level_request(levels or [])
    client = ApiClient.from_state(ctx.obj.paths)
    node = proxies.node_id(proxy, namespace)
    result = client.post(f"/v1/proxies/{node}/logging", body)
    shown = set(body.get("levels", {})) or None
    emit(result, output, lambda r: render_levels(r, shown))


def logs(
    ctx: typer.Context,
    proxy: ProxyArgument,
    tail: Annotated[int, typer.Option("--tail", min=1, max=10_000,
                                      help="How many of the last lines")] = 100,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines "
                                         "until Ctrl-C")] = False,
    namespace: NamespaceOption = "default",
    output: OutputOption = Format.TABLE,
) -> None:
    """The end of a proxy's Envoy log."""
    client = ApiClient.from_state(ctx.obj.paths)
    node = proxies.node_id(proxy, namespace)
    chunk = client.get(f"/v1/proxies/{node}/logs", {"tail": tail})
    if not follow:
        emit(chunk, output, lambda c: "\n".join(c["lines"]))
        return
    while True:
        _print_lines(chunk, output)
        time.sleep(FOLLOW_INTERVAL_S)
        chunk = client.get(f"/v1/proxies/{node}/logs", {"since": chunk["cursor"]})


def _print_lines(chunk: dict[str, Any], output: Format) -> None:
    for line in chunk["lines"]:
        text = json.dumps({"node": chunk["node"], "line": line}) if output is Format.JSON \
            else line
        sys.stdout.write(text + "\n")
    sys.stdout.flush()


# -- pure pieces ------------------------------------------------------------------------------

def level_request(arguments: list[str]) -> dict[str, Any]:
    """``[]`` -> show; ``["debug"]`` -> every logger; ``["upstream=debug", ...]`` -> some."""
    if not arguments:
        return {}
    pairs = [a for a in arguments if "=" in a]
    if not pairs:
        if len(arguments) > 1:
            raise UsageError("give one LEVEL for every logger, or COMPONENT=LEVEL pairs",
                             hint="e.g. `tulle proxy log-level web-1 debug` or "
                                  "`tulle proxy log-level web-1 upstream=debug http=info`")
        return {"level": arguments[0]}
    if len(pairs) != len(arguments):
        raise UsageError("do not mix a LEVEL with COMPONENT=LEVEL pairs",
                         hint="e.g. `upstream=debug http=info`")
    levels: dict[str, str] = {}
    for pair in pairs:
        component, _, level = pair.partition("=")
        if not component or not level:
            raise UsageError(f"{pair!r} is not COMPONENT=LEVEL", hint="e.g. upstream=debug")
        levels[component] = level
    return {"levels": levels}


def render_levels(result: dict[str, Any], only: set[str] | None = None) -> str:
    loggers: dict[str, str] = result["loggers"]
    names = sorted(n for n in loggers if only is None or n in only)
    rows = [[name, loggers[name]] for name in names]
    return f"Proxy {result['node']}\n" + table(["COMPONENT", "LEVEL"], rows)
