"""Routes for agents on other hosts, on the identity port (TLS; `tulle up --listen ADDR`).

    GET  /v1/join/bundle                         no credential: the trust bundle and trust
                                                 domain (public), which a joining agent checks
                                                 against the CA fingerprint it was given
    POST /v1/agent/sessions                      register and hold the session (NDJSON, as on
                                                 the API port): the first time with
                                                 ``Authorization: Bearer <join token>``, spent
                                                 for that one workload; later (reconnects)
                                                 with the workload's certificate as the TLS
                                                 client certificate, the one issued to that
                                                 very node (by this replica or another)
    POST /v1/agent/workloads/{node}/state        the client certificate the CA issued to
    POST /v1/agent/workloads/{node}/telemetry    that node, and to no other instance

Who asks is judged before the body is read: a request with neither a valid join token nor a
certificate of the mesh is refused (403) unread. The API token is never used here: an agent on
another host holds nothing that opens the operators' API.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from tulle.controlplane.api.agents import (
    parse_registration,
    parse_report,
    state_response,
    stream_session,
)
from tulle.controlplane.api.guard import trust_connection
from tulle.controlplane.api.identity import peer_certificate
from tulle.controlplane.api.routing import Route, json_bytes, json_response
from tulle.controlplane.services.identity import IdentityService
from tulle.controlplane.services.joins import JoinService
from tulle.controlplane.services.sessions import SessionService
from tulle.controlplane.services.telemetry import TelemetryService
from tulle.errors import IdentityError
from tulle.identity.hostjoin import PREFIX
from tulle.security import bearer

_NO_CREDENTIAL = ("present a join token (Authorization: Bearer tj1...) or the workload's "
                  "certificate")


def routes(sessions: SessionService, identity: IdentityService, joins: JoinService,
           telemetry: TelemetryService) -> list[Route]:
    async def trust_bundle(request: web.Request) -> web.StreamResponse:
        return json_response({"trustDomain": identity.ca.trust_domain,
                              "trustBundle": identity.ca.bundle_pem()})

    async def open_session(request: web.Request) -> web.StreamResponse:
        token = bearer(request.headers.get("Authorization"))
        certificate = peer_certificate(request)
        joining = token.startswith(f"{PREFIX}.")
        if joining:
            await asyncio.to_thread(joins.check, token)  # not spent yet: the body names whom
        elif certificate:
            presented = identity.ca.verify_leaf(certificate)
        else:
            raise IdentityError(_NO_CREDENTIAL, hint="make a join token on the control "
                                "plane's host: `tulle token create --service NAME`")
        trust_connection(request)  # a session lasts: it must not count as a stranger's
        workload, credentials = parse_registration(await json_bytes(request), remote=True)
        expected = identity.spiffe_id_of(workload)
        if joining:
            if workload.account != workload.service:
                raise IdentityError(
                    f"a join token admits the identity of service {workload.service}, not "
                    f"service account {workload.account}",
                    hint="run the agent without --service-account")
            await asyncio.to_thread(joins.redeem, token, workload.service, workload.namespace,
                                    workload.node_id)
        elif presented != expected:
            raise IdentityError(f"the client certificate is {presented}, not {expected}",
                                hint="an agent reconnects with its own workload's "
                                     "certificate; a new workload needs a join token")
        return await stream_session(request, sessions, workload, credentials,
                                    None if joining else certificate)

    async def set_state(request: web.Request) -> web.StreamResponse:
        return await state_response(request, sessions, _authorised(request, identity))

    async def report(request: web.Request) -> web.StreamResponse:
        node = _authorised(request, identity)
        telemetry.receive(node, parse_report(node, await json_bytes(request)))
        return json_response({"ok": True})

    return [
        Route("GET", "/v1/join/bundle", trust_bundle),
        Route("POST", "/v1/agent/sessions", open_session),
        Route("POST", "/v1/agent/workloads/{node}/state", set_state),
        Route("POST", "/v1/agent/workloads/{node}/telemetry", report),
    ]


def _authorised(request: web.Request, identity: IdentityService) -> str:
    """The node of the URL, if the client certificate is one the CA issued to it."""
    node = request.match_info["node"]
    certificate = peer_certificate(request)
    if not certificate:
        raise IdentityError(_NO_CREDENTIAL, hint="the agent presents its workload's "
                            "certificate as the TLS client certificate")
    identity.authorise_node(certificate, node)
    trust_connection(request)
    return node
