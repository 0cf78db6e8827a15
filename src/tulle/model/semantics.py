"""Checks on one resource that a schema cannot express (names, durations, combinations).

Each check yields (field path, message, hint). Checks that need other resources, such as whether
a referenced service exists, live in ``tulle.model.references``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from tulle.model.access_log import mesh_access_log_problems, service_access_log_problems
from tulle.model.authz import AuthorizationPolicySpec
from tulle.model.authz_checks import authz_problems
from tulle.model.durations import DURATION_HINT, parse_duration
from tulle.model.external import ExternalServiceSpec, external_problems
from tulle.model.gateway import GatewaySpec, gateway_problems
from tulle.model.httproute import HTTPRouteSpec
from tulle.model.meshconfig import (
    MAX_WORKLOAD_LIFETIME_S,
    MIN_WORKLOAD_LIFETIME_S,
    MeshSpec,
)
from tulle.model.meta import label_problem
from tulle.model.policy import TrafficPolicySpec
from tulle.model.policy_checks import policy_problems
from tulle.model.rollout import RolloutSpec, rollout_problems
from tulle.model.route_checks import (
    httproute_problems,
)
from tulle.model.service import ServiceSpec
from tulle.model.slo import ServiceLevelObjectiveSpec, slo_problems
from tulle.model.tracing import tracing_problems

FieldIssue = tuple[str, str, str]


def spec_problems(spec: Any) -> Iterator[FieldIssue]:
    check = _CHECKS.get(type(spec))
    if check is not None:
        yield from dict.fromkeys(check(spec))  # once each, in order


def _mesh(spec: MeshSpec) -> Iterator[FieldIssue]:
    field = "spec.certificates.workloadLifetime"
    ttl = parse_duration(spec.certificates.workload_lifetime)
    if ttl is None:
        yield (field, f'"{spec.certificates.workload_lifetime}" is not a duration',
               DURATION_HINT)
    elif not MIN_WORKLOAD_LIFETIME_S <= ttl <= MAX_WORKLOAD_LIFETIME_S:
        yield (field, f"must be between {MIN_WORKLOAD_LIFETIME_S:g}s and 90d, got "
                      f"{spec.certificates.workload_lifetime}", "")
    if spec.tracing is not None:
        yield from tracing_problems(spec.tracing)
    yield from mesh_access_log_problems(spec.access_log)


def _service(spec: ServiceSpec) -> Iterator[FieldIssue]:
    yield from service_access_log_problems(bool(spec.access_log and spec.access_log.enabled),
                                           spec.selector is not None)
    for key, value in (spec.selector or {}).items():
        if (why := label_problem(key, value)) is not None:
            yield f"spec.selector.{key}", why, ""
    if spec.selector is not None and not spec.selector:
        yield "spec.selector", "an empty selector selects every workload of the mesh", \
            "name labels, such as {service: books, version: v2}"


_CHECKS: dict[type[Any], Callable[[Any], Iterator[FieldIssue]]] = {
    AuthorizationPolicySpec: authz_problems,
    ExternalServiceSpec: external_problems,
    GatewaySpec: gateway_problems,
    HTTPRouteSpec: httproute_problems,
    MeshSpec: _mesh,
    ServiceSpec: _service,
    RolloutSpec: rollout_problems,
    ServiceLevelObjectiveSpec: slo_problems,
    TrafficPolicySpec: policy_problems,
}
