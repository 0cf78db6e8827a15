"""Resources that select no workload: subsets whose selector matches nothing, and policies
aimed at services that have no instance. Both need the registry's workloads (live only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from tulle.analysis.codes import POLICY_SELECTS_NOTHING, SUBSET_SELECTS_NOTHING
from tulle.analysis.engine import AnalysisContext
from tulle.model.kinds import HTTP_ROUTE, SERVICE, TRAFFIC_POLICY
from tulle.model.mesh import route_backends, route_mirrors, route_parents
from tulle.model.meta import Labels, ResourceKey, ServiceRef, freeze_labels
from tulle.model.policy import TrafficPolicySpec
from tulle.model.resource import Resource
from tulle.model.workload import Workload

KINDS = (SERVICE, HTTP_ROUTE, TRAFFIC_POLICY)


def _selectors(resources: Sequence[Resource]) -> dict[ServiceRef, Labels]:
    return {ServiceRef(r.meta.namespace, r.meta.name): freeze_labels(r.spec.selector)
            for r in resources if r.info is SERVICE and r.spec.selector}


def members(ref: ServiceRef, selectors: dict[ServiceRef, Labels],
            workloads: Sequence[Workload]) -> list[Workload]:
    """The workloads of a service: its selector's matches for a subset, else those that
    registered under it (as the mesh snapshot counts them)."""
    selector = selectors.get(ref)
    if selector is None:
        return [w for w in workloads if w.service_ref == ref]
    return [w for w in workloads if w.namespace == ref.namespace and w.matches(selector)]


def empty_subsets(ctx: AnalysisContext) -> None:
    resources = ctx.resources(*KINDS)
    workloads = ctx.workloads() or ()
    users: dict[ServiceRef, list[str]] = {}
    for route in (r for r in resources if r.info is HTTP_ROUTE):
        for _, ref in route_backends(route) + route_mirrors(route):
            users.setdefault(ref, []).append(str(route.key))
    for ref, selector in _selectors(resources).items():
        if members(ref, _selectors(resources), workloads):
            continue
        here = sorted(f"{w.name} ({_labels(w)})" for w in workloads
                      if w.namespace == ref.namespace)
        used_by = sorted(set(users.get(ref, ())))
        ctx.report(SUBSET_SELECTS_NOTHING, ResourceKey(SERVICE.kind, ref.namespace, ref.name),
                   "spec.selector", selector=_labels_text(selector), namespace=ref.namespace,
                   used_by=f"; used by {', '.join(used_by)}" if used_by else "",
                   workloads=", ".join(here) or "none")


def idle_policies(ctx: AnalysisContext) -> None:
    resources = ctx.resources(*KINDS)
    workloads = ctx.workloads() or ()
    selectors = _selectors(resources)
    declared = {ServiceRef(r.meta.namespace, r.meta.name) for r in resources
                if r.info is SERVICE}
    known = declared | {w.service_ref for w in workloads}
    routes = {r.key: r for r in resources if r.info is HTTP_ROUTE}
    running = ", ".join(sorted({w.service_ref.host for w in workloads})) or "none"
    for policy in (r for r in resources if r.info is TRAFFIC_POLICY):
        spec = cast(TrafficPolicySpec, policy.spec)
        for t, target in enumerate(spec.target_refs):
            namespace = target.namespace or policy.meta.namespace
            if target.kind == "Service":
                ref = ServiceRef(namespace, target.name)
                # An unknown service is TUL0001's to report.
                if ref in known and not members(ref, selectors, workloads):
                    ctx.report(POLICY_SELECTS_NOTHING, policy.key, f"spec.targetRefs[{t}]",
                               target=f"Service {ref.namespace}/{ref.name}", services=running)
                continue
            route = routes.get(ResourceKey(HTTP_ROUTE.kind, namespace, target.name))
            if route is None:
                continue  # TUL0002
            parents = route_parents(route)
            if not any(members(p, selectors, workloads) for p in parents):
                ctx.report(POLICY_SELECTS_NOTHING, policy.key, f"spec.targetRefs[{t}]",
                           target=f"HTTPRoute {namespace}/{target.name} (attached to "
                                  f"{', '.join(p.host for p in parents)})",
                           services=running)


def _labels(workload: Workload) -> str:
    labels = dict(workload.labels) | {"service": workload.service}
    if workload.version:
        labels["version"] = workload.version
    return _labels_text(tuple(sorted(labels.items())))


def _labels_text(labels: Labels) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in labels) + "}"
