"""Changing a sidecar's log levels and reading its Envoy log, through the workload's agent.

    POST /v1/proxies/{node}/logging   {} shows the levels; {"level": L} sets every logger;
                                      {"levels": {"upstream": "debug"}} sets some
    GET  /v1/proxies/{node}/logs      ?tail=N (default 100) or ?since=CURSOR (to follow)

The agent checks levels and components against its Envoy and builds the admin query itself;
its errors come back as usage errors listing the valid choices.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from tulle.controlplane.agents import agent_target
from tulle.errors import NotFoundError, TulleError, UsageError

if TYPE_CHECKING:
    from tulle.controlplane.app import ControlPlane

MAX_TAIL = 10_000


def register(router: web.UrlDispatcher, cp: ControlPlane) -> None:
    async def logging(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            payload = json.loads(body) if body else {}
        except ValueError as exc:
            raise UsageError("the request body must be JSON",
                             hint='send {}, {"level": L} or {"levels": {C: L}}') from exc
        node = request.match_info["node"]
        return web.json_response({"node": node, **await agent_call(
            cp, node, "POST", "/logging", body=payload)})

    async def logs(request: web.Request) -> web.StreamResponse:
        node = request.match_info["node"]
        params: dict[str, str] = {}
        if "since" in request.query:
            params["since"] = request.query["since"]
        else:
            params["tail"] = str(_tail(request.query.get("tail", "100")))
        return web.json_response({"node": node, **await agent_call(
            cp, node, "GET", "/logs", params=params)})

    router.add_post("/v1/proxies/{node}/logging", logging)
    router.add_get("/v1/proxies/{node}/logs", logs)


async def agent_call(cp: ControlPlane, node_id: str, method: str, path: str, *,
                     body: Any = None, params: dict[str, str] | None = None) -> dict[str, Any]:
    """One JSON exchange with the agent of ``node_id``, authenticated with its agent token."""
    agent = agent_target(cp, node_id)
    if agent is None:
        raise NotFoundError(f"no proxy {node_id}",
                            hint="list proxies with `tulle proxy-status`")
    timeout = aiohttp.ClientTimeout(total=15)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as client, \
                client.request(method, agent.url(path), params=params, headers=agent.headers,
                               json=body) as upstream:
            status = upstream.status
            raw = await upstream.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TulleError(f"the agent of {node_id} did not answer: {exc}",
                         hint="check the workload is running: `tulle get workloads`") from exc
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if status == 200 and isinstance(data, dict):
        return data
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        if status == 400:
            raise UsageError(str(error.get("message")), hint=error.get("hint"))
        raise TulleError(f"{node_id}: {error.get('message')}", hint=error.get("hint"))
    if status == 404:
        raise TulleError(f"the agent of {node_id} does not support {path}",
                         hint="restart the workload with this version of tulle")
    raise TulleError(f"the agent of {node_id} answered HTTP {status}",
                     hint="see agent.log in the workload's state directory")


def _tail(value: str) -> int:
    try:
        lines = int(value)
    except ValueError as exc:
        raise UsageError(f"tail must be a whole number, not {value!r}",
                         hint="e.g. ?tail=100") from exc
    if not 0 < lines <= MAX_TAIL:
        raise UsageError(f"tail must be between 1 and {MAX_TAIL}", hint="e.g. ?tail=100")
    return lines
