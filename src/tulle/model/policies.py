"""Effective TrafficPolicy settings: which setting applies where, and which resource set it.

Several policies may target one service or route. Each setting (connectionPool, rateLimit, ...)
is taken whole from the first policy that sets it, in name order (namespace, name); later ones
are reported as conflicts. Settings on a route rule override the same settings on the route's
parent service for that rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any, cast

from tulle.model.kinds import HTTP_ROUTE, TRAFFIC_POLICY
from tulle.model.meta import ResourceKey, ServiceRef
from tulle.model.policy import (
    ConnectionPool,
    FaultInjection,
    LoadBalancer,
    OutlierDetection,
    PolicyTimeouts,
    RateLimit,
    RetryBudget,
    TrafficPolicySpec,
)
from tulle.model.resource import Resource

ROUTE_GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class ServicePolicy:
    connection_pool: ConnectionPool | None = None
    retry_budget: RetryBudget | None = None
    outlier_detection: OutlierDetection | None = None
    load_balancer: LoadBalancer | None = None
    timeouts: PolicyTimeouts | None = None
    rate_limit: RateLimit | None = None  # enforced by each instance of the service
    # A DryRun TrafficPolicy's limit: each instance counts what it would refuse, refuses none.
    dry_run_rate_limit: RateLimit | None = None
    fault_injection: FaultInjection | None = None  # applied by callers, on every route to it
    sources: tuple[tuple[str, str], ...] = ()  # (setting, "TrafficPolicy ns/name")

    def source_of(self, setting: str) -> str | None:
        return dict(self.sources).get(setting)


@dataclass(frozen=True)
class RulePolicy:
    """Settings for one rule of one HTTPRoute, applied by callers."""

    rate_limit: RateLimit | None = None
    # A DryRun TrafficPolicy's limit on the rule: each caller counts what it would refuse.
    dry_run_rate_limit: RateLimit | None = None
    fault_injection: FaultInjection | None = None
    sources: tuple[tuple[str, str], ...] = ()


NO_POLICY = ServicePolicy()
NO_RULE_POLICY = RulePolicy()

_SETTINGS = tuple(f.name for f in fields(ServicePolicy) if f.name != "sources")
_RULE_SETTINGS = ("rate_limit", "dry_run_rate_limit", "fault_injection")


@dataclass(frozen=True)
class Conflict:
    setting: str
    target: str
    kept: str  # the policy whose setting applies
    ignored: str


@dataclass(frozen=True)
class ResolvedPolicies:
    services: dict[ServiceRef, ServicePolicy]
    rules: dict[tuple[ResourceKey, int], RulePolicy]
    conflicts: list[Conflict]


def resolve(resources: Iterable[Resource]) -> ResolvedPolicies:
    """Merge every TrafficPolicy into per-service and per-rule settings."""
    by_key = {r.key: r for r in resources}
    services: dict[ServiceRef, ServicePolicy] = {}
    rules: dict[tuple[ResourceKey, int], RulePolicy] = {}
    conflicts: list[Conflict] = []
    for resource in sorted(by_key.values(), key=lambda r: r.key):
        if resource.info is not TRAFFIC_POLICY:
            continue
        spec = cast(TrafficPolicySpec, resource.spec)
        source = str(resource.key)
        for target in spec.target_refs:
            namespace = target.namespace or resource.meta.namespace
            if target.kind == "Service":
                ref = ServiceRef(namespace, target.name)
                services[ref] = _merge(services.get(ref, NO_POLICY), spec, _SETTINGS, source,
                                       f"Service {namespace}/{target.name}", conflicts)
                continue
            route = by_key.get(ResourceKey(HTTP_ROUTE.kind, namespace, target.name))
            if route is None:
                continue  # reported by reference checks
            for index, rule in enumerate(route.spec.rules):
                if target.section_name is not None and rule.name != target.section_name:
                    continue
                key = (route.key, index)
                label = f"HTTPRoute {namespace}/{target.name} rule {rule.name or index}"
                rules[key] = _merge(rules.get(key, NO_RULE_POLICY), spec, _RULE_SETTINGS,
                                    source, label, conflicts)
    return ResolvedPolicies(services, rules, conflicts)


def _value(spec: TrafficPolicySpec, setting: str) -> Any:
    """What ``spec`` sets for ``setting``: a DryRun policy's rateLimit is its dry-run limit."""
    if spec.mode == "DryRun":
        return spec.rate_limit if setting == "dry_run_rate_limit" else None
    return None if setting == "dry_run_rate_limit" else getattr(spec, setting)


def _merge(current: Any, spec: TrafficPolicySpec, settings: Iterable[str], source: str,
           target: str, conflicts: list[Conflict]) -> Any:
    sources = dict(current.sources)
    changes: dict[str, Any] = {}
    for setting in settings:
        value = _value(spec, setting)
        if value is None:
            continue
        if sources.get(setting) == source:
            continue  # the same policy reaches this target twice (a route and its rule)
        if setting in sources:
            conflicts.append(Conflict(setting, target, sources[setting], source))
            continue
        changes[setting] = value
        sources[setting] = source
    return replace(current, **changes, sources=tuple(sorted(sources.items())))
