"""How the API is served: one route table, the error and authentication middlewares, and the
helpers every handler uses to read a request (bounded JSON bodies, query parameters).

Errors are JSON: ``{"error": {"type", "message", "hint"}}``, with a 4xx status for anything the
caller can fix. Authentication runs before any handler, so no body is read unauthenticated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from tulle.errors import AuthError, TulleError, UsageError
from tulle.security import bearer, tokens_match

log = logging.getLogger("tulle.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS = {"config": 422, "usage": 400, "not_found": 404, "conflict": 409, "auth": 401,
           "unavailable": 503, "identity": 403}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    name: str | None = None  # the metrics token opens the route named METRICS_ROUTE only


def build_app(routes: Iterable[Route], middlewares: Iterable[Middleware], *,
              max_body: int) -> web.Application:
    app = web.Application(middlewares=[_errors, *middlewares], client_max_size=max_body)
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


def bearer_auth(token: str, extra: Mapping[str, str] | None = None) -> Middleware:
    """Every request must carry ``Authorization: Bearer TOKEN``. ``extra``: route name ->
    another token that opens that route, and nothing else."""
    extra = dict(extra or {})

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        presented = bearer(request.headers.get("Authorization"))
        other = extra.get(request.match_info.route.name or "")
        if other and tokens_match(other, presented):
            return await handler(request)
        if not tokens_match(token, presented):
            raise AuthError("missing or wrong API token",
                            hint="send 'Authorization: Bearer TOKEN'; the token is in "
                                 "api-token in the state directory")
        return await handler(request)

    return check


# -- reading requests ------------------------------------------------------------------------

async def json_body(request: web.Request, *, required: bool = True, example: str = "") -> Any:
    """The request's JSON body (bounded by the app's ``max_body``); ``{}`` when there is none
    and it is not required."""
    raw = await request.read()
    if not raw:
        if required:
            raise UsageError("the request needs a JSON body",
                             hint=f"send {example}" if example else None)
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"the request body is not valid JSON: {exc}",
                         hint=f"send {example}" if example else None) from exc


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
