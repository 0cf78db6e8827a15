"""How the API is served: one route table, the error and authentication middlewares, and the
helpers every handler uses to read a request (bounded JSON bodies, query parameters).

Errors are JSON: ``{"error": {"type", "message", "hint"}}``, with a 4xx status for anything the
caller can fix: malformed or too deeply nested JSON, a body that is too large, too slow, of
another content type or compressed, a token that is wrong or not even UTF-8. Authentication
runs before any handler, so no body is read unauthenticated; handlers read bodies only through
:func:`read_body` (bounded in size and time). What a connection may cost before that is
:mod:`tulle.controlplane.api.guard`'s business.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from tulle.controlplane.api.guard import LIMITS, OPEN_ROUTE, ServerLimits, close_untrusted
from tulle.controlplane.api.ui.sessions import COOKIE, UiSessions, readable
from tulle.errors import AuthError, TulleError, UsageError
from tulle.security import bearer, tokens_match

log = logging.getLogger("tulle.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS = {"config": 422, "usage": 400, "not_found": 404, "conflict": 409, "auth": 401,
           "unavailable": 503, "identity": 403}


# The dashboard's routes that need no session: logging in, and its script and style.
UI_OPEN = frozenset({"/ui/login", "/ui/session", "/ui/logout"})


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    name: str | None = None  # the metrics token opens the route named METRICS_ROUTE only


def build_app(routes: Iterable[Route], middlewares: Iterable[Middleware], *,
              limits: ServerLimits) -> web.Application:
    app = web.Application(middlewares=[close_untrusted, _errors, *middlewares],
                          client_max_size=limits.max_body)
    app[LIMITS] = limits
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler, name=route.name)
    return app


# -- middleware ------------------------------------------------------------------------------

@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except TulleError as exc:
        return web.json_response({"error": exc.to_dict()}, status=_STATUS.get(exc.kind, 500))
    except web.HTTPException:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response({"error": {"type": "api", "message": "internal error in the "
                                            "control plane", "hint": "see controlplane.log in "
                                            "the state directory"}}, status=500)


def bearer_auth(token: str, extra: Mapping[str, str] | None = None,
                sessions: UiSessions | None = None) -> Middleware:
    """Every request must carry ``Authorization: Bearer TOKEN``. ``extra``: route name ->
    another token that opens that route, and nothing else. ``sessions``: the dashboard's
    (ui.sessions): its login routes and static files are open, its pages need a session
    cookie, and a session reads a few API routes."""
    extra = dict(extra or {})

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        presented = bearer(request.headers.get("Authorization"))
        other = extra.get(request.match_info.route.name or "")
        if other and tokens_match(other, presented):
            return await handler(request)
        if tokens_match(token, presented):
            return await handler(request)
        if sessions is not None:
            path, session = request.path, request.cookies.get(COOKIE)
            if path in UI_OPEN or path.startswith("/ui/static/"):
                request[OPEN_ROUTE] = True  # not authenticated: the connection stays a stranger's
                return await handler(request)
            if sessions.valid(session) and (path.startswith("/ui") or
                                            readable(request.method, path)):
                return await handler(request)
            if path.startswith("/ui") and request.method == "GET":
                raise web.HTTPSeeOther("/ui/login")
        raise AuthError("missing or wrong API token",
                        hint="send 'Authorization: Bearer TOKEN'; the token is in "
                             "api-token in the state directory")

    return check


# -- reading requests ------------------------------------------------------------------------

async def read_body(request: web.Request) -> bytes:
    """The request's body: at most the app's ``max_body`` bytes, arriving within its
    ``body_timeout_s``, uncompressed."""
    limits = request.app[LIMITS]
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        raise _refusal(web.HTTPUnsupportedMediaType, f"compressed bodies ({encoding}) are not "
                       "accepted", "send the body uncompressed")
    length = request.content_length
    if length is not None and length > limits.max_body:
        raise _too_large(limits.max_body, length)  # before reading a byte of it
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            return await request.read()
    except TimeoutError as exc:
        raise _refusal(web.HTTPRequestTimeout, f"the request body did not arrive within "
                       f"{limits.body_timeout_s:g}s", "send the whole body at once") from exc
    except web.HTTPRequestEntityTooLarge as exc:
        raise _too_large(limits.max_body, None) from exc
    except web.RequestPayloadError as exc:  # a broken chunked encoding, a short body
        raise UsageError(f"the request body is malformed: {exc}",
                         hint="send Content-Length and exactly that many bytes") from exc


async def json_bytes(request: web.Request) -> bytes:
    """The raw body of a request that must be JSON (see :func:`read_body`). Without a
    Content-Type it is taken for JSON; with another one it is refused."""
    content_type = request.headers.get("Content-Type")
    if content_type is not None and request.content_type != "application/json" \
            and not request.content_type.endswith("+json"):
        raise _refusal(web.HTTPUnsupportedMediaType, f"the body must be JSON, not "
                       f"{content_type[:60]}", "send Content-Type: application/json")
    return await read_body(request)


async def json_body(request: web.Request, *, required: bool = True, example: str = "") -> Any:
    """The request's JSON body (see :func:`json_bytes`); ``{}`` when there is none and it is
    not required."""
    raw = await json_bytes(request)
    if not raw:
        if required:
            raise UsageError("the request needs a JSON body",
                             hint=f"send {example}" if example else None)
        return {}
    return _parse_json(raw, example)


def _parse_json(raw: bytes, example: str = "") -> Any:
    """JSON from a caller: anything that is not JSON is a UsageError (a 400)."""
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"the request body is not valid JSON: {exc}",
                         hint=f"send {example}" if example else None) from exc
    except RecursionError as exc:  # not a ValueError; 64 KiB of "[" is enough
        raise UsageError("the request body's JSON is nested too deeply",
                         hint=f"send {example}" if example else None) from exc


def _refusal(kind: type[web.HTTPException], message: str, hint: str) -> web.HTTPException:
    return kind(text=json.dumps({"error": {"type": "usage", "message": message, "hint": hint}}),
                content_type="application/json")


def _too_large(limit: int, size: int | None) -> web.HTTPException:
    body = {"error": {"type": "usage", "message": f"the request body is larger than the "
                      f"{_size(limit)} this port accepts", "hint": "send a smaller body (with "
                      "`tulle apply`: fewer files at once)"}}
    return web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size or limit + 1,
                                         text=json.dumps(body), content_type="application/json")


def _size(count: int) -> str:
    return f"{count >> 20} MiB" if count >= 1 << 20 else f"{count >> 10} KiB"


async def json_object(request: web.Request, *, required: bool = True,
                      example: str = "") -> dict[str, Any]:
    body = await json_body(request, required=required, example=example)
    if not isinstance(body, dict):
        raise UsageError("the request body must be a JSON object",
                         hint=f"send {example}" if example else None)
    return body


def query_text(request: web.Request, name: str) -> str | None:
    """A query parameter; None when absent or empty."""
    return request.query.get(name) or None


def query_int(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise UsageError(f"{name} must be a whole number, not {raw!r}",
                         hint=f"e.g. ?{name}={default}") from exc
    if not low <= value <= high:
        raise UsageError(f"{name} must be between {low} and {high}, not {value}",
                         hint=f"e.g. ?{name}={default}")
    return value


def query_seconds(request: web.Request, name: str, default: float) -> float:
    """A duration: a number of seconds, or with a unit (``30s``, ``5m``, ``1h``)."""
    return parse_seconds(request.query.get(name), default, name)


def parse_seconds(raw: Any, default: float, what: str = "window") -> float:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return default
    if isinstance(raw, bool):
        raise UsageError(f"{what} must be a duration such as 30s or 5m, got {raw!r}")
    if isinstance(raw, int | float):
        return float(raw)
    text = str(raw).strip()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except ValueError as exc:
        raise UsageError(f"{what} must be a duration such as 30s or 5m, got {text!r}") from exc


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)
