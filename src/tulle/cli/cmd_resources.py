"""`tulle apply`, `tulle get`, `tulle delete`: resources and the mesh's live views."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from tulle.cli import complete, proxies
from tulle.cli.messages import render_warnings
from tulle.cli.output import (
    Format,
    OutputOption,
    WatchOption,
    age,
    emit,
    render,
    table,
    watch,
)
from tulle.client import ApiClient
from tulle.xds.sync import ProxySync

NamespaceOption = Annotated[str | None, typer.Option(
    "-n", "--namespace", help="Only this namespace (get: all namespaces if omitted)")]

# Views computed by the control plane rather than stored resources.
_WORKLOADS = ("workloads", "workload", "wl")
_SERVICES = ("services", "service", "svc")
_PROXIES = ("proxies", "proxy")


def register(app: typer.Typer) -> None:
    app.command()(apply)
    app.command()(get)
    app.command()(delete)


def apply(
    ctx: typer.Context,
    files: Annotated[list[str], typer.Option(
        "-f", "--filename", help="A YAML/JSON file, a directory of them, or - for stdin")],
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Validate and show what would change; change nothing")] = False,
    output: OutputOption = Format.TABLE,
) -> None:
    """Create or update resources. All or nothing: any error means nothing is applied."""
    from tulle.cli.loader import load_documents
    from tulle.cli.positions import Positions, locate
    from tulle.errors import ConfigError

    positions: dict[str, Positions] = {}
    documents = load_documents(files, positions)
    client = ApiClient.from_state(ctx.obj.paths)
    try:
        result = client.post("/v1/resources/apply", {"documents": documents,
                                                     "dryRun": dry_run})
    except ConfigError as exc:  # point at the offending field's line, not the document's
        raise ConfigError(locate(exc.problems, positions), message=exc.message) from None
    suffix = " (dry run)" if dry_run else ""
    emit(result, output, lambda r: "\n".join(
        f"{x['kind'].lower()}/{x['name']}{_in(x['namespace'])} {x['action']}{suffix}"
        for x in r["results"]))
    if result.get("warnings"):
        print(render_warnings(result["warnings"], "apply" + suffix), file=sys.stderr)


def get(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(
        help="services, workloads, httproutes or proxies", autocompletion=complete.kinds)],
    name: Annotated[str | None, typer.Argument(
        help="Only this one", autocompletion=complete.names)] = None,
    namespace: NamespaceOption = None,
    output: OutputOption = Format.TABLE,
    watch_: WatchOption = False,
) -> None:
    """List resources, services, workloads or proxies."""
    client = ApiClient.from_state(ctx.obj.paths)

    def show() -> str:
        return render(*_get_view(client, kind, name, namespace, output))

    if watch_:
        watch(show)
    else:
        sys.stdout.write(show())


def _get_view(client: ApiClient, kind: str, name: str | None, namespace: str | None,
              output: Format) -> tuple[Any, Format, Callable[[Any], str]]:
    """What `get` prints: the data, its format and its table."""
    wanted = kind.lower()
    if wanted in _WORKLOADS:
        items = _only(client.get("/v1/workloads", {"namespace": namespace}), name, "workload")
        return items, output, _workloads_table
    if wanted in _SERVICES:
        items = _only(client.get("/v1/services", {"namespace": namespace}), name, "service")
        return items, output, _services_table
    if wanted in _PROXIES:
        syncs = [p for p in proxies.sync_states(client) if name is None or p.node == name]
        return [p.to_json() for p in syncs], output, lambda _: _proxies_table(syncs)
    if name is not None:
        stored = client.get(f"/v1/resources/{kind}/{namespace or 'default'}/{name}")
        return (stored["manifest"] if output is not Format.TABLE else [stored], output,
                _resources_table)
    stored_list = client.get(f"/v1/resources/{kind}", {"namespace": namespace})
    if output is Format.TABLE:
        return stored_list, output, _resources_table
    return ({"apiVersion": "v1", "kind": "List", "items": [s["manifest"] for s in stored_list]},
            output, _resources_table)


def delete(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="Resource kind, e.g. service or httproute",
                                        autocompletion=complete.kinds)],
    name: Annotated[str, typer.Argument(help="Resource name",
                                        autocompletion=complete.names)],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    force: Annotated[bool, typer.Option(
        "--force", help="Delete even if other resources still refer to it")] = False,
    output: OutputOption = Format.TABLE,
) -> None:
    """Delete a resource. Refused while other resources refer to it, unless --force."""
    client = ApiClient.from_state(ctx.obj.paths)
    result = client.delete(f"/v1/resources/{kind}/{namespace}/{name}"
                           + ("?force=true" if force else ""))
    emit(result, output, lambda r: f"{r['kind'].lower()}/{r['name']} ({r['namespace']}) "
                                   "deleted")


def _in(namespace: str) -> str:
    return f" ({namespace})" if namespace else ""


def _only(items: list[dict[str, Any]], name: str | None, what: str) -> list[dict[str, Any]]:
    if name is None:
        return items
    found = [i for i in items if i["name"] == name]
    if not found:
        from tulle.errors import NotFoundError

        raise NotFoundError(f"no {what} named {name}",
                            hint=f"list them with `tulle get {what}s`")
    return found


def _workloads_table(items: list[dict[str, Any]]) -> str:
    rows: list[tuple[Any, ...]] = [
        (w["namespace"], w["name"], w["service"], w["version"], w["state"],
         f"{w['address']}:{w['inboundPort']}" if w["inboundPort"] else "",
         w["appPort"], _proxy_state(w), age(w["registeredAt"]))
        for w in items]
    headers: tuple[str, ...] = ("NAMESPACE", "NAME", "SERVICE", "VERSION", "STATE", "INBOUND",
                                "APP-PORT", "PROXY", "AGE")
    if any(w.get("stateReason") for w in items):
        # Why an instance is not ready, as its agent's probe found (a gRPC health check
        # saying NOT_SERVING, a port that does not accept): only when one has a reason.
        rows = [(*row, w.get("stateReason") or "") for row, w in zip(rows, items, strict=True)]
        headers = (*headers, "REASON")
    return table(headers, rows)


def _proxy_state(workload: dict[str, Any]) -> str:
    if workload.get("replica"):
        return f"replica {workload['replica']}"
    return "yes" if workload["proxyConnected"] else "no"


def _services_table(items: list[dict[str, Any]]) -> str:
    rows = [(s["namespace"], s["name"], s["protocol"],
             "Service" if s["declared"] else "workloads", _ready(s), ",".join(s["routes"]))
            for s in items]
    return table(("NAMESPACE", "NAME", "PROTOCOL", "DEFINED-BY", "READY", "ROUTES"), rows)


def _ready(service: dict[str, Any]) -> str:
    """Ready endpoints of serving instances; a service of pure clients serves nothing."""
    if not service["workloads"] and service.get("clients"):
        return f"- ({len(service['clients'])} client{'s' if len(service['clients']) != 1 else ''})"
    return f"{len(service['endpoints'])}/{len(service['workloads'])}"


def _proxies_table(syncs: list[ProxySync]) -> str:
    rows = []
    for p in syncs:
        states = " ".join(f"{t.type}:{t.state.value}" for t in p.types)  # NOT_SENT: one word
        rows.append((p.node, p.protocol, age(p.connected_at), states))
    return table(("PROXY", "XDS", "CONNECTED", "STATE"), rows)


def _resources_table(items: list[dict[str, Any]]) -> str:
    rows = [(s["manifest"]["metadata"].get("namespace", "-"), s["manifest"]["kind"],
             s["manifest"]["metadata"]["name"], s["revision"], age(s["updatedAt"]))
            for s in items]
    return table(("NAMESPACE", "KIND", "NAME", "REVISION", "AGE"), rows)
