"""Where a request would have gone with a service's DryRun HTTPRoutes in force.

Callers' sidecars route by the routes in force and log each request to a service with a
trial (xds/generators/trial_log.py); the control plane decides here, with the same matching
as `tulle what-if` (matching.py), which rule of the trial's routing would have taken it and
which backend the rule would have picked, weights drawn at random as Envoy draws them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tulle.model.mesh import RouteTrial
from tulle.model.meta import ServiceRef
from tulle.model.route_trials import NO_BACKEND, NOT_FOUND, REDIRECT, UNDECIDED
from tulle.whatif.matching import Request, rule_for

Pick = Callable[[Sequence[int]], int]


def random_pick(weights: Sequence[int]) -> int:
    return random.choices(range(len(weights)), weights=weights)[0]


@dataclass(frozen=True)
class TrialOutcome:
    route: str  # "namespace/name" of the route whose rule would take the request; "" none
    rule: str  # the rule's name, or its index; "" none
    would: str  # the backend's host ("reviews-v2.default"), or NOT_FOUND, NO_BACKEND...


def evaluate(service: ServiceRef, trial: RouteTrial, request: Request,
             redacted: frozenset[str] = frozenset(), pick: Pick = random_pick
             ) -> TrialOutcome:
    """``redacted``: headers the request was logged without (their values are secret)."""
    if redacted.intersection(trial.headers()):
        return TrialOutcome("", "", UNDECIDED)
    if not trial.routes:
        return TrialOutcome("", "", service.host)  # the default route: the service itself
    found = rule_for(trial.routes, request)
    if found is None:
        return TrialOutcome("", "", NOT_FOUND)
    route = f"{found.route.key.namespace}/{found.route.key.name}"
    rule = found.route.spec.rules[found.rule]
    name = rule.name or str(found.rule)
    if any(f.type == "RequestRedirect" for f in rule.filters):
        return TrialOutcome(route, name, REDIRECT)
    backends = [b for b in rule.backend_refs if b.weight > 0]
    if not backends:
        return TrialOutcome(route, name, NO_BACKEND)
    chosen = backends[pick([b.weight for b in backends])]
    namespace = chosen.namespace or found.route.key.namespace
    return TrialOutcome(route, name, ServiceRef(namespace, chosen.name).host)


def today(cluster: str, status: str) -> str:
    """Where the request went: the backend's host from its cluster ("outbound|HOST"), or
    the status the caller's sidecar answered without one."""
    if cluster.startswith("outbound|"):
        return cluster.removeprefix("outbound|")
    return status or "-"
