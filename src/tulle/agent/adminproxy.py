"""The agent's API: read-only Envoy admin pages, for the control plane (and through it the CLI).

Envoy's admin interface can change Envoy's state (drain, quit, log levels), so only the agent
talks to it, over a socket no one else can open (``envoyadmin``). The agent forwards a fixed
list of read-only pages to callers that present the token the agent chose at registration,
with the secrets in Envoy's config redacted (the xDS credential, a tap's access-log token: see
``tulle.security.redact``), so that no reader downstream (the API, `proxy-config`, `check`, bug
reports) ever receives them. Two more routes, for the same callers: ``POST /logging`` changes
log levels (the agent builds Envoy's query from checked input; no other admin POST is possible)
and ``GET /logs`` reads Envoy's own log. ``POST /report`` sends a telemetry report now and
answers with the state of the workload's processes (`tulle diagnose` asks before it judges).
``GET /clock`` tells the host's time (`tulle check` compares the hosts' clocks).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from tulle.agent import http
from tulle.agent.envoyadmin import AdminInterface
from tulle.agent.envoylog import EnvoyLog
from tulle.agent.loglevels import LogLevelError, change_query, parse_loggers
from tulle.security import bearer, redact, tokens_match

READABLE_PAGES = frozenset({"config_dump", "stats", "stats/prometheus", "clusters", "listeners",
                            "server_info", "ready", "memory", "certs", "runtime"})
# The pages that show Envoy's config, and so its secrets: Envoy itself redacts only the fields
# its protos mark sensitive (private keys), not a gRPC service's credentials.
CONFIG_PAGES = frozenset({"config_dump"})


def _text(status: int, text: str) -> http.Response:
    return http.Response(status, {"Content-Type": "text/plain"}, text.encode())


def _json(status: int, data: Any) -> http.Response:
    return http.Response(status, {"Content-Type": "application/json"}, json.dumps(data).encode())


def _error(status: int, message: str, hint: str) -> http.Response:
    return _json(status, {"error": {"message": message, "hint": hint}})


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body) if body else {}
    except RecursionError as exc:  # not a ValueError: "[" * 16384 is a small body
        raise ValueError("the JSON is nested too deeply") from exc


class AdminProxy:
    """Also serves ``/metrics`` (Prometheus) to holders of the mesh's metrics token, a
    read-only credential that cannot read admin pages."""

    def __init__(self, token: str, admin: AdminInterface,
                 metrics: Callable[[], Awaitable[str]] | None = None,
                 metrics_token: str | None = None, envoy_log: EnvoyLog | None = None,
                 report: Callable[[], Awaitable[dict[str, Any]]] | None = None) -> None:
        self._token = token
        self._report = report
        self._envoy_log = envoy_log
        self._admin = admin
        self._metrics = metrics
        self._metrics_token = metrics_token
        self._servers: list[asyncio.Server] = []

    async def start(self, host: str, port: int, *, tls: ssl.SSLContext | None = None,
                    peer_uri: str | None = None) -> None:
        """``tls``: on another host than the control plane, served over TLS to the control
        plane alone (its certificate must carry ``peer_uri``). Each call adds a listener."""
        self._servers.append(await http.serve(host, port, self.handle, admit=self.admit,
                                              tls=tls, peer_uri=peer_uri))

    async def close(self) -> None:
        for server in self._servers:
            server.close()

    def admit(self, head: http.Request) -> http.Response | None:
        """Who may send a body, decided on the request's head before any body byte is read:
        the agent token opens everything, the metrics token only ``/metrics``."""
        presented = bearer(head.headers.get("authorization"))
        if head.path == "/metrics" and self._metrics is not None:
            allowed = [t for t in (self._token, self._metrics_token) if t]
            if not any(tokens_match(t, presented) for t in allowed):
                return _text(401, "missing or wrong metrics token\n")
            return None
        if not tokens_match(self._token, presented):
            return _text(401, "missing or wrong agent token\n")
        content_type = head.headers.get("content-type", "application/json")
        if head.method == "POST" and content_type.partition(";")[0].strip() \
                != "application/json":
            return _error(415, f"the body must be JSON, not {content_type[:60]}",
                          "send Content-Type: application/json")
        return None

    async def handle(self, request: http.Request) -> http.Response:
        """A request :meth:`admit` let through."""
        if request.path == "/metrics" and self._metrics is not None:
            return await self._serve_metrics()
        if request.path == "/logging" and request.method == "POST":
            return await self._logging(request.body)
        if request.path == "/logs" and request.method == "GET":
            return self._logs(request.query)
        if request.path == "/report" and request.method == "POST" and self._report is not None:
            # With its clock: diagnose compares the hosts' clocks with the control plane's.
            return _json(200, {**await self._report(), "time": time.time()})
        if request.path == "/clock" and request.method == "GET":
            return _json(200, {"time": time.time()})  # `tulle check` compares hosts' clocks
        page = request.path.removeprefix("/admin/")
        if request.method != "GET" or not request.path.startswith("/admin/") \
                or page not in READABLE_PAGES:
            return _text(404, "no such page\n")
        target = f"/{page}" + (f"?{request.query}" if request.query else "")
        try:
            upstream = await self._admin.request("GET", target, timeout=10.0)
        except (OSError, http.HttpError, TimeoutError) as exc:
            return _text(502, f"Envoy's admin interface did not answer: {exc}\n")
        content_type = upstream.headers.get("content-type", "text/plain")
        body = upstream.body
        if page in CONFIG_PAGES and upstream.status == 200:
            try:
                body = json.dumps(redact(json.loads(body)), indent=2).encode()
            except ValueError:  # never pass on what could not be redacted
                return _text(502, f"Envoy's {page} is not JSON; not shown, as it may hold "
                                  "secrets\n")
        return http.Response(upstream.status, {"Content-Type": content_type}, body)

    async def _logging(self, body: bytes) -> http.Response:
        """Show, or change then show, Envoy's log levels."""
        try:
            wanted = _json_body(body)
            known = parse_loggers((await self._envoy_logging("")).body.decode())
            query = change_query(wanted, known)
            if query is None:
                return _json(200, {"loggers": known})
            answer = await self._envoy_logging(query)
        except ValueError as exc:  # bad JSON, or a LogLevelError
            hint = exc.hint if isinstance(exc, LogLevelError) else "send a JSON object"
            return _error(400, str(exc), hint)
        except (OSError, http.HttpError, TimeoutError) as exc:
            return _error(502, f"Envoy's admin interface did not answer: {exc}",
                          "check that the sidecar is running")
        if answer.status != 200:
            return _error(502, f"Envoy refused the change: {answer.body.decode()[:200]}",
                          "see `tulle proxy logs`")
        return _json(200, {"loggers": parse_loggers(answer.body.decode())})

    async def _envoy_logging(self, query: str) -> http.Response:
        target = "/logging" + (f"?{query}" if query else "")
        return await self._admin.request("POST", target, timeout=10.0)

    def _logs(self, query: str) -> http.Response:
        if self._envoy_log is None:
            return _error(404, "this agent keeps no Envoy log", "upgrade the workload's tulle")
        params = urllib.parse.parse_qs(query)
        since = params.get("since", [""])[0]
        try:
            lines = int(params.get("tail", ["100"])[0])
        except ValueError:
            return _error(400, "tail must be a whole number", "e.g. tail=100")
        chunk = self._envoy_log.since(since) if since else self._envoy_log.tail(lines)
        return _json(200, {"lines": list(chunk.lines), "cursor": chunk.cursor})

    async def _serve_metrics(self) -> http.Response:
        assert self._metrics is not None
        try:
            text = await self._metrics()
        except (OSError, http.HttpError, TimeoutError, ValueError) as exc:
            return _text(502, f"cannot read Envoy's stats: {exc}\n")
        return http.Response(200, {"Content-Type": "text/plain; version=0.0.4"}, text.encode())
