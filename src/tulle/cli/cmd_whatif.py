"""`tulle what-if`: what would happen to one call, step by step, without sending it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tulle.cli.output import Format, OutputOption, emit
from tulle.client import ApiClient
from tulle.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command(name="what-if")(what_if)


def what_if(
    ctx: typer.Context,
    source: Annotated[str, typer.Option("--from", help="The caller: SERVICE or "
                                                       "SERVICE/WORKLOAD")],
    to: Annotated[str, typer.Option("--to", help="The URL it calls: http://HOST/PATH?QUERY")],
    method: Annotated[str, typer.Option("--method", "-X", help="HTTP method")] = "GET",
    header: Annotated[list[str] | None, typer.Option(
        "-H", "--header", help="A request header NAME:VALUE (repeatable)")] = None,
    namespace: Annotated[str, typer.Option("-n", "--namespace",
                                           help="The caller's namespace")] = "default",
    output: OutputOption = Format.TABLE,
) -> None:
    """Evaluate one call through the config in force, on both proxies, without sending it:
    the route rule, filters, backends and weights, timeouts, retries, rate limits, faults,
    egress, and the authorization decision (dry run included).

    Example: tulle what-if --from web --to http://books/list -H x-user:alice
    """
    headers = []
    for item in header or ():
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"-H {item!r} is not NAME:VALUE", hint="for example -H x-user:alice")
        headers.append([name.strip(), value.strip()])
    result = ApiClient.from_state(ctx.obj.paths).post("/v1/whatif", {
        "from": source, "namespace": namespace, "to": to, "method": method,
        "headers": headers})
    emit(result, output, _table)


def _table(data: dict[str, Any]) -> str:
    lines = [f"what if {data['caller']} sends {data['method']} {data['path']}:"]
    width = max((len(step["step"]) for step in data["steps"]), default=0)
    for number, step in enumerate(data["steps"], start=1):
        lines.append(f"{number:>2}. {step['step']:<{width}}  {step['result']}")
        lines.extend(f"    {'':<{width}}  - {detail}" for detail in step["details"])
    lines.append(f"=> {data['outcome']}")
    return "\n".join(lines)
