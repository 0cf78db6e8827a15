"""Routes for the other replicas, on the identity port (TLS): what replicas ask of each other,
from one host or from many (see controlplane.peerchannel).

    GET  /v1/replicas/status                      this replica's status (its clock among it)
    GET  /v1/replicas/telemetry/raw?window=S[&timeline=S]
                                                  what this replica's own agents reported
    POST /v1/replicas/ca-sync  {"bundle": HASH, "issuer": ID | null, "timeoutS": N}
                                                  another replica's rotation stage: answers
                                                  once this replica's proxies hold it
                                                  ({"lagging": null}), or why not

Each request is judged before its body is read: the client certificate must be one the mesh's
CA issued to the control plane's SPIFFE ID, which only replicas hold. A workload's
certificate, or none, is refused (403).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from tulle.controlplane.api.guard import trust_connection
from tulle.controlplane.api.identity import peer_certificate
from tulle.controlplane.api.routing import Route, json_object, json_response, query_seconds
from tulle.controlplane.services.identity import IdentityService
from tulle.controlplane.services.rotation import Rotator
from tulle.controlplane.services.telemetry import TelemetryService
from tulle.errors import IdentityError, UsageError
from tulle.identity.spiffe import control_plane_id

CA_SYNC_EXAMPLE = '{"bundle": "<hash>", "issuer": "<id>" | null, "timeoutS": 60}'
TELEMETRY_WINDOW_S = 60.0


def routes(identity: IdentityService, telemetry: TelemetryService, rotator: Rotator,
           status: Callable[[], dict[str, Any]]) -> list[Route]:
    def replica(request: web.Request) -> None:
        certificate = peer_certificate(request)
        if not certificate:
            raise IdentityError("another control-plane replica presents its certificate",
                                hint="only replicas call /v1/replicas/")
        presented = identity.ca.verify_leaf(certificate)
        if presented != control_plane_id(identity.ca.trust_domain):
            raise IdentityError(f"the client certificate is {presented}, not a control "
                                "plane's", hint="only replicas call /v1/replicas/")
        trust_connection(request)

    async def replica_status(request: web.Request) -> web.StreamResponse:
        replica(request)
        return json_response(status())

    async def raw(request: web.Request) -> web.StreamResponse:
        replica(request)
        return json_response(telemetry.raw(
            query_seconds(request, "window", TELEMETRY_WINDOW_S),
            query_seconds(request, "timeline", 0.0)))

    async def ca_sync(request: web.Request) -> web.StreamResponse:
        replica(request)
        body = await json_object(request, example=CA_SYNC_EXAMPLE)
        bundle, issuer, timeout_s = body.get("bundle"), body.get("issuer"), body.get("timeoutS")
        if not isinstance(bundle, str) or not (issuer is None or isinstance(issuer, str)) \
                or not isinstance(timeout_s, int | float) or not 0 < timeout_s <= 600:
            raise UsageError("expected a bundle hash, an issuer id or null, and timeoutS "
                             "from 0 to 600", hint=f"send {CA_SYNC_EXAMPLE}")
        return json_response({"lagging": await rotator.follow(bundle, issuer,
                                                              float(timeout_s))})

    return [
        Route("GET", "/v1/replicas/status", replica_status),
        Route("GET", "/v1/replicas/telemetry/raw", raw),
        Route("POST", "/v1/replicas/ca-sync", ca_sync),
    ]
