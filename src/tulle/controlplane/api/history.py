"""Routes for the history of applied changes, rollback and revert.

    GET    /v1/history[?kind=&namespace=&name=&limit=]
    POST   /v1/rollback                               {"revision": N, "dryRun": false}
    POST   /v1/revert                                 {"revision": N, "dryRun": false}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tulle.controlplane.api.routing import Route, json_object, json_response, query_int
from tulle.controlplane.services.history import HistoryService, Rollback
from tulle.errors import UsageError
from tulle.model.meta import ResourceKey
from tulle.store.timeline import RestorePlan

MAX_HISTORY = 100_000
BODY_EXAMPLE = '{"revision": N, "dryRun": false}'


def routes(history: HistoryService) -> list[Route]:
    async def changes(request: web.Request) -> web.StreamResponse:
        q = request.query
        key = ResourceKey(q["kind"], q.get("namespace", "default"), q.get("name", "")) \
            if "kind" in q else None
        limit = query_int(request, "limit", 100, low=1, high=MAX_HISTORY)
        return json_response([{"revision": c.revision, "at": c.at, "kind": c.key.kind,
                               "namespace": c.key.namespace, "name": c.key.name,
                               "action": c.action, "before": c.before, "after": c.after}
                              for c in await history.changes_async(key, limit)])

    async def rollback(request: web.Request) -> web.StreamResponse:
        body = await json_object(request, example=BODY_EXAMPLE)
        result = await history.rollback_async(_revision(body),
                                              dry_run=bool(body.get("dryRun", False)))
        return json_response(_rollback_view(result))

    async def revert(request: web.Request) -> web.StreamResponse:
        body = await json_object(request, example=BODY_EXAMPLE)
        result = await history.revert_async(_revision(body),
                                            dry_run=bool(body.get("dryRun", False)))
        return json_response(_rollback_view(result))

    return [
        Route("GET", "/v1/history", changes),
        Route("POST", "/v1/rollback", rollback),
        Route("POST", "/v1/revert", revert),
    ]


def _revision(body: Mapping[str, Any]) -> int:
    value = body.get("revision")
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"revision must be a whole number, not {value!r}",
                         hint="pick one from `tulle history`")
    return value


def _rollback_view(result: Rollback) -> dict[str, Any]:
    return {"mode": result.mode, "revision": result.revision, "dryRun": result.dry_run,
            "newRevision": result.new_revision, "storeRevision": result.store_revision,
            "changes": plan_view(result.plan),
            "warnings": [w.to_dict() for w in result.warnings]}


def plan_view(plan: RestorePlan) -> list[dict[str, Any]]:
    def entry(key: ResourceKey, action: str, before: Any, after: Any) -> dict[str, Any]:
        return {"kind": key.kind, "namespace": key.namespace, "name": key.name,
                "action": action, "before": before, "after": after}

    return ([entry(k, "created", None, m) for k, m in plan.create]
            + [entry(k, "configured", now, then) for k, now, then in plan.update]
            + [entry(k, "deleted", m, None) for k, m in plan.delete])
