"""Checks on one resource that a schema cannot express (names, paths, weights).

Each check yields (field path, message, hint). Checks that need other resources, such as whether
a referenced service exists, live in ``tulle.model.references``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from tulle.model.httproute import HTTPRouteSpec
from tulle.model.meshconfig import (
    MAX_WORKLOAD_LIFETIME_S,
    MIN_WORKLOAD_LIFETIME_S,
    MeshSpec,
    parse_duration,
)
from tulle.model.meta import dns_label_problem

FieldIssue = tuple[str, str, str]


def spec_problems(spec: Any) -> Iterator[FieldIssue]:
    check = _CHECKS.get(type(spec))
    if check is not None:
        yield from check(spec)


def _httproute(spec: HTTPRouteSpec) -> Iterator[FieldIssue]:
    for i, parent in enumerate(spec.parent_refs):
        yield from _name("spec.parentRefs", i, parent.name, parent.namespace)
    for r, rule in enumerate(spec.rules):
        base = f"spec.rules[{r}]"
        for m, match in enumerate(rule.matches):
            if not match.path.value.startswith("/"):
                yield (f"{base}.matches[{m}].path.value",
                       f'a path must start with "/", got "{match.path.value}"',
                       f'write "/{match.path.value}"')
        for b, backend in enumerate(rule.backend_refs):
            yield from _name(f"{base}.backendRefs", b, backend.name, backend.namespace)
        if all(backend.weight == 0 for backend in rule.backend_refs):
            yield (f"{base}.backendRefs",
                   "every backendRef has weight 0, so every request would fail with 500",
                   "give at least one backendRef a weight above 0")


def _name(prefix: str, index: int, name: str, namespace: str | None) -> Iterator[FieldIssue]:
    if (why := dns_label_problem(name)) is not None:
        yield f"{prefix}[{index}].name", why, ""
    if namespace is not None and (why := dns_label_problem(namespace)) is not None:
        yield f"{prefix}[{index}].namespace", why, ""


def _mesh(spec: MeshSpec) -> Iterator[FieldIssue]:
    field = "spec.certificates.workloadLifetime"
    ttl = parse_duration(spec.certificates.workload_lifetime)
    if ttl is None:
        yield (field, f'"{spec.certificates.workload_lifetime}" is not a duration',
               'write a number and a unit (ms, s, m, h, d): "24h", "90m", "30s"')
    elif not MIN_WORKLOAD_LIFETIME_S <= ttl <= MAX_WORKLOAD_LIFETIME_S:
        yield (field, f"must be between {MIN_WORKLOAD_LIFETIME_S:g}s and 90d, got "
                      f"{spec.certificates.workload_lifetime}", "")


_CHECKS: dict[type[Any], Callable[[Any], Iterator[FieldIssue]]] = {
    HTTPRouteSpec: _httproute,
    MeshSpec: _mesh,
}
