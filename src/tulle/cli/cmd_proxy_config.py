"""`tulle proxy-config SECTION PROXY`: the config a sidecar's Envoy runs now, read live from
its admin interface through the control plane; `--diff` compares it with what the control
plane intends."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import typer

from tulle.cli import config_dump, proxies
from tulle.cli.config_diff import Difference, compare
from tulle.cli.output import Format, OutputOption, emit, table
from tulle.client import ApiClient


class Section(StrEnum):
    LISTENERS = "listeners"
    ROUTES = "routes"
    CLUSTERS = "clusters"
    ENDPOINTS = "endpoints"
    SECRETS = "secrets"
    BOOTSTRAP = "bootstrap"
    ALL = "all"


def register(app: typer.Typer) -> None:
    app.command("proxy-config")(proxy_config)


def proxy_config(
    ctx: typer.Context,
    section: Annotated[Section, typer.Argument(help="What to show")],
    proxy: Annotated[str, typer.Argument(help="NAME.NAMESPACE, or NAME with -n")],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    output: OutputOption = Format.TABLE,
    diff: Annotated[bool, typer.Option("--diff", help="Compare with what the control plane "
                                       "intends; exit 1 on differences")] = False,
) -> None:
    """Listeners, routes, clusters, endpoints, secrets or bootstrap of a proxy's live Envoy."""
    client = ApiClient.from_state(ctx.obj.paths)
    node = proxies.resolve(proxy, namespace, (p.node for p in proxies.sync_states(client)))
    dump = fetch_dump(client, node)
    app = fetch_app(client, node)
    if diff:
        differences = fetch_diff(client, node, dump)
        emit([d.to_dict() for d in differences], output, render_diff)
        if differences:
            raise typer.Exit(1)
        return
    emit(sections_of(dump, section, app), output, lambda data: render(data, section))


def fetch_dump(client: ApiClient, node: str) -> dict[str, Any]:
    dump: dict[str, Any] = client.get(f"/v1/proxies/{node}/admin/config_dump",
                                      {"include_eds": ""})
    return dump


def fetch_app(client: ApiClient, node: str) -> config_dump.AppReadiness | None:
    """The proxy's application as the registry knows it, or None (no application port, or
    the workload is gone)."""
    name, _, namespace = node.partition(".")
    workloads: list[dict[str, Any]] = client.get("/v1/workloads", {"namespace": namespace})
    for workload in workloads:
        if workload.get("name") == name and workload.get("appPort"):
            return config_dump.AppReadiness(int(workload["appPort"]), str(workload["state"]),
                                            str(workload.get("stateReason") or ""))
    return None


def fetch_diff(client: ApiClient, node: str, dump: dict[str, Any]) -> list[Difference]:
    intended = client.get(f"/v1/proxies/{node}/intended")
    return compare(intended["resources"], config_dump.dynamic_resources(dump))


_EXTRACT: dict[Section, Callable[[dict[str, Any]], Any]] = {
    Section.LISTENERS: config_dump.listener_rows,
    Section.ROUTES: config_dump.route_rows,
    Section.SECRETS: config_dump.secret_rows,
    Section.BOOTSTRAP: config_dump.bootstrap_view,
}
# Sections that also read the application's readiness.
_WITH_APP: dict[Section, Callable[[dict[str, Any], config_dump.AppReadiness | None], Any]] = {
    Section.CLUSTERS: config_dump.cluster_rows,
    Section.ENDPOINTS: config_dump.endpoint_rows,
}
_ORDER = (Section.LISTENERS, Section.ROUTES, Section.CLUSTERS, Section.ENDPOINTS,
          Section.SECRETS, Section.BOOTSTRAP)


def sections_of(dump: dict[str, Any], section: Section,
                app: config_dump.AppReadiness | None = None) -> dict[str, Any]:
    """{section name: its rows}, for one section or all of them. ``app``: the proxy's
    application as the registry knows it (the inbound endpoint's truth)."""
    wanted = [s for s in _ORDER if section in (Section.ALL, s)]
    return {s.value: _WITH_APP[s](dump, app) if s in _WITH_APP else _EXTRACT[s](dump)
            for s in wanted}


# -- rendering ---------------------------------------------------------------------------------

def _join(values: list[Any]) -> str:
    return ",".join(str(v) for v in values)


def _listeners(rows: list[dict[str, Any]]) -> str:
    return table(["NAME", "ADDRESS", "CHAINS", "FILTERS", "ROUTE CONFIG"],
                 [[r["name"], r["address"], r["filterChains"], _join(r["filters"]),
                   _join(r["routeConfigs"])] for r in rows])


def _routes(rows: list[dict[str, Any]]) -> str:
    return table(["ROUTE CONFIG", "VIRTUAL HOST", "DOMAINS", "MATCH", "ACTION"],
                 [[r["routeConfig"], r["virtualHost"], _join(r["domains"]), r["match"],
                   r["action"]] for r in rows])


def _clusters(rows: list[dict[str, Any]]) -> str:
    return table(["NAME", "TYPE", "ENDPOINTS", "TLS"],
                 [[r["name"], r["type"], f"{r['healthy']}/{r['endpoints']}",
                   "yes" if r["tls"] else "no"] for r in rows])


def _endpoints(rows: list[dict[str, Any]]) -> str:
    return table(["CLUSTER", "ADDRESS", "HEALTH"],
                 [[r["cluster"], r["address"],
                   f"{r['health']}: {r['detail']}" if r.get("detail") else r["health"]]
                  for r in rows])


def _secrets(rows: list[dict[str, Any]]) -> str:
    return table(["NAME", "TYPE", "CERTS", "SUBJECT", "SAN", "EXPIRES"],
                 [[r["name"], r["type"], r["certificates"], r["subject"], _join(r["sans"]),
                   f"{r['notAfter']} ({r['daysLeft']}d)" if r["notAfter"] else "-"]
                  for r in rows])


def _bootstrap(view: dict[str, Any]) -> str:
    return table(["NODE", "CLUSTER", "ADMIN", "XDS CLUSTER"],
                 [[view["node"], view["cluster"], view["admin"], view["xdsCluster"]]])


_RENDER: dict[str, Callable[[Any], str]] = {
    "listeners": _listeners, "routes": _routes, "clusters": _clusters,
    "endpoints": _endpoints, "secrets": _secrets, "bootstrap": _bootstrap,
}


def render(data: dict[str, Any], section: Section) -> str:
    if section is not Section.ALL:
        return _RENDER[section.value](data[section.value])
    return "\n\n".join(f"{name.upper()}\n{_RENDER[name](rows)}" for name, rows in data.items())


def render_diff(differences: list[dict[str, Any]]) -> str:
    if not differences:
        return "No differences: the proxy runs what the control plane intends."
    lines = [table(["TYPE", "NAME", "DIFFERENCE"],
                   [[d["type"], d["name"], d["kind"]] for d in differences])]
    lines += [d["diff"] for d in differences if d["diff"]]
    return "\n\n".join(lines)
