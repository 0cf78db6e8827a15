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
from tulle.whatif.matching import Request, RuleMatch, first_match, ordered

Pick = Callable[[Sequence[int]], int]


def random_pick(weights: Sequence[int]) -> int:
    return random.choices(range(len(weights)), weights=weights)[0]


@dataclass(frozen=True)
class TrialDecision:
    """What a trial's routing does with one request: the rule that would take it, and its
    backends by weight, or what it would answer instead (``answer``)."""

    route: str  # "namespace/name" of the route whose rule would take the request; "" none
    rule: str  # the rule's name, or its index; "" none
    answer: str = ""  # NOT_FOUND, NO_BACKEND, REDIRECT, UNDECIDED; "": a backend
    backends: tuple[tuple[str, int], ...] = ()  # (host, weight), weights above 0

    def describe(self) -> str:
        """In a few words, for tap: "default/books:split -> books.default 50 %, ..."."""
        rule = f"{self.route}:{self.rule}" if self.route else ""
        if self.answer == UNDECIDED:
            return "undecided (the routing matches on a redacted header)"
        if self.answer:
            return f"{rule} -> {self.answer}" if rule else f"{self.answer} (no rule matches)"
        total = sum(weight for _, weight in self.backends)
        split = ", ".join(f"{host} {100 * weight / total:.0f} %" if len(self.backends) > 1
                          else host for host, weight in self.backends)
        return f"{rule} -> {split}" if rule else f"{split} (the default route)"


@dataclass(frozen=True)
class TrialOutcome:
    route: str
    rule: str
    would: str  # the backend's host ("reviews-v2.default"), or NOT_FOUND, NO_BACKEND...


def decide(service: ServiceRef, trial: RouteTrial, request: Request,
           unlogged: frozenset[str] = frozenset(),
           entries: Sequence[RuleMatch] | None = None) -> TrialDecision:
    """``unlogged``: headers whose values the request was logged without (redacted);
    ``entries``: the trial's routes :func:`ordered`, when deciding many requests."""
    if unlogged.intersection(trial.headers()):
        return TrialDecision("", "", UNDECIDED)
    if not trial.routes:
        return TrialDecision("", "", backends=((service.host, 1),))  # the default route
    found = first_match(ordered(trial.routes) if entries is None else entries, request)
    if found is None:
        return TrialDecision("", "", NOT_FOUND)
    route = f"{found.route.key.namespace}/{found.route.key.name}"
    rule = found.route.spec.rules[found.rule]
    name = rule.name or str(found.rule)
    if any(f.type == "RequestRedirect" for f in rule.filters):
        return TrialDecision(route, name, REDIRECT)
    backends = tuple((ServiceRef(b.namespace or found.route.key.namespace, b.name).host,
                      b.weight) for b in rule.backend_refs if b.weight > 0)
    return TrialDecision(route, name, "" if backends else NO_BACKEND, backends)


def evaluate(service: ServiceRef, trial: RouteTrial, request: Request,
             unlogged: frozenset[str] = frozenset(), pick: Pick = random_pick,
             entries: Sequence[RuleMatch] | None = None) -> TrialOutcome:
    """Where the trial would have sent ``request``: one backend drawn by weight."""
    decision = decide(service, trial, request, unlogged, entries)
    if decision.answer:
        return TrialOutcome(decision.route, decision.rule, decision.answer)
    chosen = decision.backends[pick([weight for _, weight in decision.backends])]
    return TrialOutcome(decision.route, decision.rule, chosen[0])


def today(cluster: str, status: str) -> str:
    """Where the request went: the backend's host from its cluster ("outbound|HOST"), or
    the status the caller's sidecar answered without one."""
    if cluster.startswith("outbound|"):
        return cluster.removeprefix("outbound|")
    return status or "-"
