"""Warnings at apply time: legal configuration that probably does not do what was meant.

They never block an apply. Each names the resource and field, like an error, and says what
will happen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from tulle.errors import Problem
from tulle.model.httproute import HTTPRouteSpec, RouteMatch
from tulle.model.kinds import HTTP_ROUTE, SERVICE, TRAFFIC_POLICY
from tulle.model.mesh import route_parents
from tulle.model.meta import ResourceKey, ServiceRef, freeze_labels
from tulle.model.policies import resolve
from tulle.model.resource import Resource
from tulle.model.spec_config import to_camel
from tulle.model.workload import Workload


def advisories(batch: Iterable[Resource], proposed: Mapping[ResourceKey, Resource],
               workloads: Iterable[Workload], sources: Mapping[ResourceKey, str]
               ) -> list[Problem]:
    batch_keys = {r.key for r in batch}
    all_workloads = list(workloads)
    out: list[Problem] = []
    for key in sorted(batch_keys):
        resource = proposed[key]
        if resource.info is SERVICE and resource.spec.selector:
            selector = freeze_labels(resource.spec.selector)
            if not any(w.namespace == key.namespace and w.matches(selector)
                       for w in all_workloads):
                out.append(_warning(resource, sources, "spec.selector",
                                    "selects no workload yet: traffic sent to this service "
                                    "gets 503 (no healthy upstream) until one matches",
                                    "start one with `tulle run --service SVC --version V`, "
                                    "or check the labels"))
    out += _shadowed_rules(batch_keys, proposed, sources)
    for conflict in resolve(proposed.values()).conflicts:
        ignored = conflict.ignored.removeprefix(f"{TRAFFIC_POLICY.kind} ")
        namespace, _, name = ignored.partition("/")
        key = ResourceKey(TRAFFIC_POLICY.kind, namespace, name)
        if key in batch_keys:
            out.append(_warning(proposed[key], sources, f"spec.{to_camel(conflict.setting)}",
                                f"{conflict.target} already gets {to_camel(conflict.setting)} "
                                f"from {conflict.kept}; this one is ignored",
                                "set it in one policy only"))
    return out


def _shadowed_rules(batch_keys: set[ResourceKey], proposed: Mapping[ResourceKey, Resource],
                    sources: Mapping[ResourceKey, str]) -> list[Problem]:
    """Rules that can never match: an earlier rule (in Gateway API precedence) matches the
    same requests. Only identical matches are detected."""
    by_parent: dict[ServiceRef, list[Resource]] = {}
    for resource in sorted(proposed.values(), key=lambda r: r.key):
        if resource.info is HTTP_ROUTE:
            for parent in route_parents(resource):
                by_parent.setdefault(parent, []).append(resource)
    out: list[Problem] = []
    for parent, routes in by_parent.items():
        seen: dict[Any, str] = {}
        for route in routes:
            spec = cast(HTTPRouteSpec, route.spec)
            for r, rule in enumerate(spec.rules):
                for m, match in enumerate(rule.matches):
                    where = f"{route.key.namespace}/{route.key.name} rules[{r}].matches[{m}]"
                    signature = _signature(match)
                    earlier = seen.setdefault(signature, where)
                    if earlier != where and route.key in batch_keys:
                        out.append(_warning(
                            route, sources, f"spec.rules[{r}].matches[{m}]",
                            f"never matches: {earlier} matches the same requests to "
                            f"{parent} first", "change or remove one of the two matches"))
    return out


def _signature(match: RouteMatch) -> Any:
    path = match.path.value if match.path.type != "PathPrefix" else \
        match.path.value.rstrip("/") or "/"
    return (match.path.type, path, match.method,
            tuple(sorted((h.type, h.name.lower(), h.value) for h in match.headers)),
            tuple(sorted((q.type, q.name, q.value) for q in match.query_params)))


def _warning(resource: Resource, sources: Mapping[ResourceKey, str], field: str, message: str,
             hint: str) -> Problem:
    return Problem(message=message, source=sources.get(resource.key, ""),
                   resource=str(resource.key), field=field, hint=hint, level="warning")
