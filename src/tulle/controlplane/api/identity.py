"""Routes for the mesh's identity: the CA's state, rotation and import (API port), and the
signing of workload certificates (the agents' TLS identity port).

    GET  /v1/identity/status
    POST /v1/identity/rotate         {"kind": "root" | "issuer", "dryRun": false}
    POST /v1/identity/import         {"root", "issuer", "issuerKey": PEM, "dryRun": false}
    POST /v1/workloads/{node}/revoke  revoke the workload's certificates and end its
                                     registration; answers once every proxy has the lists
    POST /v1/identity/certificates   (identity port) {"node", "csr", "keyGeneration": N},
                                     authorised by a join token (Authorization: Bearer) or the
                                     TLS client certificate. The key's location is the control
                                     plane's to derive: a request naming "keyPath" is refused
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tulle.controlplane.api.routing import Route, json_object, json_response
from tulle.controlplane.services.identity import Caller, IdentityService, SigningRequest
from tulle.controlplane.services.rotation import Rotator, load_import
from tulle.controlplane.services.sessions import SessionService
from tulle.errors import UsageError
from tulle.security import bearer

ROTATE_EXAMPLE = '{"kind": "root" | "issuer", "dryRun": false}'
SIGN_EXAMPLE = '{"node": "books-1.default", "csr": PEM, "keyGeneration": 1}'


def routes(identity: IdentityService, rotator: Rotator, sessions: SessionService
           ) -> list[Route]:
    async def status(request: web.Request) -> web.StreamResponse:
        return json_response(identity.status().to_json())

    async def rotate(request: web.Request) -> web.StreamResponse:
        body = await json_object(request, example=ROTATE_EXAMPLE)
        kind = str(body.get("kind", ""))
        if body.get("dryRun"):
            return json_response({"kind": kind, "plan": rotator.plan(kind)})
        return json_response({"kind": kind, **await rotator.rotate(kind)})

    async def import_pki(request: web.Request) -> web.StreamResponse:
        body = await json_object(request, example='{"root", "issuer", "issuerKey"}')
        ca = identity.ca
        root, issuer = load_import(ca, str(body.get("root", "")).encode(),
                                   str(body.get("issuer", "")).encode(),
                                   str(body.get("issuerKey", "")).encode())
        # Same root: only the issuer changes. A new root: a full root rotation.
        kind = "issuer" if root.id in ca.state.anchors else "root"
        if body.get("dryRun"):
            return json_response({"kind": kind, "plan": rotator.plan(kind)})
        return json_response({"kind": kind, **await rotator.rotate(
            kind, new_root=root, new_issuer=issuer)})

    async def revoke(request: web.Request) -> web.StreamResponse:
        node_id = request.match_info["node"]
        revoked = await identity.revoke(node_id)
        sessions.end(node_id)
        return json_response(revoked.to_json())

    return [
        Route("POST", "/v1/workloads/{node}/revoke", revoke),
        Route("GET", "/v1/identity/status", status),
        Route("POST", "/v1/identity/rotate", rotate),
        Route("POST", "/v1/identity/import", import_pki),
    ]


def signing_routes(identity: IdentityService) -> list[Route]:
    async def sign(request: web.Request) -> web.StreamResponse:
        caller = Caller(bearer(request.headers.get("Authorization")), peer_certificate(request))
        try:
            body = await json_object(request, example=SIGN_EXAMPLE)
        except UsageError:
            # Who asks before what is asked: a stranger gets 403, a presented join token is
            # spent, and only then is the unreadable body refused (400).
            identity.check_caller(caller)
            raise
        signed = await identity.sign(signing_request(body), caller)
        return json_response({"certificate": signed.chain_pem, "serial": signed.serial,
                              "notBefore": signed.not_before, "notAfter": signed.not_after,
                              "trustBundle": signed.trust_bundle, "acked": signed.acked})

    return [Route("POST", "/v1/identity/certificates", sign)]


def signing_request(body: dict[str, Any]) -> SigningRequest:
    """The typed request; what is missing or mistyped is left empty (0) for the service to
    refuse, after it has spent any join token the request presented."""
    generation = body.get("keyGeneration")
    return SigningRequest(
        str(body.get("node") or ""), str(body.get("csr") or ""),
        generation if isinstance(generation, int) and not isinstance(generation, bool) else 0,
        names_key_path="keyPath" in body)


def peer_certificate(request: web.Request) -> bytes | None:
    """The TLS client certificate (DER), if the caller presented one."""
    ssl_object: Any = request.transport.get_extra_info("ssl_object") if request.transport \
        else None
    return ssl_object.getpeercert(binary_form=True) if ssl_object else None
