"""``POST /v1/whatif``: one call evaluated through the config in force (`tulle what-if`).

    {"from": "SERVICE[/WORKLOAD]", "namespace": "NS", "to": "http://HOST/PATH",
     "method": "GET", "headers": [["name", "value"], ...]}
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tulle.controlplane.api.routing import Route, json_object, json_response
from tulle.controlplane.services.mesh import MeshViews
from tulle.errors import UsageError

_EXAMPLE = '{"from": "web", "to": "http://books/list", "method": "GET"}'
MAX_HEADERS = 64


def _text(body: dict[str, Any], name: str, default: str | None = None, limit: int = 2048
          ) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise UsageError(f'"{name}" must be a non-empty string of at most {limit} characters',
                         hint=f"send {_EXAMPLE}")
    return value


def _headers(body: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    raw = body.get("headers", [])
    if not isinstance(raw, list) or len(raw) > MAX_HEADERS or not all(
            isinstance(pair, list) and len(pair) == 2 and all(
                isinstance(part, str) and len(part) <= 8192 for part in pair)
            for pair in raw):
        raise UsageError(f'"headers" must be a list of at most {MAX_HEADERS} [name, value] '
                         "pairs of strings", hint='for example [["x-user", "alice"]]')
    return tuple((name, value) for name, value in raw)


def routes(views: MeshViews) -> list[Route]:
    async def evaluate(request: web.Request) -> web.StreamResponse:
        from tulle.whatif.evaluate import resolve_caller, what_if

        body = await json_object(request, example=_EXAMPLE)
        mesh = views.mesh()
        caller = resolve_caller(mesh, _text(body, "from", limit=127),
                                _text(body, "namespace", "default", limit=63))
        method = _text(body, "method", "GET", limit=16)
        if not method.isalpha():
            raise UsageError(f"method {method!r} is not an HTTP method", hint="GET, POST, ...")
        result = what_if(mesh, caller, _text(body, "to"), method, _headers(body))
        return json_response(result.to_dict())

    return [Route("POST", "/v1/whatif", evaluate)]
