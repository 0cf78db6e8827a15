"""Diagnosis rules: the mesh's own doing. Errors and delays injected by a TrafficPolicy's
``faultInjection`` (TUL1025).

A fault applies in every caller's sidecar, on the routes to the targeted service (or route
rule). Envoy's fault filter counts what it did per listener (``fault.aborts_injected``,
``fault.delays_injected``, tulle's ``fault_aborts``/``fault_delays`` in the caller's PROXY
series). An aborted request never reaches a cluster, so the caller's OUTBOUND series do not
count it: the share of calls failed is aborts / (aborts + requests answered).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tulle.diagnose.evidence import Evidence, requests
from tulle.diagnose.model import (
    Finding,
    Scope,
    Severity,
    proxy_subject,
    rule_subject,
    service_subject,
    source_subject,
)
from tulle.diagnose.rules import Rule
from tulle.diagnose.rules._traffic import backends, share
from tulle.model.durations import parse_duration
from tulle.model.meta import ServiceRef
from tulle.model.policy import FaultInjection

ABORT_ERROR_SHARE = 0.05  # a policy that fails >= 5 % of calls is an error (left on)
DELAY_ERROR_SHARE, DELAY_ERROR_S = 0.05, 0.5  # ...or delays >= 5 % of calls by >= 500 ms


@dataclass(frozen=True)
class _Fault:
    source: str  # "TrafficPolicy ns/name"
    fault: FaultInjection
    target: str  # subject of what it applies to
    services: tuple[ServiceRef, ...]  # whose calls it touches


def _faults(evidence: Evidence) -> list[_Fault]:
    found: dict[tuple[str, str], _Fault] = {}
    for ref, service in evidence.mesh.services.items():
        source = service.policy.source_of("fault_injection")
        if source and service.policy.fault_injection is not None:
            # On every route to the service: calls reach its route's backends.
            routed = tuple(b.ref for b in backends(evidence, ref))
            found[(source, service_subject(ref))] = _Fault(
                source, service.policy.fault_injection, service_subject(ref), (ref, *routed))
    for parent, attached_routes in evidence.mesh.routes.items():
        for attached in attached_routes:
            for index, rule in enumerate(attached.spec.rules):
                policy = attached.rule_policy(index)
                source = dict(policy.sources).get("fault_injection")
                if source and policy.fault_injection is not None:
                    targets = tuple(ServiceRef(b.namespace or attached.key.namespace, b.name)
                                     for b in rule.backend_refs)
                    target = rule_subject(attached.key, index, rule.name)
                    found[(source, target)] = _Fault(source, policy.fault_injection, target,
                                                     (parent, *targets))
    return [found[key] for key in sorted(found)]


def _describe(fault: FaultInjection) -> str:
    parts = []
    if fault.abort is not None:
        parts.append(f"abort {fault.abort.percent}% with HTTP {fault.abort.http_status}")
    if fault.delay is not None:
        parts.append(f"delay {fault.delay.percent}% by {fault.delay.fixed_delay}")
    if fault.match is not None:
        parts.append("only requests with " + ", ".join(f"{h.name}: {h.value}"
                                                       for h in fault.match.headers))
    return "; ".join(parts)


def fault_injected(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1025: a TrafficPolicy's fault injection fails or delays callers' requests."""
    for item in _faults(evidence):
        wanted = set(item.services)
        answered: dict[str, int] = {}
        for node, ref, values in evidence.edges():
            if ref in wanted:
                answered[node] = answered.get(node, 0) + requests(values)
        callers = sorted(answered)
        aborts = sum(evidence.proxy_counters(n).get("fault_aborts", 0) for n in callers)
        delays = sum(evidence.proxy_counters(n).get("fault_delays", 0) for n in callers)
        calls = sum(answered.values()) + aborts
        if not calls:
            continue  # nobody calls it: the policy is harmless for now
        aborted, delayed = share(aborts, calls), share(delays, calls)
        delay_s = (parse_duration(item.fault.delay.fixed_delay) or 0.0
                   if item.fault.delay is not None else 0.0)
        severe = aborted >= ABORT_ERROR_SHARE or (delayed >= DELAY_ERROR_SHARE
                                                  and delay_s >= DELAY_ERROR_S)
        subject = source_subject(item.source)
        status = item.fault.abort.http_status if item.fault.abort is not None else None
        lines = [f"{subject} injects faults into calls to {item.target}: "
                 f"{_describe(item.fault)}",
                 f"callers' sidecars aborted {aborts} and delayed {delays} of {calls} calls in "
                 f"the window ({aborted:.0%} aborted, {delayed:.0%} delayed)"]
        lines += [f"{n}: {evidence.proxy_counters(n).get('fault_aborts', 0)} aborted, "
                  f"{answered[n]} answered" for n in callers]
        what = []
        if aborts:
            what.append(f"fails {aborted:.0%} of calls with {status or 'an error'}")
        if delays:
            what.append(f"delays {delayed:.0%} by {item.fault.delay.fixed_delay}"
                        if item.fault.delay is not None else f"delays {delayed:.0%}")
        if not what:
            what.append(f"is in force ({_describe(item.fault)}), though no injected fault "
                        "was counted in the window")
        yield Finding(
            "TUL1025", Severity.ERROR if severe else Severity.WARNING,
            min(95.0, 60.0 + 40.0 * max(aborted, delayed)), subject,
            f"The fault injection of {subject} on calls to {item.target} "
            f"{' and '.join(what)}. The "
            "mesh produced these answers itself (fault injection, FI/DI); the application "
            "never saw the aborted requests.",
            tuple(lines),
            f"if the experiment is over, remove spec.faultInjection from {subject} "
            f"(`tulle delete trafficpolicy {subject.split('/')[1].rsplit('.', 1)[0]} -n "
            f"{subject.rsplit('.', 1)[1]}` if it does nothing else); to keep it, narrow it "
            "with spec.faultInjection.match.headers",
            related=(item.target, *(service_subject(r) for r in item.services
                                    if service_subject(r) != item.target)),
            sources=tuple(proxy_subject(n) for n in callers))


RULES: tuple[Rule, ...] = (fault_injected,)
