"""`tulle token create|list|revoke`: join tokens that let a workload on another host in."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from tulle.cli.output import Format, OutputOption, duration, emit, table
from tulle.client import ApiClient
from tulle.errors import UsageError
from tulle.model.durations import DURATION_HINT, parse_duration

token = typer.Typer(help="Join tokens: let one workload on another host join the mesh.",
                    no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(token, name="token")


@token.command()
def create(
    ctx: typer.Context,
    service: Annotated[str, typer.Option(help="The service the joining workload is an "
                                              "instance of")],
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    ttl: Annotated[str, typer.Option(help="How long the token can be used: 15m, 1h, 2d")
                   ] = "1h",
    output: OutputOption = Format.TABLE,
) -> None:
    """Make a token for one instance of SERVICE on another host: it works once, for that
    service only, until it expires or is revoked. Prints the token, the CA fingerprint the
    agent pins, and the `tulle run` command to use on the other host."""
    seconds = parse_duration(ttl)
    if seconds is None:
        raise UsageError(f"--ttl {ttl!r} is not a duration", hint=DURATION_HINT)
    result = ApiClient.from_state(ctx.obj.paths).post(
        "/v1/join-tokens", {"service": service, "namespace": namespace, "ttlSeconds": seconds})
    emit(result, output, _created_text)


@token.command("list")
def list_tokens(ctx: typer.Context, output: OutputOption = Format.TABLE) -> None:
    """Every join token: its id, service, when it expires, and whether it was used."""
    emit(ApiClient.from_state(ctx.obj.paths).get("/v1/join-tokens"), output, _list_text)


@token.command()
def revoke(
    ctx: typer.Context,
    ident: Annotated[str, typer.Argument(metavar="ID", help="The token's id (`token list`)")],
    output: OutputOption = Format.TABLE,
) -> None:
    """Stop a join token from working. An agent that already joined with it keeps its
    identity."""
    result = ApiClient.from_state(ctx.obj.paths).post(f"/v1/join-tokens/{ident}/revoke", {})
    emit(result, output, lambda r: f"join token {r['id']}: {r['state']}\n")


def _created_text(result: dict[str, Any]) -> str:
    left = result["expiresAt"] - time.time()
    return (f"join token {result['id']} for service {result['service']} in namespace "
            f"{result['namespace']}, valid {duration(left)}, once:\n\n"
            f"  {result['token']}\n\n"
            f"CA fingerprint: {result['caFingerprint']}\n"
            f"control plane:  {result['controlPlane']}\n\n"
            f"On the other host:\n  {result['command']}\n")


def _list_text(result: dict[str, Any]) -> str:
    now = time.time()
    rows = [(t["id"], t["service"], t["namespace"], t["state"],
             duration(t["expiresAt"] - now) if t["state"] == "valid" else "",
             t.get("usedBy") or "") for t in result["tokens"]]
    if not rows:
        return "no join tokens (make one with `tulle token create --service NAME`)\n"
    return table(["ID", "SERVICE", "NAMESPACE", "STATE", "EXPIRES IN", "USED BY"], rows) + "\n"
