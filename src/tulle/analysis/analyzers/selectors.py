"""Resources that select no workload: subsets whose selector matches nothing, and policies
aimed at services that have no instance. Both need the registry's workloads: they run on the
live mesh and at apply time, not on files alone."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


class Members:
    """The workloads of each service, as the mesh snapshot counts them: a subset's are its
    selector's matches in its namespace, any other service's those that registered under
    it. Indexed once, because apply runs these analyzers over the whole store twice."""

    def __init__(self, resources: Sequence[Resource], workloads: Sequence[Workload]) -> None:
        self.selectors = _selectors(resources)
        self._registered: dict[ServiceRef, list[Workload]] = {}
        self._namespaces: dict[str, list[Workload]] = {}
        for workload in workloads:
            self._registered.setdefault(workload.service_ref, []).append(workload)
            self._namespaces.setdefault(workload.namespace, []).append(workload)

    def of(self, ref: ServiceRef) -> list[Workload]:
        selector = self.selectors.get(ref)
        if selector is None:
            return self._registered.get(ref, [])
        # A workload's "service" label is always the service it registered under, so a
        # selector that names one can only match that service's workloads.
        service = dict(selector).get("service")
        candidates = self.in_namespace(ref.namespace) if service is None else \
            self._registered.get(ServiceRef(ref.namespace, service), [])
        return [w for w in candidates if w.matches(selector)]

    def in_namespace(self, namespace: str) -> list[Workload]:
        return self._namespaces.get(namespace, [])


def empty_subsets(ctx: AnalysisContext) -> None:
    resources = ctx.resources(*KINDS)
    members = Members(resources, ctx.workloads() or ())
    users: dict[ServiceRef, list[str]] = {}
    for route in (r for r in resources if r.info is HTTP_ROUTE):
        for _, ref in route_backends(route) + route_mirrors(route):
            users.setdefault(ref, []).append(str(route.key))
    for ref, selector in members.selectors.items():
        if members.of(ref):
            continue
        here = sorted(f"{w.name} ({_labels(w)})" for w in members.in_namespace(ref.namespace))
        used_by = sorted(set(users.get(ref, ())))
        ctx.report(SUBSET_SELECTS_NOTHING, ResourceKey(SERVICE.kind, ref.namespace, ref.name),
                   "spec.selector", selector=_labels_text(selector), namespace=ref.namespace,
                   used_by=f"; used by {', '.join(used_by)}" if used_by else "",
                   workloads=", ".join(here) or "none")


def idle_policies(ctx: AnalysisContext) -> None:
    resources = ctx.resources(*KINDS)
    workloads = ctx.workloads() or ()
    members = Members(resources, workloads)
    declared = {ServiceRef(r.meta.namespace, r.meta.name) for r in resources
                if r.info is SERVICE}
    known = declared | {w.service_ref for w in workloads}
    routes = {r.key: r for r in resources if r.info is HTTP_ROUTE}
    for policy in (r for r in resources if r.info is TRAFFIC_POLICY):
        spec = cast(TrafficPolicySpec, policy.spec)
        for t, target in enumerate(spec.target_refs):
            namespace = target.namespace or policy.meta.namespace
            if target.kind == "Service":
                ref = ServiceRef(namespace, target.name)
                # An unknown service is TUL0001's to report.
                if ref in known and not members.of(ref):
                    ctx.report(POLICY_SELECTS_NOTHING, policy.key, f"spec.targetRefs[{t}]",
                               target=f"Service {ref.namespace}/{ref.name}",
                               services=_running(workloads))
                continue
            route = routes.get(ResourceKey(HTTP_ROUTE.kind, namespace, target.name))
            if route is None:
                continue  # TUL0002
            parents = route_parents(route)
            if not any(members.of(p) for p in parents):
                ctx.report(POLICY_SELECTS_NOTHING, policy.key, f"spec.targetRefs[{t}]",
                           target=f"HTTPRoute {namespace}/{target.name} (attached to "
                                  f"{', '.join(p.host for p in parents)})",
                           services=_running(workloads))


def _running(workloads: Iterable[Workload]) -> str:
    """The services that run: built only for a message (every apply runs this analyzer twice
    over the whole store, and most meshes have no idle policy)."""
    return ", ".join(sorted({w.service_ref.host for w in workloads})) or "none"


def _labels(workload: Workload) -> str:
    labels = dict(workload.labels) | {"service": workload.service}
    if workload.version:
        labels["version"] = workload.version
    return _labels_text(tuple(sorted(labels.items())))


def _labels_text(labels: Labels) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in labels) + "}"
