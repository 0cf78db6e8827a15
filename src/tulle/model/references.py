"""Checks across resources: does every reference name something that exists?

A service is known when a Service resource declares it (already stored or in the same batch) or
when a workload is registered under it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tulle.errors import Problem
from tulle.model.kinds import HTTP_ROUTE, SERVICE, closest
from tulle.model.mesh import route_backends, route_parents
from tulle.model.meta import ResourceKey, ServiceRef
from tulle.model.resource import Resource


def known_services(resources: Iterable[Resource],
                   workload_services: Iterable[ServiceRef]) -> frozenset[ServiceRef]:
    declared = {ServiceRef(r.meta.namespace, r.meta.name) for r in resources if r.info is SERVICE}
    return frozenset(declared | set(workload_services))


def reference_problems(batch: Iterable[Resource], known: frozenset[ServiceRef],
                       sources: Mapping[ResourceKey, str]) -> list[Problem]:
    """Problems with references made by the resources of ``batch``."""
    problems: list[Problem] = []
    for resource in batch:
        if resource.info is not HTTP_ROUTE:
            continue
        refs = [(f"spec.parentRefs[{i}].name", parent)
                for i, parent in enumerate(route_parents(resource))]
        refs += route_backends(resource)
        for field, ref in refs:
            if ref not in known:
                problems.append(_unknown_service(resource, field, ref, known,
                                                 sources.get(resource.key, "")))
    return problems


def _unknown_service(resource: Resource, field: str, ref: ServiceRef,
                     known: frozenset[ServiceRef], source: str) -> Problem:
    same_namespace = sorted(s.name for s in known if s.namespace == ref.namespace)
    guess = closest(ref.name, same_namespace)
    hint = f'did you mean "{guess}"? ' if guess else ""
    # The usual cross-namespace slip: the name is right, the namespace defaulted to the route's.
    elsewhere = sorted(s.namespace for s in known if s.name == ref.name)
    if elsewhere:
        hint += (f'"{ref.name}" exists in namespace {", ".join(elsewhere)}: set '
                 f"{field.removesuffix('.name')}.namespace. ")
    if same_namespace:
        hint += f"known services in {ref.namespace}: {', '.join(same_namespace)}. "
    hint += (f"Apply a Service named {ref.name} in namespace {ref.namespace}, or start a "
             f"workload with `tulle run --service {ref.name} --namespace {ref.namespace}`")
    return Problem(source=source, resource=str(resource.key), field=field,
                   message=f'unknown service "{ref.name}" in namespace "{ref.namespace}"',
                   hint=hint)
