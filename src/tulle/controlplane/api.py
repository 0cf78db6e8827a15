"""The control plane's HTTP API, for the CLI, agents and (later) the dashboard.

Every request must carry ``Authorization: Bearer <token>``, the token generated at first start
and stored 0600 in the state directory. ``/metrics`` (Prometheus) also accepts the read-only
metrics token, and nothing else does. Errors are JSON: {"error": {"type", "message", "hint"}}.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from tulle.controlplane import (
    analysis,
    diagnosis,
    health,
    history,
    proxy_admin,
    sessions,
    tap,
    telemetry,
)
from tulle.controlplane.agents import agent_target
from tulle.controlplane.describe import describe_service
from tulle.controlplane.metrics import controlplane_metrics
from tulle.controlplane.resources import documents_from_request
from tulle.errors import AuthError, NotFoundError, TulleError, UsageError
from tulle.model.meta import ResourceKey, ServiceRef
from tulle.security import bearer, tokens_match
from tulle.settings import read_metrics_token

if TYPE_CHECKING:
    from tulle.controlplane.app import ControlPlane

log = logging.getLogger("tulle.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS = {"config": 422, "usage": 400, "not_found": 404, "conflict": 409, "auth": 401,
           "unavailable": 503, "identity": 403}

METRICS_ROUTE = "metrics"

# Read-only Envoy admin pages the agent proxies to us (the agent enforces the same list).
ADMIN_PAGES = frozenset({"config_dump", "stats", "stats/prometheus", "clusters", "listeners",
                         "server_info", "ready", "memory", "certs", "runtime"})


def make_api(cp: ControlPlane) -> web.Application:
    app = web.Application(middlewares=[_errors, _authenticate(
                              cp.token, read_metrics_token(cp.paths))],
                          client_max_size=16 * 1024 * 1024)
    r = app.router
    r.add_get("/metrics", _metrics(cp), name=METRICS_ROUTE)
    r.add_get("/v1/status", _json(lambda req: cp.status()))
    r.add_post("/v1/shutdown", _json(lambda req: _shutdown(cp)))
    r.add_post("/v1/resources/apply", _json_async(lambda req: _apply(cp, req)))
    r.add_get("/v1/resources/{kind}", _json(lambda req: _list(cp, req)))
    r.add_get("/v1/resources/{kind}/{namespace}/{name}", _json(lambda req: _get(cp, req)))
    r.add_delete("/v1/resources/{kind}/{namespace}/{name}", _json(lambda req: _delete(cp, req)))
    r.add_get("/v1/history", _json(lambda req: _history(cp, req)))
    r.add_get("/v1/services", _json(lambda req: _services(cp, req)))
    r.add_get("/v1/services/{namespace}/{name}/describe", _json(
        lambda req: describe_service(cp.mesh, ServiceRef(req.match_info["namespace"],
                                                         req.match_info["name"]))))
    r.add_get("/v1/workloads", _json(lambda req: _workloads(cp, req)))
    r.add_get("/v1/proxies", _json(lambda req: [p.to_json() for p in cp.hub.sync_views()]))
    r.add_get("/v1/proxies/{node}/intended", _json(lambda req: _intended(cp, req)))
    r.add_get("/v1/proxies/{node}/admin/{page:.+}", lambda req: _admin(cp, req))
    r.add_get("/v1/xds/nacks", _json(lambda req: [n.to_json() for n in cp.hub.nacks.entries()]))
    r.add_get("/v1/xds/sync", _json_async(lambda req: _sync(cp, req)))
    r.add_get("/v1/tap", lambda req: tap.stream_tap(cp, req))
    r.add_get("/v1/tap/status", _json(lambda req: cp.taps.status()))
    r.add_get("/v1/identity/status", _json(lambda req: cp.identity.status().to_json()))
    r.add_post("/v1/identity/rotate", _json_async(lambda req: _rotate(cp, req)))
    r.add_post("/v1/identity/import", _json_async(lambda req: _import(cp, req)))
    r.add_post("/v1/agent/sessions", lambda req: sessions.open_session(cp, req))
    r.add_post("/v1/agent/workloads/{node}/join-token",
               _json(lambda req: sessions.new_join_token(cp, req)))
    r.add_post("/v1/agent/workloads/{node}/state",
               _json_async(lambda req: sessions.set_state(cp, req)))
    telemetry.register(r, cp.telemetry, _json, _json_async)
    for module in (analysis, diagnosis, health, history, proxy_admin):
        module.register(r, cp)
    return app


def make_identity_api(cp: ControlPlane) -> web.Application:
    """The agents' TLS port. No API token here: each request is authorised by a join token
    or by the client certificate (see tulle.controlplane.identity)."""
    app = web.Application(middlewares=[_errors], client_max_size=64 * 1024)
    app.router.add_post("/v1/identity/certificates", _json_async(cp.identity.handle_sign))
    return app


# -- middleware ------------------------------------------------------------------------------

@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except TulleError as exc:
        return web.json_response({"error": exc.to_dict()}, status=_STATUS.get(exc.kind, 500))
    except web.HTTPException:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response({"error": {"type": "api", "message": "internal error in the "
                                            "control plane", "hint": "see controlplane.log in "
                                            "the state directory"}}, status=500)


def _authenticate(token: str, metrics_token: str | None = None) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        presented = bearer(request.headers.get("Authorization"))
        # The metrics token opens the route named METRICS_ROUTE, and only that one.
        if metrics_token and request.match_info.route.name == METRICS_ROUTE \
                and tokens_match(metrics_token, presented):
            return await handler(request)
        if not tokens_match(token, presented):
            raise AuthError("missing or wrong API token",
                            hint="send 'Authorization: Bearer TOKEN'; the token is in "
                                 "api-token in the state directory")
        return await handler(request)

    return check


def _json(fn: Callable[[web.Request], Any]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(fn(request))

    return handler


def _json_async(fn: Callable[[web.Request], Awaitable[Any]]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(await fn(request))

    return handler


# -- handlers --------------------------------------------------------------------------------

def _metrics(cp: ControlPlane) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=controlplane_metrics(cp).encode(), headers={
            "Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    return handler


def _shutdown(cp: ControlPlane) -> dict[str, Any]:
    cp.request_stop()
    return {"stopping": True}


async def _apply(cp: ControlPlane, request: web.Request) -> dict[str, Any]:
    body = await request.json()
    results, warnings = cp.resources.apply(documents_from_request(body),
                                           dry_run=bool(body.get("dryRun", False)))
    return {"results": [{"kind": r.key.kind, "namespace": r.key.namespace, "name": r.key.name,
                         "action": r.action, "revision": r.revision} for r in results],
            "warnings": [dataclasses.asdict(w) for w in warnings]}


async def _rotate(cp: ControlPlane, request: web.Request) -> dict[str, Any]:
    body = await request.json()
    kind = str(body.get("kind", ""))
    if body.get("dryRun"):
        return {"kind": kind, "plan": cp.rotator.plan(kind)}
    return {"kind": kind, **await cp.rotator.rotate(kind)}


async def _import(cp: ControlPlane, request: web.Request) -> dict[str, Any]:
    from tulle.controlplane.rotation import load_import

    body = await request.json()
    root, issuer = load_import(cp.ca, str(body.get("root", "")).encode(),
                               str(body.get("issuer", "")).encode(),
                               str(body.get("issuerKey", "")).encode())
    # Same root: only the issuer changes. A new root: a full root rotation.
    kind = "issuer" if root.id in cp.ca.state.anchors else "root"
    if body.get("dryRun"):
        return {"kind": kind, "plan": cp.rotator.plan(kind)}
    return {"kind": kind, **await cp.rotator.rotate(kind, new_root=root, new_issuer=issuer)}


def _list(cp: ControlPlane, request: web.Request) -> list[dict[str, Any]]:
    namespace = request.query.get("namespace") or None
    stored = cp.resources.list(request.match_info["kind"], namespace)
    return [_stored_view(s) for s in stored]


def _get(cp: ControlPlane, request: web.Request) -> dict[str, Any]:
    m = request.match_info
    return _stored_view(cp.resources.get(m["kind"], m["namespace"], m["name"]))


def _delete(cp: ControlPlane, request: web.Request) -> dict[str, Any]:
    m = request.match_info
    result = cp.resources.delete(m["kind"], m["namespace"], m["name"])
    return {"kind": result.key.kind, "namespace": result.key.namespace, "name": result.key.name,
            "action": result.action, "revision": result.revision}


def _history(cp: ControlPlane, request: web.Request) -> list[dict[str, Any]]:
    q = request.query
    key = ResourceKey(q["kind"], q.get("namespace", "default"), q["name"]) if "kind" in q \
        else None
    return [{"revision": c.revision, "at": c.at, "kind": c.key.kind,
             "namespace": c.key.namespace, "name": c.key.name, "action": c.action,
             "before": c.before, "after": c.after}
            for c in cp.store.history(key, limit=int(q.get("limit", "100")))]


def _stored_view(stored: Any) -> dict[str, Any]:
    return {"manifest": stored.manifest, "revision": stored.revision,
            "createdAt": stored.created_at, "updatedAt": stored.updated_at}


def _services(cp: ControlPlane, request: web.Request) -> list[dict[str, Any]]:
    namespace = request.query.get("namespace") or None
    mesh = cp.mesh
    out = []
    for ref, service in mesh.services.items():
        if namespace is not None and ref.namespace != namespace:
            continue
        members = [w for w in mesh.workloads.values() if w.service_ref == ref]
        out.append({
            "name": ref.name,
            "namespace": ref.namespace,
            "protocol": service.protocol,
            "declared": service.declared,
            "workloads": [w.name for w in members],
            "endpoints": [{"workload": e.workload, "address": e.address, "port": e.port}
                          for e in mesh.endpoints_of(ref)],
            "routes": [f"{r.key.namespace}/{r.key.name}" for r in mesh.routes.get(ref, ())],
        })
    return out


def _workloads(cp: ControlPlane, request: web.Request) -> list[dict[str, Any]]:
    namespace = request.query.get("namespace") or None
    service = request.query.get("service") or None
    connected = set(cp.hub.connected())
    out = []
    for workload in cp.registry.workloads():
        if namespace is not None and workload.namespace != namespace:
            continue
        if service is not None and workload.service_ref != ServiceRef(workload.namespace,
                                                                        service):
            continue
        view = workload.to_dict()
        view["agentConnected"] = cp.registry.is_connected(workload.node_id)
        view["proxyConnected"] = workload.node_id in connected
        out.append(view)
    return out


async def _sync(cp: ControlPlane, request: web.Request) -> dict[str, Any]:
    """Apply pending changes now, then wait until every connected proxy has ACKed them (or
    the given mesh version)."""
    if cp.rebuild_pending:
        cp.rebuild_now()
    version = int(request.query.get("version", cp.mesh.version))
    timeout = min(float(request.query.get("timeout", "10")), 60.0)
    synced = await cp.hub.wait_synced(version, timeout)
    return {"meshVersion": version, "synced": synced, "proxies": cp.hub.connected()}


def _intended(cp: ControlPlane, request: web.Request) -> dict[str, Any]:
    """The resources the control plane would send this proxy now (for `proxy-config --diff`)."""
    from tulle.xds.intended import intended_json

    node_id = request.match_info["node"]
    proxy = cp.hub.proxy_of(node_id)
    if proxy is None:
        raise NotFoundError(f"no connected proxy {node_id}",
                            hint="connected proxies: " + (", ".join(cp.hub.connected())
                                                          or "none"))
    return {"node": node_id, **intended_json(cp.config_for(proxy))}


async def _admin(cp: ControlPlane, request: web.Request) -> web.StreamResponse:
    node_id = request.match_info["node"]
    page = request.match_info["page"]
    if page not in ADMIN_PAGES:
        raise UsageError(f"admin page {page!r} is not available",
                         hint="readable pages: " + ", ".join(sorted(ADMIN_PAGES)))
    agent = agent_target(cp, node_id)
    if agent is None:
        raise NotFoundError(f"no proxy {node_id}", hint="list proxies with `tulle get workloads`")
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as client, \
                client.get(agent.url(f"/admin/{page}"), params=request.query,
                           headers=agent.headers) as upstream:
            body = await upstream.read()
            return web.Response(body=body, status=upstream.status,
                                content_type=upstream.content_type)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TulleError(f"the agent of {node_id} did not answer: {exc}",
                         hint="check the workload is running: `tulle get workloads`") from exc
