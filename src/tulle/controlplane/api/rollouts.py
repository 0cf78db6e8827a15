"""Routes for rollouts (see services/rollouts.py).

    GET  /v1/rollouts[?namespace=&name=]
    POST /v1/rollouts/{namespace}/{name}/{pause,resume,abort}
"""

from __future__ import annotations

from aiohttp import web

from tulle.controlplane.api.routing import Route, json_response, query_text
from tulle.controlplane.services.rollouts import RolloutService
from tulle.errors import NotFoundError

ACTIONS = ("pause", "resume", "abort")


def routes(rollouts: RolloutService) -> list[Route]:
    async def rows(request: web.Request) -> web.StreamResponse:
        return json_response({"rollouts": await rollouts.rows(
            query_text(request, "namespace"), query_text(request, "name"))})

    async def control(request: web.Request) -> web.StreamResponse:
        action = request.match_info["action"]
        if action not in ACTIONS:
            raise NotFoundError(f"unknown rollout action {action!r}", hint=", ".join(ACTIONS))
        return json_response(await rollouts.control(
            request.match_info["namespace"], request.match_info["name"], action))

    return [Route("GET", "/v1/rollouts", rows),
            Route("POST", "/v1/rollouts/{namespace}/{name}/{action}", control)]
