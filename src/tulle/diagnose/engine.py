"""Running the rules over one evidence snapshot: collect, check, scope, rank."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from tulle.diagnose.codes import lookup
from tulle.diagnose.evidence import Evidence
from tulle.diagnose.model import (
    Finding,
    Scope,
    proxy_subject,
    resource_subject,
    rule_subject,
    service_subject,
    source_subject,
)
from tulle.diagnose.rank import rank
from tulle.diagnose.rules import Rule
from tulle.model.meta import ServiceRef

log = logging.getLogger("tulle.diagnose")


@dataclass(frozen=True)
class Diagnosis:
    findings: tuple[Finding, ...]
    rule_errors: tuple[str, ...] = ()  # rules that crashed (a bug in tulle), by name


WHOLE_MESH = Scope()


def all_rules() -> tuple[Rule, ...]:
    """Every rule of every area, in no particular order (ranking orders the findings).
    Imported here, not at module load: no work at import."""
    from tulle.diagnose.rules import (
        authorization,
        changes,
        controlplane,
        egress,
        endpoints,
        errors,
        faults,
        identity,
        latency,
        limits,
        masked,
        processes,
        resilience,
        rollouts,
        routing,
        sidecars,
        slos,
        trials,
        versions,
    )

    areas = (endpoints, resilience, errors, limits, routing, sidecars, identity, controlplane,
             processes, masked, versions, latency, faults, changes, authorization, egress,
             trials, slos, rollouts)
    return tuple(rule for area in areas for rule in area.RULES)


def diagnose(evidence: Evidence, scope: Scope = WHOLE_MESH,
             rules: Sequence[Rule] | None = None) -> Diagnosis:
    found: list[Finding] = []
    errors: list[str] = []
    for rule in all_rules() if rules is None else rules:
        try:
            for finding in rule(evidence, scope):
                lookup(finding.code)  # an unregistered code is a bug in the rule
                found.append(finding)
        except Exception as exc:  # one broken rule must not hide every other finding
            log.exception("diagnosis rule %s failed", rule.__name__)
            errors.append(f"{rule.__module__}.{rule.__name__}: {type(exc).__name__}: {exc}")
    from tulle.diagnose.rules.processes import as_consequences  # a frozen process's symptoms

    unique = {(f.code, f.subject): f for f in as_consequences(found)}  # one per code, subject
    context = scope_context(evidence) if not scope.whole_mesh else {}
    scoped = [f for f in unique.values() if scope.covers(f, context)]
    return Diagnosis(tuple(rank(scoped)), tuple(errors))


def scope_context(evidence: Evidence) -> dict[str, frozenset[str]]:
    """What each subject belongs to, for scoping: a proxy to its service and the version
    subsets it is a member of; a route, and each of its rules, to its parents and backends; a
    backend (a version subset) to the parents whose routes send it traffic; a policy to its
    targets. Closed over one step of parents, so a proxy of books-v2 belongs to books."""
    parents: dict[str, set[str]] = {}

    def add(name: str, *services: ServiceRef) -> None:
        parents.setdefault(name, set()).update(service_subject(ref) for ref in services)

    mesh = evidence.mesh
    subsets = [ref for ref, service in mesh.services.items() if service.selector]
    for node in {*evidence.workloads, *evidence.nodes}:
        workload = evidence.workloads.get(node)
        ref = evidence.service_of(node)
        add(proxy_subject(node), *((ref,) if ref is not None else ()),
            *(s for s in subsets if workload is not None and s.namespace == workload.namespace
              and workload.matches(mesh.services[s].selector)))
    for parent, attached_routes in mesh.routes.items():
        for attached in attached_routes:
            route = resource_subject(attached.key)
            for index, rule in enumerate(attached.spec.rules):
                backends = [ServiceRef(b.namespace or attached.key.namespace, b.name)
                            for b in rule.backend_refs]
                for name in (route, rule_subject(attached.key, index, rule.name)):
                    add(name, parent, *backends)
                for backend in backends:
                    add(service_subject(backend), parent)
    _policy_targets(evidence, parents)
    # One step of closure: a proxy of a subset also belongs to the subset's parents.
    return {name: frozenset(found | {p for s in found for p in parents.get(s, ())})
            for name, found in parents.items()}


def _policy_targets(evidence: Evidence, parents: dict[str, set[str]]) -> None:
    """A policy belongs to the services it targets, and to those of the routes it targets."""
    for ref, service in evidence.mesh.services.items():
        for _, source in service.policy.sources:
            parents.setdefault(source_subject(source), set()).add(service_subject(ref))
    for attached_routes in evidence.mesh.routes.values():
        for attached in attached_routes:
            for index in range(len(attached.spec.rules)):
                for _, source in attached.rule_policy(index).sources:
                    parents.setdefault(source_subject(source), set()).update(
                        parents.get(resource_subject(attached.key), ()))
