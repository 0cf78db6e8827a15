"""Routes for resources, their history, analysis, and the mesh as it is now.

    POST   /v1/resources/apply                        {"documents": [...], "dryRun": false}
    GET    /v1/resources/{kind}[?namespace=]
    GET    /v1/resources/{kind}/{namespace}/{name}
    DELETE /v1/resources/{kind}/{namespace}/{name}
    GET    /v1/history[?kind=&namespace=&name=&limit=]
    POST   /v1/rollback                               {"revision": N, "dryRun": false}
    POST   /v1/analyze                                {"documents": [...], "windowSeconds": 60}
    GET    /v1/services[?namespace=]
    GET    /v1/services/{namespace}/{name}/describe
    GET    /v1/workloads[?namespace=&service=]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tulle.controlplane.api.routing import (
    Route,
    json_object,
    json_response,
    parse_seconds,
    query_int,
    query_text,
)
from tulle.controlplane.services.analysis import DEFAULT_WINDOW_S, AnalysisService
from tulle.controlplane.services.describe import describe_service
from tulle.controlplane.services.history import HistoryService, Rollback
from tulle.controlplane.services.mesh import MeshViews
from tulle.controlplane.services.resources import ResourceService
from tulle.errors import ConfigError, Problem, UsageError
from tulle.model.meta import ResourceKey, ServiceRef
from tulle.model.parse import Document
from tulle.store.base import ApplyResult, StoredResource
from tulle.store.timeline import RestorePlan

MAX_HISTORY = 100_000
DOCUMENTS_EXAMPLE = '{"documents": [{"source": ..., "manifest": ...}]}'


def routes(resources: ResourceService, history: HistoryService, analysis: AnalysisService,
           views: MeshViews) -> list[Route]:
    async def apply(request: web.Request) -> web.StreamResponse:
        body = await json_object(request, example=DOCUMENTS_EXAMPLE)
        results, warnings = resources.apply(documents_from_body(body),
                                            dry_run=bool(body.get("dryRun", False)))
        return json_response({"results": [_result_view(r) for r in results],
                              "warnings": [w.to_dict() for w in warnings]})

    async def list_kind(request: web.Request) -> web.StreamResponse:
        stored = resources.list(request.match_info["kind"], query_text(request, "namespace"))
        return json_response([_stored_view(s) for s in stored])

    async def get_one(request: web.Request) -> web.StreamResponse:
        m = request.match_info
        return json_response(_stored_view(resources.get(m["kind"], m["namespace"], m["name"])))

    async def delete_one(request: web.Request) -> web.StreamResponse:
        m = request.match_info
        return json_response(_result_view(resources.delete(m["kind"], m["namespace"],
                                                           m["name"])))

    async def changes(request: web.Request) -> web.StreamResponse:
        q = request.query
        key = ResourceKey(q["kind"], q.get("namespace", "default"), q.get("name", "")) \
            if "kind" in q else None
        limit = query_int(request, "limit", 100, low=1, high=MAX_HISTORY)
        return json_response([{"revision": c.revision, "at": c.at, "kind": c.key.kind,
                               "namespace": c.key.namespace, "name": c.key.name,
                               "action": c.action, "before": c.before, "after": c.after}
                              for c in history.changes(key, limit)])

    async def rollback(request: web.Request) -> web.StreamResponse:
        body = await json_object(request, example='{"revision": N, "dryRun": false}')
        result = history.rollback(_revision(body), dry_run=bool(body.get("dryRun", False)))
        return json_response(_rollback_view(result))

    async def analyze(request: web.Request) -> web.StreamResponse:
        body = await json_object(request, required=False, example=DOCUMENTS_EXAMPLE)
        documents = documents_from_body(body) if body.get("documents") else []
        window = parse_seconds(body.get("windowSeconds"), DEFAULT_WINDOW_S, "windowSeconds")
        return json_response(analysis.analyze(documents, window))

    async def services(request: web.Request) -> web.StreamResponse:
        return json_response(views.services(query_text(request, "namespace")))

    async def describe(request: web.Request) -> web.StreamResponse:
        m = request.match_info
        return json_response(describe_service(views.mesh(),
                                              ServiceRef(m["namespace"], m["name"])))

    async def workloads(request: web.Request) -> web.StreamResponse:
        return json_response(views.workloads(query_text(request, "namespace"),
                                             query_text(request, "service")))

    return [
        Route("POST", "/v1/resources/apply", apply),
        Route("GET", "/v1/resources/{kind}", list_kind),
        Route("GET", "/v1/resources/{kind}/{namespace}/{name}", get_one),
        Route("DELETE", "/v1/resources/{kind}/{namespace}/{name}", delete_one),
        Route("GET", "/v1/history", changes),
        Route("POST", "/v1/rollback", rollback),
        Route("POST", "/v1/analyze", analyze),
        Route("GET", "/v1/services", services),
        Route("GET", "/v1/services/{namespace}/{name}/describe", describe),
        Route("GET", "/v1/workloads", workloads),
    ]


def documents_from_body(body: Mapping[str, Any]) -> list[Document]:
    """The documents of an apply or analyze body."""
    if not isinstance(body.get("documents"), list):
        raise ConfigError([Problem(message=f"the request body must be {DOCUMENTS_EXAMPLE}")])
    documents = []
    for index, item in enumerate(body["documents"]):
        if not isinstance(item, Mapping):
            raise ConfigError([Problem(message=f"documents[{index}] must be a mapping")])
        documents.append(Document(source=str(item.get("source", f"document {index + 1}")),
                                  body=item.get("manifest")))
    return documents


def _revision(body: Mapping[str, Any]) -> int:
    value = body.get("revision")
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"revision must be a whole number, not {value!r}",
                         hint="pick one from `tulle history`")
    return value


def _result_view(result: ApplyResult) -> dict[str, Any]:
    return {"kind": result.key.kind, "namespace": result.key.namespace,
            "name": result.key.name, "action": result.action, "revision": result.revision}


def _stored_view(stored: StoredResource) -> dict[str, Any]:
    return {"manifest": stored.manifest, "revision": stored.revision,
            "createdAt": stored.created_at, "updatedAt": stored.updated_at}


def _rollback_view(result: Rollback) -> dict[str, Any]:
    return {"revision": result.revision, "dryRun": result.dry_run,
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
