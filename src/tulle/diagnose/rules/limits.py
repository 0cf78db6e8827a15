"""Diagnosis rules: rate limits answering 429 (RL), on a service's instances or on a route
rule in the caller. The limit works; the finding says which policy and how to raise it."""

from __future__ import annotations

from collections.abc import Iterator

from tulle.diagnose.evidence import Evidence, code_count, requests
from tulle.diagnose.model import (
    Finding,
    Scope,
    Severity,
    proxy_subject,
    resource_subject,
    service_subject,
    source_subject,
)
from tulle.diagnose.rank import impact
from tulle.model.meta import ServiceRef
from tulle.model.policy import RateLimit


def _limit_text(limit: RateLimit) -> str:
    return (f"{limit.requests} requests per {limit.interval}"
            + (f", burst {limit.burst}" if limit.burst else ""))


def service_rate_limited(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1010: a service's instances refuse requests over its rate limit."""
    limited: dict[ServiceRef, list[tuple[str, int, int]]] = {}
    for node in sorted({node for node, _ in evidence.window.counters}):
        values = evidence.inbound(node)
        if values.get("limited", 0) and (ref := evidence.service_of(node)) is not None:
            limited.setdefault(ref, []).append((node, values["limited"], requests(values)))
    for ref, instances in sorted(limited.items()):
        refused = sum(n for _, n, _ in instances)
        answered = sum(t for _, _, t in instances)
        lines = [f"{node} refused {n} of {t} requests over the rate limit (429, RL)"
                 for node, n, t in instances]
        callers = [(node, code_count(v, 429), requests(v)) for node, dst, v in evidence.edges()
                   if dst == ref and code_count(v, 429)]
        lines += [f"{node} -> {ref.host}: {n} of {t} requests got 429" for node, n, t in callers]
        service = evidence.mesh.services.get(ref)
        limit = service.policy.rate_limit if service else None
        source = service.policy.source_of("rate_limit") if service else None
        if limit is not None and source is not None:
            lines.append(f"limit: {_limit_text(limit)} per instance (from {source})")
            subject = source_subject(source)
            fix = (f"raise spec.rateLimit.requests in {subject} (now {limit.requests} per "
                   f"{limit.interval}), or make the callers send less")
        else:
            subject = service_subject(ref)
            fix = f"raise the rate limit of {ref.host}, or make the callers send less"
        yield Finding(
            "TUL1010", Severity.WARNING, impact(refused, answered, base=50), subject,
            f"The rate limit of {ref.host} refuses requests with 429: callers send more than "
            "it allows. The mesh answered them itself (RL, in the instances' sidecars).",
            tuple(lines), fix,
            related=(service_subject(ref), *(proxy_subject(n) for n, _, _ in instances)),
            sources=tuple(proxy_subject(n) for n, _, _ in callers))


def route_rate_limited(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1011: a route rule's rate limit refuses requests in the caller's sidecar."""
    for node in sorted({node for node, _ in evidence.window.counters}):
        refused = evidence.proxy_counters(node).get("route_limited", 0)
        if not refused:
            continue
        # The rules with a rate limit on the services this caller calls.
        called = evidence.called_by(node)
        candidates = []
        for ref in sorted(called):
            for attached in evidence.mesh.routes.get(ref, ()):
                for index, rule in enumerate(attached.spec.rules):
                    policy = attached.rule_policy(index)
                    source = dict(policy.sources).get("rate_limit")
                    if policy.rate_limit is not None and source is not None:
                        candidates.append((ref, resource_subject(attached.key),
                                           rule.name or str(index), policy.rate_limit, source))
        by_policy: dict[str, list[str]] = {}
        related: dict[str, set[str]] = {}
        for ref, route, rule_key, limit, source in candidates:
            by_policy.setdefault(source, []).append(
                f"{route} rule {rule_key}: {_limit_text(limit)} (from {source})")
            related.setdefault(source, set()).update({route, service_subject(ref)})
        for source, lines in sorted(by_policy.items()) or [("", [])]:
            subject = source_subject(source) if source else proxy_subject(node)
            yield Finding(
                "TUL1011", Severity.WARNING, min(90.0, 45.0 + refused), subject,
                f"A route rate limit in {node}'s sidecar refused {refused} requests with 429: "
                "the mesh answered them itself (RL).",
                (f"{node}: {refused} requests refused by a route rule's rate limit (RL)",
                 *lines),
                f"raise spec.rateLimit.requests in {subject}, or make {node} send less"
                if source else f"find the route limit {node} hits: `tulle describe service`",
                related=tuple(sorted(related.get(source, ()))), sources=(proxy_subject(node),))


RULES = (service_rate_limited, route_rate_limited)
