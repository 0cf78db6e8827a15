"""References to services, routes, rules and Gateways that do not exist.

Apply refuses these (``tulle.model.references``); analyze reports them with codes, reusing the
same checks and hints, so that a file can be checked before it is applied.
"""

from __future__ import annotations

from typing import cast

from tulle.analysis.codes import UNKNOWN_GATEWAY, UNKNOWN_ROUTE, UNKNOWN_RULE, UNKNOWN_SERVICE
from tulle.analysis.engine import AnalysisContext
from tulle.errors import Problem
from tulle.model.kinds import GATEWAY, HTTP_ROUTE, SERVICE, TRAFFIC_POLICY
from tulle.model.mesh import (
    route_backends,
    route_gateways,
    route_mirrors,
    route_parent_fields,
)
from tulle.model.meta import ServiceRef
from tulle.model.policy import PolicyTargetRef, TrafficPolicySpec
from tulle.model.references import known_services, reference_problems
from tulle.model.resource import Resource

KINDS = (SERVICE, HTTP_ROUTE, TRAFFIC_POLICY, GATEWAY)
_FILES_ONLY = (" (not declared in the files analyzed; running workloads were not checked: "
               "analyze with --live to include them)")


def unknown_references(ctx: AnalysisContext) -> None:
    resources = ctx.resources(*KINDS)
    workloads = ctx.workloads()
    known = known_services(resources, (w.service_ref for w in workloads or ()))
    proposed = {r.key: r for r in resources}
    for resource in resources:
        for problem in reference_problems([resource], known, {}, proposed):
            _report(ctx, resource, problem, files_only=workloads is None)


def _report(ctx: AnalysisContext, resource: Resource, problem: Problem, *,
            files_only: bool) -> None:
    field = problem.field
    refs = _service_refs(resource)
    gateways = dict(route_gateways(resource)) if resource.info is HTTP_ROUTE else {}
    if field in gateways:
        gateway = gateways[field]
        ctx.report(UNKNOWN_GATEWAY, resource.key, field, hint=problem.hint,
                   gateway=gateway.name, namespace=gateway.namespace)
    elif field.endswith(".sectionName"):
        target = _target(resource, field)
        ctx.report(UNKNOWN_RULE, resource.key, field, hint=problem.hint,
                   route=f"{target.namespace}/{target.name}",
                   section=_policy_target(resource, field).section_name)
    elif field in refs:
        ref = refs[field]
        ctx.report(UNKNOWN_SERVICE, resource.key, field, hint=problem.hint,
                   service=ref.name, namespace=ref.namespace,
                   context=_FILES_ONLY if files_only else "")
    else:
        target = _target(resource, field)
        ctx.report(UNKNOWN_ROUTE, resource.key, field, hint=problem.hint, route=target.name,
                   namespace=target.namespace)


def _service_refs(resource: Resource) -> dict[str, ServiceRef]:
    """Field path -> service, for every service reference of a route or policy."""
    if resource.info is HTTP_ROUTE:
        refs = dict(route_parent_fields(resource))
        return refs | dict(route_backends(resource)) | dict(route_mirrors(resource))
    spec = cast(TrafficPolicySpec, resource.spec)
    return {f"spec.targetRefs[{t}].name": ServiceRef(target.namespace or resource.meta.namespace,
                                                     target.name)
            for t, target in enumerate(spec.target_refs) if target.kind == "Service"}


def _policy_target(resource: Resource, field: str) -> PolicyTargetRef:
    """The targetRef a field path such as ``spec.targetRefs[2].name`` is in."""
    spec = cast(TrafficPolicySpec, resource.spec)
    return spec.target_refs[int(field.split("[", 1)[1].split("]", 1)[0])]


def _target(resource: Resource, field: str) -> ServiceRef:
    target = _policy_target(resource, field)
    return ServiceRef(target.namespace or resource.meta.namespace, target.name)
