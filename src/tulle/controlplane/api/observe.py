"""Routes that observe the mesh: golden metrics, live tap, diagnosis, the checks' questions, the
control plane's own status and Prometheus metrics.

    GET  /v1/telemetry/{workloads,services,routes,edges,slos}[?window=&namespace=&name=]
    GET  /v1/tap?target=&namespace=&path=&method=&status=&max=   a live NDJSON stream
    GET  /v1/tap/status
    GET  /v1/diagnose[?service=&from=&to=&namespace=&window=]
    POST /v1/telemetry/refresh   every agent reports now (`tulle check` before it reads)
    GET  /v1/health/{store,identity,versions,edges}[?window=]
    GET  /v1/status
    POST /v1/shutdown
    GET  /metrics                       also opens to the read-only metrics token

The tap stream: one ``{"attached": ...}`` line once every tapped proxy has ACKed its logger and
connections accepted before have drained, then one ``{"request": ...}`` line per request,
``{"heartbeat": ...}`` lines while nothing happens, and ``{"end": ...}`` when ``max`` requests
were sent. The session ends when the client goes away (aiohttp cancels the handler).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tulle.controlplane.api.routing import (
    Route,
    json_response,
    query_int,
    query_seconds,
    query_text,
)
from tulle.controlplane.peers import PeerAnswers
from tulle.controlplane.services.diagnosis import DEFAULT_WINDOW_S, DiagnosisService
from tulle.controlplane.services.health import HealthService, edge_counters
from tulle.controlplane.services.slos import RECENT_S
from tulle.controlplane.services.tap import TapService
from tulle.controlplane.services.telemetry import TelemetryQuery, TelemetryService
from tulle.diagnose.model import Scope
from tulle.tap.filters import parse_filter
from tulle.tap.hub import TapSession

METRICS_ROUTE = "metrics"
TAP_HEARTBEAT_S = 5.0
TELEMETRY_WINDOW_S = 60.0


def telemetry_routes(telemetry: TelemetryService) -> list[Route]:
    def query(request: web.Request) -> TelemetryQuery:
        return TelemetryQuery(query_seconds(request, "window", TELEMETRY_WINDOW_S),
                              query_text(request, "namespace"), query_text(request, "name"))

    def answer(rows: Callable[[TelemetryQuery, PeerAnswers], dict[str, Any]]) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            asked = query(request)
            telemetry.window(asked.window_s)  # a wrong window fails before any peer is asked
            return json_response(rows(asked, await telemetry.ask_peers(asked.window_s)))
        return handler

    async def slos(request: web.Request) -> web.StreamResponse:
        asked = TelemetryQuery(query_seconds(request, "window", telemetry.windows.horizon_s),
                               query_text(request, "namespace"), query_text(request, "name"))
        telemetry.window(asked.window_s)  # a wrong window fails before any peer is asked
        seen = await telemetry.ask_peers(asked.window_s)
        recent = await telemetry.ask_peers(min(RECENT_S, asked.window_s))
        return json_response(telemetry.slo_rows(asked, seen, recent))

    async def raw(request: web.Request) -> web.StreamResponse:
        """This replica's own reports, for the other replicas (see controlplane.peers)."""
        return json_response(telemetry.raw(
            query_seconds(request, "window", TELEMETRY_WINDOW_S),
            query_seconds(request, "timeline", 0.0)))

    return [
        Route("GET", "/v1/telemetry/workloads", answer(telemetry.workload_rows)),
        Route("GET", "/v1/telemetry/services", answer(telemetry.service_rows)),
        Route("GET", "/v1/telemetry/routes", answer(telemetry.route_rows)),
        Route("GET", "/v1/telemetry/edges", answer(telemetry.edge_rows)),
        Route("GET", "/v1/telemetry/slos", slos),
        Route("GET", "/v1/telemetry/raw", raw),
    ]


def tap_routes(taps: TapService) -> list[Route]:
    async def stream(request: web.Request) -> web.StreamResponse:
        q = request.query
        tap_filter = parse_filter(q.get("path"), q.get("method"), q.get("status"), q.get("max"))
        attached = await taps.attach(q.get("target", ""), q.get("namespace") or "default",
                                     tap_filter)
        try:
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await response.prepare(request)
            await _send(response, {"attached": {
                "target": attached.target.to_dict(), "proxies": list(attached.proxies),
                "meshVersion": attached.mesh_version, "synced": attached.synced}})
            await _relay(response, attached.session)
            return response
        finally:
            taps.detach(attached.session)

    async def status(request: web.Request) -> web.StreamResponse:
        return json_response(taps.status())

    return [Route("GET", "/v1/tap", stream), Route("GET", "/v1/tap/status", status)]


async def _relay(response: web.StreamResponse, session: TapSession) -> None:
    while True:
        try:
            event = await asyncio.wait_for(session.next(), TAP_HEARTBEAT_S)
        except TimeoutError:
            await _send(response, {"heartbeat": round(time.time(), 3),
                                   "dropped": session.dropped})
            continue
        await _send(response, {"request": event})
        if session.full and not session.pending():
            await _send(response, {"end": {"reason": "max", "lines": session.matched,
                                           "dropped": session.dropped}})
            return


async def _send(response: web.StreamResponse, message: dict[str, Any]) -> None:
    await response.write(json.dumps(message).encode() + b"\n")


def diagnosis_routes(diagnosis: DiagnosisService) -> list[Route]:
    async def run(request: web.Request) -> web.StreamResponse:
        scope = Scope(namespace=query_text(request, "namespace"),
                      service=query_text(request, "service"),
                      source=query_text(request, "from"),
                      destination=query_text(request, "to"))
        window = query_seconds(request, "window", DEFAULT_WINDOW_S)
        return json_response(await diagnosis.run(scope, window))

    async def refresh(request: web.Request) -> web.StreamResponse:
        return json_response(await diagnosis.refresh())

    return [Route("GET", "/v1/diagnose", run),
            Route("POST", "/v1/telemetry/refresh", refresh)]


def health_routes(health: HealthService, telemetry: TelemetryService) -> list[Route]:
    async def store(request: web.Request) -> web.StreamResponse:
        return json_response(await health.store_health())

    async def identity(request: web.Request) -> web.StreamResponse:
        return json_response(health.identity_certificates())

    async def versions(request: web.Request) -> web.StreamResponse:
        return json_response(health.versions())

    async def replicas(request: web.Request) -> web.StreamResponse:
        return json_response(await health.replicas())

    async def hosts(request: web.Request) -> web.StreamResponse:
        return json_response(await health.hosts())

    async def edges(request: web.Request) -> web.StreamResponse:
        window = telemetry.window(query_seconds(request, "window", TELEMETRY_WINDOW_S))
        return json_response(edge_counters(window))

    return [
        Route("GET", "/v1/health/store", store),
        Route("GET", "/v1/health/identity", identity),
        Route("GET", "/v1/health/versions", versions),
        Route("GET", "/v1/health/replicas", replicas),
        Route("GET", "/v1/health/hosts", hosts),
        Route("GET", "/v1/health/edges", edges),
    ]


LOG_TAIL_MAX = 2 * 1024 * 1024


def process_routes(status: Callable[[], dict[str, Any]], metrics: Callable[[], str],
                   shutdown: Callable[[], None], log_tail: Callable[[int], str]
                   ) -> list[Route]:
    async def get_status(request: web.Request) -> web.StreamResponse:
        return json_response(status())

    async def get_log(request: web.Request) -> web.StreamResponse:
        """The end of this control plane's log (a bug report of another replica's host)."""
        limit = query_int(request, "bytes", LOG_TAIL_MAX, low=1, high=LOG_TAIL_MAX)
        return json_response({"text": await asyncio.to_thread(log_tail, limit)})

    async def stop(request: web.Request) -> web.StreamResponse:
        shutdown()
        return json_response({"stopping": True})

    async def prometheus(request: web.Request) -> web.StreamResponse:
        return web.Response(body=metrics().encode(), headers={
            "Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    return [
        Route("GET", "/v1/status", get_status),
        Route("GET", "/v1/log", get_log),
        Route("POST", "/v1/shutdown", stop),
        Route("GET", "/metrics", prometheus, name=METRICS_ROUTE),
    ]
