"""Running the rules over one evidence snapshot: collect, check, scope, rank."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from tulle.diagnose.codes import lookup
from tulle.diagnose.evidence import Evidence
from tulle.diagnose.model import Finding, Scope, proxy_subject, service_subject
from tulle.diagnose.rank import rank
from tulle.diagnose.rules import Rule

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
        controlplane,
        endpoints,
        identity,
        limits,
        processes,
        resilience,
        routing,
        sidecars,
    )

    areas = (endpoints, resilience, limits, routing, sidecars, identity, controlplane,
             processes)
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
    services_of = {proxy_subject(node): service_subject(w.service_ref)
                   for node, w in evidence.workloads.items()}
    services_of |= {proxy_subject(node): service_subject(ref) for node in evidence.nodes
                    if (ref := evidence.service_of(node)) is not None}
    unique = {(f.code, f.subject): f for f in found}  # one finding per code and subject
    scoped = [f for f in unique.values() if scope.covers(f, services_of)]
    return Diagnosis(tuple(rank(scoped)), tuple(errors))
