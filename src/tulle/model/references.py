"""Checks across resources: does every reference name something that exists?

A service is known when a Service resource declares it (already stored or in the same batch) or
when a workload is registered under it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import cast

from tulle.errors import Problem
from tulle.model.authz import AuthorizationPolicySpec
from tulle.model.external import ExternalServiceSpec
from tulle.model.kinds import (
    AUTHORIZATION_POLICY,
    EXTERNAL_SERVICE,
    GATEWAY,
    HTTP_ROUTE,
    ROLLOUT,
    SERVICE,
    SERVICE_LEVEL_OBJECTIVE,
    TRAFFIC_POLICY,
    closest,
)
from tulle.model.mesh import route_backends, route_gateways, route_mirrors, route_parent_fields
from tulle.model.meta import ResourceKey, ServiceRef
from tulle.model.policy import TrafficPolicySpec
from tulle.model.resource import Resource
from tulle.model.rollout import (
    MANAGED_BY,
    STATUS,
    RolloutSpec,
    RolloutStatus,
    subset_name,
    subset_selector,
)
from tulle.model.slo import ServiceLevelObjectiveSpec


def known_services(resources: Iterable[Resource],
                   workload_services: Iterable[ServiceRef]) -> frozenset[ServiceRef]:
    declared = {ServiceRef(r.meta.namespace, r.meta.name) for r in resources if r.info is SERVICE}
    return frozenset(declared | set(workload_services))


def reference_problems(batch: Iterable[Resource], known: frozenset[ServiceRef],
                       sources: Mapping[ResourceKey, str],
                       proposed: Mapping[ResourceKey, Resource] | None = None) -> list[Problem]:
    """Problems with references made by the resources of ``batch``. ``proposed`` is every
    resource as it would be after the apply (for references to routes)."""
    problems: list[Problem] = []
    for resource in batch:
        source = sources.get(resource.key, "")
        if resource.info is TRAFFIC_POLICY:
            problems += _policy_targets(resource, known, proposed or {}, source)
            continue
        if resource.info is AUTHORIZATION_POLICY:
            problems += _authz_target(resource, known, source, proposed or {})
            continue
        if resource.info is EXTERNAL_SERVICE:
            problems += _external_host(resource, known, proposed or {}, source)
            continue
        if resource.info is SERVICE_LEVEL_OBJECTIVE:
            problems += _slo_target(resource, known, proposed or {}, source)
            continue
        if resource.info is ROLLOUT:
            problems += _rollout(resource, known, proposed or {}, source)
            continue
        if resource.info is not HTTP_ROUTE:
            continue
        refs = route_parent_fields(resource) + route_backends(resource) + route_mirrors(resource)
        for field, ref in refs:
            if ref not in known:
                problems.append(_unknown_service(resource, field, ref, known, source))
        for field, gateway in route_gateways(resource):
            if gateway not in (proposed or {}):
                declared = sorted(k.name for k in (proposed or {}) if k.kind == GATEWAY.kind
                                  and k.namespace == gateway.namespace)
                problems.append(Problem(
                    source=source, resource=str(resource.key), field=field,
                    message=f'unknown Gateway "{gateway.name}" in namespace '
                            f'"{gateway.namespace}"',
                    hint=f"Gateways in {gateway.namespace}: {', '.join(declared) or 'none'}; "
                         "apply the Gateway first (docs/resources.md#gateway)"))
    return problems


def _policy_targets(resource: Resource, known: frozenset[ServiceRef],
                    proposed: Mapping[ResourceKey, Resource], source: str) -> list[Problem]:
    problems = []
    spec = cast(TrafficPolicySpec, resource.spec)
    for t, target in enumerate(spec.target_refs):
        namespace = target.namespace or resource.meta.namespace
        field = f"spec.targetRefs[{t}]"
        if target.kind == "Service":
            ref = ServiceRef(namespace, target.name)
            if ref not in known:
                problems.append(_unknown_service(resource, f"{field}.name", ref, known, source))
            continue
        problems += _route_rule(resource, field, namespace, target.name,
                                target.section_name, proposed, source)
    return problems


def _slo_target(resource: Resource, known: frozenset[ServiceRef],
                proposed: Mapping[ResourceKey, Resource], source: str) -> list[Problem]:
    """An SLO's service, or its route and named rule, in the SLO's namespace."""
    target = cast(ServiceLevelObjectiveSpec, resource.spec).target_ref
    namespace = resource.meta.namespace
    if target.kind == "Service":
        ref = ServiceRef(namespace, target.name)
        if ref in known:
            return []
        return [_unknown_service(resource, "spec.targetRef.name", ref, known, source,
                                 namespace_field="metadata.namespace")]
    return _route_rule(resource, "spec.targetRef", namespace, target.name,
                       target.section_name, proposed, source)


def _rollout(resource: Resource, known: frozenset[ServiceRef],
             proposed: Mapping[ResourceKey, Resource], source: str) -> list[Problem]:
    """A rollout's service, and the names it writes under: its subsets (a Service of that
    name must select what the rollout would) and its HTTPRoute (only one it wrote)."""
    spec = cast(RolloutSpec, resource.spec)
    namespace, name = resource.meta.namespace, resource.meta.name
    ref = ServiceRef(namespace, spec.service)
    if ref not in known:
        return [_unknown_service(resource, "spec.service", ref, known, source,
                                 namespace_field="metadata.namespace")]
    problems = []
    for side in ("stable", "canary"):
        version = getattr(spec, side)
        subset = proposed.get(ResourceKey(SERVICE.kind, namespace, subset_name(spec.service,
                                                                               version)))
        wanted = subset_selector(spec.service, version)
        if subset is not None and dict(subset.spec.selector or {}) != wanted:
            problems.append(Problem(
                source=source, resource=str(resource.key), field=f"spec.{side}",
                message=f"Service {namespace}/{subset.meta.name} exists and does not select "
                        f"{wanted}, which the rollout's {side} subset must",
                hint=f"set its spec.selector to {wanted}, or delete it: the rollout writes it"))
    # A rollout that has not moved yet may not take over a route it did not write; one that
    # has (its status says so) wrote it, and someone's edit since only stops it.
    route = proposed.get(ResourceKey(HTTP_ROUTE.kind, namespace, name))
    owner = f"rollout/{name}"
    moved = RolloutStatus.from_json(dict(resource.meta.annotations).get(STATUS)).moves
    if route is not None and not moved and \
            dict(route.meta.annotations).get(MANAGED_BY) != owner:
        problems.append(Problem(
            source=source, resource=str(resource.key), field="metadata.name",
            message=f"HTTPRoute {namespace}/{name} exists and was not written by this rollout, "
                    "which routes through an HTTPRoute of its own name",
            hint="name the Rollout otherwise (and delete that route if it routes the same "
                 "service), or delete the route"))
    return problems


def _route_rule(resource: Resource, field: str, namespace: str, name: str,
                section: str | None, proposed: Mapping[ResourceKey, Resource], source: str
                ) -> list[Problem]:
    """Problems with a reference to an HTTPRoute (and to one of its named rules)."""
    route = proposed.get(ResourceKey(HTTP_ROUTE.kind, namespace, name))
    if route is None:
        routes = sorted(k.name for k in proposed if k.kind == HTTP_ROUTE.kind
                        and k.namespace == namespace)
        return [Problem(source=source, resource=str(resource.key), field=f"{field}.name",
                        message=f'unknown HTTPRoute "{name}" in namespace "{namespace}"',
                        hint=f"routes in {namespace}: {', '.join(routes) or 'none'}")]
    if section is not None:
        names = [rule.name for rule in route.spec.rules if rule.name]
        if section not in names:
            return [Problem(source=source, resource=str(resource.key),
                            field=f"{field}.sectionName",
                            message=f'HTTPRoute {namespace}/{name} has no rule named '
                                    f'"{section}"',
                            hint="its named rules: " + (", ".join(names) or
                                                        "none (name them with rules[].name)"))]
    return []


def _authz_target(resource: Resource, known: frozenset[ServiceRef], source: str,
                  proposed: Mapping[ResourceKey, Resource]) -> list[Problem]:
    target = cast(AuthorizationPolicySpec, resource.spec).target_ref
    namespace = resource.meta.namespace
    if target.kind == "ExternalService" and target.name is not None:
        key = ResourceKey(EXTERNAL_SERVICE.kind, namespace, target.name)
        if key not in proposed:
            declared = sorted(k.name for k in proposed if k.kind == EXTERNAL_SERVICE.kind
                              and k.namespace == namespace)
            return [Problem(source=source, resource=str(resource.key),
                            field="spec.targetRef.name",
                            message=f'unknown ExternalService "{target.name}" in namespace '
                                    f'"{namespace}"',
                            hint=f"ExternalServices in {namespace}: "
                                 f"{', '.join(declared) or 'none'}; the policy goes in the "
                                 "ExternalService's namespace")]
        return []
    if target.kind == "Namespace" and target.name not in (None, namespace):
        return [Problem(source=source, resource=str(resource.key), field="spec.targetRef.name",
                        message=f'a policy in namespace "{namespace}" can target only its own '
                                f'namespace, not "{target.name}"',
                        hint=f"set metadata.namespace: {target.name}, or remove the name")]
    if target.kind == "Service" and target.name is not None:
        ref = ServiceRef(namespace, target.name)
        if ref not in known:
            return [_unknown_service(resource, "spec.targetRef.name", ref, known, source,
                                     namespace_field="metadata.namespace")]
    return []


def _external_host(resource: Resource, known: frozenset[ServiceRef],
                   proposed: Mapping[ResourceKey, Resource], source: str) -> list[Problem]:
    """An ExternalService's host must be its own: not a mesh service's NAME.NAMESPACE, and
    not another ExternalService's."""
    host = cast(ExternalServiceSpec, resource.spec).host
    for ref in known:
        if host == f"{ref.name}.{ref.namespace}":
            return [Problem(source=source, resource=str(resource.key), field="spec.host",
                            message=f'"{host}" is how the mesh names service {ref.namespace}/'
                                    f"{ref.name}; calls to it stay inside the mesh",
                            hint="name the host outside the mesh by its full DNS name")]
    for key, other in sorted(proposed.items()):
        if other.info is EXTERNAL_SERVICE and key != resource.key and \
                cast(ExternalServiceSpec, other.spec).host == host:
            return [Problem(source=source, resource=str(resource.key), field="spec.host",
                            message=f'ExternalService {key.namespace}/{key.name} already '
                                    f'declares host "{host}"',
                            hint="declare each host once; list all its ports in one "
                                 "ExternalService's spec.ports")]
    return []


def _unknown_service(resource: Resource, field: str, ref: ServiceRef,
                     known: frozenset[ServiceRef], source: str,
                     namespace_field: str | None = None) -> Problem:
    same_namespace = sorted(s.name for s in known if s.namespace == ref.namespace)
    guess = closest(ref.name, same_namespace)
    hint = f'did you mean "{guess}"? ' if guess else ""
    # The usual cross-namespace slip: the name is right, the namespace defaulted to the route's.
    elsewhere = sorted(s.namespace for s in known if s.name == ref.name)
    if elsewhere:
        where = namespace_field or f"{field.removesuffix('.name')}.namespace"
        hint += f'"{ref.name}" exists in namespace {", ".join(elsewhere)}: set {where}. '
    if same_namespace:
        hint += f"known services in {ref.namespace}: {', '.join(same_namespace)}. "
    hint += (f"Apply a Service named {ref.name} in namespace {ref.namespace}, or start a "
             f"workload with `tulle run --service {ref.name} --namespace {ref.namespace}`")
    return Problem(source=source, resource=str(resource.key), field=field,
                   message=f'unknown service "{ref.name}" in namespace "{ref.namespace}"',
                   hint=hint)
