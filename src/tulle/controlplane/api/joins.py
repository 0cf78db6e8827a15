"""Routes for host join tokens (API port, operators).

    POST /v1/join-tokens                {"service": "books", "namespace": "default",
                                         "ttlSeconds": 3600}: the token, once
    GET  /v1/join-tokens                every token's id, scope, expiry and state
    POST /v1/join-tokens/{id}/revoke    the token stops working
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from tulle.controlplane.api.routing import Route, json_object, json_response
from tulle.controlplane.services.joins import JoinService
from tulle.errors import UsageError
from tulle.identity.hostjoin import DEFAULT_TTL_S
from tulle.model.meta import DEFAULT_NAMESPACE

CREATE_EXAMPLE = '{"service": "books", "namespace": "default", "ttlSeconds": 3600}'


def routes(joins: JoinService) -> list[Route]:
    async def create(request: web.Request) -> web.StreamResponse:
        body = await json_object(request, example=CREATE_EXAMPLE)
        ttl = body.get("ttlSeconds", DEFAULT_TTL_S)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float):
            raise UsageError("ttlSeconds must be a number of seconds",
                             hint=f"send {CREATE_EXAMPLE}")
        return json_response(await asyncio.to_thread(
            joins.create, body.get("service", ""), body.get("namespace") or DEFAULT_NAMESPACE,
            float(ttl)))

    async def listing(request: web.Request) -> web.StreamResponse:
        return json_response({"tokens": await asyncio.to_thread(joins.list)})

    async def revoke(request: web.Request) -> web.StreamResponse:
        return json_response(await asyncio.to_thread(joins.revoke, request.match_info["id"]))

    return [
        Route("POST", "/v1/join-tokens", create),
        Route("GET", "/v1/join-tokens", listing),
        Route("POST", "/v1/join-tokens/{id}/revoke", revoke),
    ]
