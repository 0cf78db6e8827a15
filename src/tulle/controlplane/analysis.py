"""The live side of `tulle analyze`: ``POST /v1/analyze``.

Live analysis runs here because it needs the store, the registry's workloads and the telemetry
windows. The body may carry documents to overlay on the store, as if applied, so a change can
be checked against the running mesh before it is applied: ``{"documents": [{"source",
"manifest"}], "windowSeconds": 60}``. The answer is the engine's result; suppressions and the
failure threshold are the CLI's business.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from tulle.errors import UsageError

if TYPE_CHECKING:
    from tulle.controlplane.app import ControlPlane

DEFAULT_WINDOW_S = 60.0


def register(router: web.UrlDispatcher, cp: ControlPlane) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else {}
        return web.json_response(analyze_live(cp, body))

    router.add_post("/v1/analyze", handler)


def analyze_live(cp: ControlPlane, body: Any) -> dict[str, Any]:
    from tulle.analysis.run import run_analysis
    from tulle.analysis.traffic import Traffic
    from tulle.controlplane.resources import documents_from_request

    if not isinstance(body, dict):
        raise UsageError("the request body must be a JSON object")
    documents = documents_from_request(body) if body.get("documents") else []
    seconds = _window(body.get("windowSeconds", DEFAULT_WINDOW_S), cp.telemetry.windows.horizon_s)
    traffic = Traffic(cp.telemetry.windows.window(seconds), dict(cp.telemetry.nodes))
    result = run_analysis(documents, cp.resources.resources(), cp.registry.workloads(), traffic)
    return {"mode": "files+live" if documents else "live", "windowSeconds": seconds,
            **result.to_dict()}


def _window(raw: Any, horizon: float) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw <= horizon:
        raise UsageError(f"windowSeconds must be a number of seconds between 1 and "
                         f"{horizon:g}, got {raw!r}", hint="tulle keeps the last 15 minutes")
    return float(raw)
