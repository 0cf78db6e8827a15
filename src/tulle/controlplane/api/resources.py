"""Routes for resources, analysis, and the mesh as it is now (the history: history.py).

    POST   /v1/resources/apply                        {"documents": [...], "dryRun": false}
    GET    /v1/resources/{kind}[?namespace=]
    GET    /v1/resources/{kind}/{namespace}/{name}
    DELETE /v1/resources/{kind}/{namespace}/{name}
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
    query_text,
)
from tulle.controlplane.services.analysis import DEFAULT_WINDOW_S, AnalysisService
from tulle.controlplane.services.describe import describe_service
from tulle.controlplane.services.mesh import MeshViews
from tulle.controlplane.services.resources import ResourceService
from tulle.errors import ConfigError, Problem
from tulle.model.meta import ServiceRef
from tulle.model.parse import Document
from tulle.store.base import ApplyResult, StoredResource

DOCUMENTS_EXAMPLE = '{"documents": [{"source": ..., "manifest": ...}]}'


def routes(resources: ResourceService, analysis: AnalysisService, views: MeshViews) -> list[Route]:
    async def apply(request: web.Request) -> web.StreamResponse:
        body = await json_object(request, example=DOCUMENTS_EXAMPLE)
        results, warnings = await resources.apply_async(
            documents_from_body(body), dry_run=bool(body.get("dryRun", False)))
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
        force = request.query.get("force", "") in ("1", "true")
        return json_response(_result_view(await resources.delete_async(
            m["kind"], m["namespace"], m["name"], force=force)))

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


def _result_view(result: ApplyResult) -> dict[str, Any]:
    return {"kind": result.key.kind, "namespace": result.key.namespace,
            "name": result.key.name, "action": result.action, "revision": result.revision}


def _stored_view(stored: StoredResource) -> dict[str, Any]:
    return {"manifest": stored.manifest, "revision": stored.revision,
            "createdAt": stored.created_at, "updatedAt": stored.updated_at}
