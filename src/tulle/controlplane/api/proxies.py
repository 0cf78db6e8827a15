"""Routes for the proxies: their xDS state, what the control plane intends to send them, and
their live admin pages, log levels and logs (through their agents).

    GET  /v1/proxies
    GET  /v1/xds/nacks
    GET  /v1/xds/stream-events                       ADS streams refused or closed, oldest first
    GET  /v1/xds/sync[?version=&timeout=]            push pending changes, wait for the ACKs
    GET  /v1/proxies/{node}/intended
    GET  /v1/proxies/{node}/admin/{page}             read-only pages only (see ADMIN_PAGES)
    POST /v1/proxies/{node}/logging                  {} | {"level": L} | {"levels": {C: L}}
    GET  /v1/proxies/{node}/logs[?tail=N | ?since=CURSOR]
"""

from __future__ import annotations

from aiohttp import web

from tulle.controlplane.api.routing import (
    Route,
    json_object,
    json_response,
    query_int,
    query_seconds,
    query_text,
)
from tulle.controlplane.services.mesh import MeshViews
from tulle.controlplane.services.proxies import MAX_TAIL, ProxyService
from tulle.xds.hub import ProxyHub
from tulle.xds.intended import intended_json

LOGGING_EXAMPLE = '{}, {"level": L} or {"levels": {C: L}}'


def routes(proxies: ProxyService, views: MeshViews, hub: ProxyHub) -> list[Route]:
    async def statuses(request: web.Request) -> web.StreamResponse:
        return json_response([p.to_json() for p in hub.sync_views()])

    async def nacks(request: web.Request) -> web.StreamResponse:
        return json_response([n.to_json() for n in hub.nacks.entries()])

    async def stream_events(request: web.Request) -> web.StreamResponse:
        return json_response([e.to_json() for e in hub.stream_events.entries()])

    async def sync(request: web.Request) -> web.StreamResponse:
        version = query_int(request, "version", 0, low=0, high=2**62)  # 0: the current one
        result = await views.sync(version or None, query_seconds(request, "timeout", 10.0))
        return json_response({"meshVersion": result.mesh_version, "synced": result.synced,
                              "proxies": list(result.proxies)})

    async def intended(request: web.Request) -> web.StreamResponse:
        node = request.match_info["node"]
        return json_response({"node": node, **intended_json(proxies.intended(node))})

    async def admin(request: web.Request) -> web.StreamResponse:
        page = await proxies.admin_page(request.match_info["node"], request.match_info["page"],
                                        request.query)
        return web.Response(body=page.body, status=page.status,
                            content_type=page.content_type)

    async def log_levels(request: web.Request) -> web.StreamResponse:
        change = await json_object(request, required=False, example=LOGGING_EXAMPLE)
        node = request.match_info["node"]
        return json_response({"node": node, **await proxies.log_levels(node, change)})

    async def log_lines(request: web.Request) -> web.StreamResponse:
        node = request.match_info["node"]
        since = query_text(request, "since")
        tail = None if since else query_int(request, "tail", 100, low=1, high=MAX_TAIL)
        return json_response({"node": node,
                              **await proxies.log_lines(node, tail=tail, since=since)})

    return [
        Route("GET", "/v1/proxies", statuses),
        Route("GET", "/v1/xds/nacks", nacks),
        Route("GET", "/v1/xds/stream-events", stream_events),
        Route("GET", "/v1/xds/sync", sync),
        Route("GET", "/v1/proxies/{node}/intended", intended),
        Route("GET", "/v1/proxies/{node}/admin/{page:.+}", admin),
        Route("POST", "/v1/proxies/{node}/logging", log_levels),
        Route("GET", "/v1/proxies/{node}/logs", log_lines),
    ]
