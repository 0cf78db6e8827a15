"""The control plane's side of telemetry: agents' reports in, golden metrics out.

``POST /v1/agent/workloads/{node}/telemetry`` takes an agent's per-interval deltas;
``/v1/telemetry/{workloads,services,routes,edges}`` answer `tulle stat`, `routes` and `edges`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tulle.errors import NotFoundError, UsageError
from tulle.identity.spiffe import spiffe_id
from tulle.model.meta import ServiceRef
from tulle.model.workload import Workload
from tulle.telemetry.query import NodeInfo, edge_rows, route_rows, service_rows, workload_rows
from tulle.telemetry.schema import SeriesKey, rule_key
from tulle.telemetry.windows import TelemetryWindows, Window

if TYPE_CHECKING:
    from tulle.controlplane.app import ControlPlane

DEFAULT_WINDOW_S = 60.0
MAX_SERIES_PER_REPORT = 10_000


class TelemetryService:
    def __init__(self, cp: ControlPlane, windows: TelemetryWindows | None = None) -> None:
        self._cp = cp
        self.windows = windows or TelemetryWindows()
        # Every sidecar that reported within the horizon, also after it left: its traffic
        # still belongs to its service.
        self.nodes: dict[str, NodeInfo] = {}

    async def receive(self, request: web.Request) -> dict[str, Any]:
        node_id = request.match_info["node"]
        workload = self._cp.registry.get(node_id)
        if workload is None:
            raise NotFoundError(f"no workload {node_id} is registered",
                                hint="the agent re-registers on its own")
        try:
            body = json.loads(await request.read())
            series = [(SeriesKey.from_wire(item), _values(item["v"])) for item in body["series"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"malformed telemetry report from {node_id}: {exc}") from exc
        if len(series) > MAX_SERIES_PER_REPORT:
            raise UsageError(f"telemetry report from {node_id} has {len(series)} series",
                             hint=f"at most {MAX_SERIES_PER_REPORT}")
        self.nodes[node_id] = self._node_info(workload)
        self.windows.record(node_id, series)
        return {"ok": True}

    def forget(self, node_id: str) -> None:
        self.windows.forget(node_id)

    # -- queries -------------------------------------------------------------------------------

    def workloads(self, request: web.Request) -> dict[str, Any]:
        window, namespace, name = self._query(request)
        nodes = {n: i for n, i in self._live_nodes().items()
                 if _wanted(i.namespace, i.name, namespace, name)}
        return {"windowSeconds": window.seconds, "workloads": workload_rows(window, nodes)}

    def services(self, request: web.Request) -> dict[str, Any]:
        window, namespace, name = self._query(request)
        services = {(ref.namespace, ref.name) for ref, service in self._cp.mesh.services.items()
                    if not service.selector}
        services |= {(i.namespace, i.service) for i in self.nodes.values()}
        wanted = {s for s in services if _wanted(s[0], s[1], namespace, name)}
        if name is not None and not wanted:
            raise NotFoundError(f"no service {name} in namespace {namespace or 'default'}",
                                hint="list them with `tulle get services`")
        return {"windowSeconds": window.seconds,
                "services": service_rows(window, self.nodes, wanted)}

    def routes(self, request: web.Request) -> dict[str, Any]:
        window, namespace, name = self._query(request)
        if name is None:
            raise UsageError("name a service", hint="tulle routes SERVICE")
        ref = ServiceRef(namespace or "default", name)
        if ref not in self._cp.mesh.services:
            raise NotFoundError(f"no service {ref.name} in namespace {ref.namespace}",
                                hint="list them with `tulle get services`")
        rules = []
        for attached in self._cp.mesh.routes.get(ref, ()):
            route = f"{attached.key.namespace}/{attached.key.name}"
            for index, rule in enumerate(attached.spec.rules):
                rules.append((route, rule_key(index, rule.name), rule.describe_matches()))
        return {"windowSeconds": window.seconds, "service": ref.name,
                "namespace": ref.namespace, "routes": route_rows(window, ref.host, rules)}

    def edges(self, request: web.Request) -> dict[str, Any]:
        window, namespace, _ = self._query(request)
        mesh = self._cp.mesh
        identities = {ref.host: service.identities for ref, service in mesh.services.items()}
        rows = edge_rows(window, self.nodes, identities, bool(mesh.identity.trust_domain))
        if namespace is not None:
            rows = [r for r in rows if namespace in (r["source"].get("namespace"),
                                                     r["destination"].get("namespace"))]
        return {"windowSeconds": window.seconds, "edges": rows}

    def _live_nodes(self) -> dict[str, NodeInfo]:
        """Registered workloads (reporting or not yet), plus ones that left recently."""
        out = dict(self.nodes)
        for workload in self._cp.registry.workloads():
            out.setdefault(workload.node_id, self._node_info(workload))
        return out

    def _node_info(self, workload: Workload) -> NodeInfo:
        trust_domain = self._cp.ca.trust_domain
        identity = spiffe_id(trust_domain, workload.namespace, workload.account) \
            if trust_domain else ""
        return NodeInfo(workload.name, workload.namespace, workload.service, identity)

    def _query(self, request: web.Request) -> tuple[Window, str | None, str | None]:
        raw = request.query.get("window", str(DEFAULT_WINDOW_S))
        try:
            seconds = float(raw)
        except ValueError as exc:
            raise UsageError(f"window must be a number of seconds, got {raw!r}") from exc
        horizon = self.windows.horizon_s
        if not 0 < seconds <= horizon:
            raise UsageError(f"the window must be between 1s and {horizon:g}s, got {raw}",
                             hint="tulle keeps the last 15 minutes")
        return (self.windows.window(seconds), request.query.get("namespace") or None,
                request.query.get("name") or None)


def _values(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise TypeError("values must be an object")
    return {str(k): int(v) for k, v in raw.items() if isinstance(v, int)}


def _wanted(namespace: str, name: str, want_namespace: str | None,
            want_name: str | None) -> bool:
    return (want_namespace is None or namespace == want_namespace) and \
        (want_name is None or name == want_name)


def register(router: web.UrlDispatcher, service: TelemetryService,
             json_handler: Any, json_async_handler: Any) -> None:
    router.add_post("/v1/agent/workloads/{node}/telemetry", json_async_handler(service.receive))
    router.add_get("/v1/telemetry/workloads", json_handler(service.workloads))
    router.add_get("/v1/telemetry/services", json_handler(service.services))
    router.add_get("/v1/telemetry/routes", json_handler(service.routes))
    router.add_get("/v1/telemetry/edges", json_handler(service.edges))
