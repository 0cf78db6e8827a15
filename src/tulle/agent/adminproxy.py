"""The agent's API: read-only Envoy admin pages, for the control plane (and through it the CLI).

Envoy's admin port can change Envoy's state (drain, quit, log levels), so it stays on loopback
and only the agent talks to it. The agent forwards a fixed list of read-only pages to callers
that present the token the agent chose at registration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tulle.agent import http
from tulle.security import bearer, tokens_match

READABLE_PAGES = frozenset({"config_dump", "stats", "stats/prometheus", "clusters", "listeners",
                            "server_info", "ready", "memory", "certs", "runtime"})


def _text(status: int, text: str) -> http.Response:
    return http.Response(status, {"Content-Type": "text/plain"}, text.encode())


class AdminProxy:
    """Also serves ``/metrics`` (Prometheus) to holders of the mesh's metrics token, a
    read-only credential that cannot read admin pages."""

    def __init__(self, token: str, admin_port: int,
                 metrics: Callable[[], Awaitable[str]] | None = None,
                 metrics_token: str | None = None) -> None:
        self._token = token
        self._admin_port = admin_port
        self._metrics = metrics
        self._metrics_token = metrics_token
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await http.serve(host, port, self.handle)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def handle(self, request: http.Request) -> http.Response:
        presented = bearer(request.headers.get("authorization"))
        if request.path == "/metrics" and self._metrics is not None:
            return await self._serve_metrics(presented)
        if not tokens_match(self._token, presented):
            return _text(401, "missing or wrong agent token\n")
        page = request.path.removeprefix("/admin/")
        if request.method != "GET" or not request.path.startswith("/admin/") \
                or page not in READABLE_PAGES:
            return _text(404, "no such page\n")
        target = f"/{page}" + (f"?{request.query}" if request.query else "")
        try:
            upstream = await http.request("127.0.0.1", self._admin_port, "GET", target,
                                          timeout=10.0)
        except (OSError, http.HttpError, TimeoutError) as exc:
            return _text(502, f"Envoy's admin interface did not answer: {exc}\n")
        content_type = upstream.headers.get("content-type", "text/plain")
        return http.Response(upstream.status, {"Content-Type": content_type}, upstream.body)

    async def _serve_metrics(self, presented: str | None) -> http.Response:
        allowed = [t for t in (self._token, self._metrics_token) if t]
        if presented is None or not any(tokens_match(t, presented) for t in allowed):
            return _text(401, "missing or wrong metrics token\n")
        assert self._metrics is not None
        try:
            text = await self._metrics()
        except (OSError, http.HttpError, TimeoutError, ValueError) as exc:
            return _text(502, f"cannot read Envoy's stats: {exc}\n")
        return http.Response(200, {"Content-Type": "text/plain; version=0.0.4"}, text.encode())
