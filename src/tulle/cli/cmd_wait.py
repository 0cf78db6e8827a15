"""`tulle wait service NAME`: block until a service can take traffic, so scripts and the
Quick start do not race a starting application."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from tulle.cli.output import Format, OutputOption, emit
from tulle.client import ApiClient
from tulle.errors import NotReadyError, UsageError

POLL_S = 0.2


def register(app: typer.Typer) -> None:
    app.command()(wait)


def wait(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="service (svc)")],
    name: Annotated[str, typer.Argument(help="The service to wait for")],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    timeout: Annotated[str, typer.Option(
        "--timeout", help="How long to wait, e.g. 30s or 2m")] = "60s",
    output: OutputOption = Format.TABLE,
) -> None:
    """Wait until a service has a ready endpoint and every sidecar has it. Exits 1, saying
    what is missing, when that does not happen within --timeout."""
    from tulle.model.durations import parse_duration

    if kind.lower() not in ("service", "services", "svc"):
        raise UsageError(f"cannot wait for {kind!r}", hint="wait for a service: "
                         "`tulle wait service NAME`")
    seconds = parse_duration(timeout)
    if seconds is None or seconds <= 0:
        raise UsageError(f"--timeout must be a duration such as 30s or 2m, got {timeout!r}")
    client = ApiClient.from_state(ctx.obj.paths)
    deadline = time.monotonic() + seconds
    while True:
        service = _service(client, namespace, name)
        if service is not None and service["endpoints"]:
            break
        if time.monotonic() >= deadline:
            raise NotReadyError(f"service {name}.{namespace} is not ready after {timeout}: "
                           + _why(client, namespace, name, service),
                           hint="`tulle diagnose " + name + "` says why")
        time.sleep(POLL_S)
    remaining = max(1.0, deadline - time.monotonic())
    synced = client.get("/v1/xds/sync", {"timeout": round(remaining, 1)},
                        timeout=remaining + 5)
    endpoints = [e["workload"] for e in service["endpoints"]]
    emit({"service": name, "namespace": namespace, "ready": True, "endpoints": endpoints,
          "proxiesSynced": bool(synced.get("synced"))}, output,
         lambda r: f"service/{name} ({namespace}) ready: {', '.join(r['endpoints'])}")


def _service(client: ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    services = client.get("/v1/services", {"namespace": namespace})
    return next((s for s in services if s["name"] == name), None)


def _why(client: ApiClient, namespace: str, name: str, service: dict[str, Any] | None) -> str:
    if service is None:
        return (f"no workload is registered under it yet (start one with `tulle run --service "
                f"{name} --port PORT -- COMMAND`)")
    workloads = [w for w in client.get("/v1/workloads", {"namespace": namespace})
                 if w["name"] in service["workloads"]]
    if not workloads:
        return "it has no instance that serves traffic"
    return "; ".join(f"{w['name']} is {w['state']}"
                     + (f" ({_not_ready_reason(w)})"
                        if w["state"] in ("starting", "not-ready") else "")
                     for w in workloads)


def _not_ready_reason(workload: dict[str, Any]) -> str:
    return str(workload.get("stateReason") or
               f"its application does not accept connections on port {workload['appPort']}")
