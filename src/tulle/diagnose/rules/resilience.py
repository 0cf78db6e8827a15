"""Diagnosis rules: resilience settings at work: circuit breakers (UO), outlier ejection and
retries (URX, amplification). Timeouts and 5xx on an edge are in ``errors``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from tulle.diagnose.evidence import Evidence, requests
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
from tulle.diagnose.rules._grpc import all_grpc, status_counts
from tulle.model.meta import ServiceRef
from tulle.telemetry.query import quantile

# Retries exhausted is an error when at least this share of the callers' requests failed.
EXHAUSTED_ERROR_SHARE = 0.05
# An ejected instance that answered this many requests, failing fewer than this share of
# them, is ejected by thresholds that are too eager: the policy is the culprit.
EAGER_MIN_ANSWERS, EAGER_MAX_RATE = 20, 0.05


@dataclass
class Edges:
    """One service's callers in the window, summed: what most rules here start from."""

    ref: ServiceRef
    callers: dict[str, Mapping[str, int]] = field(default_factory=dict)

    def total(self, name: str) -> int:
        return sum(values.get(name, 0) for values in self.callers.values())

    @property
    def requests(self) -> int:
        return sum(requests(values) for values in self.callers.values())

    @property
    def related(self) -> tuple[str, ...]:
        return (service_subject(self.ref),)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(proxy_subject(n) for n in sorted(self.callers))


def by_service(evidence: Evidence) -> list[Edges]:
    edges: dict[ServiceRef, Edges] = {}
    for node, ref, values in evidence.edges():
        edges.setdefault(ref, Edges(ref)).callers[node] = values
    return [edges[ref] for ref in sorted(edges)]


def _policy_source(evidence: Evidence, ref: ServiceRef, setting: str) -> str | None:
    service = evidence.mesh.services.get(ref)
    return service.policy.source_of(setting) if service else None


def instance_errors(evidence: Evidence, ref: ServiceRef) -> list[str]:
    """What the service's instances answered themselves (their inbound side)."""
    lines = []
    for workload in evidence.instances_of(ref):
        values = evidence.inbound(workload.node_id)
        total = requests(values)
        if total:
            p99 = quantile(values, 0.99)
            latency = f", p99 {p99:g} ms" if p99 else ""
            if all_grpc(values):  # failed calls by their grpc-status (in HTTP 200)
                codes = status_counts(values)
                lines.append(f"{workload.name} failed {values.get('rq5', 0)} of {total} gRPC "
                             f"calls" + (f" ({codes})" if codes else "") + latency)
            else:
                lines.append(f"{workload.name} answered {values.get('rq5', 0)} of {total} "
                             "requests with 5xx" + latency)
    return lines


def circuit_breaker(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1005: a connection-pool limit rejects requests (UO)."""
    for edges in by_service(evidence):
        rejected = edges.total("overflow") + edges.total("cx_overflow")
        if not rejected:
            continue
        lines = [f"{node} -> {edges.ref.host}: {v.get('overflow', 0)} requests rejected "
                 f"(pending overflow), {v.get('cx_overflow', 0)} connection overflows, "
                 f"{requests(v)} answered, {v.get('rq5', 0)} with 5xx"
                 for node, v in sorted(edges.callers.items())
                 if v.get("overflow", 0) or v.get("cx_overflow", 0)]
        service = evidence.mesh.services.get(edges.ref)
        pool = service.policy.connection_pool if service else None
        source = _policy_source(evidence, edges.ref, "connection_pool")
        if pool is not None and source is not None:
            limits = ", ".join(f"{name} {value}" for name, value in (
                ("maxConnections", pool.max_connections),
                ("maxPendingRequests", pool.max_pending_requests),
                ("maxRequests", pool.max_requests)) if value is not None)
            lines.append(f"limits in force: {limits} (from {source})")
            subject = source_subject(source)
            pending = pool.max_pending_requests
            fix = (f"raise spec.connectionPool.maxPendingRequests in {subject} (now "
                   f"{pending if pending is not None else 'Envoy default 1024'})"
                   + (f" and maxRequests (now {pool.max_requests})"
                      if pool.max_requests is not None else "")
                   + f", or add instances of {edges.ref.name}")
        else:
            subject = service_subject(edges.ref)
            lines.append("no TrafficPolicy sets connectionPool: Envoy's default limits "
                         "(1024) are full")
            fix = (f"add instances of {edges.ref.name} or make it faster; the callers send "
                   "more concurrent requests than it finishes")
        lines += instance_errors(evidence, edges.ref)
        yield Finding(
            "TUL1005", Severity.ERROR, impact(rejected, edges.requests, base=65), subject,
            f"The circuit breaker for {edges.ref.host} is open: callers' sidecars reject "
            f"requests at once (UO) because its connection pool is full. The mesh produced "
            "these 503 answers; the application never saw the requests.", tuple(lines), fix,
            related=edges.related, sources=edges.sources)


def outlier_ejection(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1006: instances ejected by outlier detection, named by the callers' Envoy."""
    for edges in by_service(evidence):
        ref = edges.ref
        ejections = edges.total("eject")
        flagged: dict[str, list[str]] = {}  # instance -> callers that eject it now
        for node in edges.callers:
            for host in evidence.upstream_hosts(node, ref) or ():
                if "failed_outlier_check" in host.flags:
                    flagged.setdefault(host.hostname or host.address, []).append(node)
        active = sum(evidence.edge_gauges(node, ref).get("ejected", 0) for node in edges.callers)
        if not (ejections or flagged or active):
            continue
        source = _policy_source(evidence, ref, "outlier_detection")
        errors = {w.name: evidence.inbound(w.node_id) for w in evidence.instances_of(ref)}
        culprits = sorted(flagged) or [name for name, v in sorted(
            errors.items(), key=lambda item: -item[1].get("rq5", 0)) if v.get("rq5", 0)][:1]
        for instance in culprits or [""]:
            values = errors.get(instance, {})
            lines = [f"{ejections} ejections by {len(edges.callers)} caller(s) in the window, "
                     f"{active} ejected now"]
            if instance in flagged:
                lines.append(f"ejected now by {', '.join(sorted(flagged[instance]))}")
            if values:
                lines.append(f"{instance} answered {values.get('rq5', 0)} of "
                             f"{requests(values)} requests with 5xx")
            if source:
                lines.append(f"outlier detection from {source}")
            subject = proxy_subject(f"{instance}.{ref.namespace}") if instance \
                else service_subject(ref)
            who = instance or f"an instance of {ref.host}"
            if instance and source and requests(values) >= EAGER_MIN_ANSWERS and \
                    values.get("rq5", 0) / requests(values) < EAGER_MAX_RATE:
                # It hardly fails: the policy's thresholds are the culprit.
                yield _eager_ejection(ref, instance, values, source, lines, edges)
                continue
            yield Finding(
                "TUL1006", Severity.ERROR, impact(values.get("rq5", 0), requests(values), 60),
                subject,
                f"{who} fails requests, so outlier detection ejects it from callers' load "
                "balancing. The application produced the 5xx; the mesh ejects it for them.",
                tuple(lines),
                f"fix or restart {who} (`tulle tap {instance or ref.name} --status 5xx`)"
                + (f"; relax spec.outlierDetection in {source_subject(source)} if it is too "
                   "eager" if source else ""),
                related=(*edges.related, *((source_subject(source),) if source else ())),
                sources=edges.sources)


def _eager_ejection(ref: ServiceRef, instance: str, values: Mapping[str, int], source: str,
                    lines: list[str], edges: Edges) -> Finding:
    policy = source_subject(source)
    rate = values.get("rq5", 0) / max(requests(values), 1)
    return Finding(
        "TUL1006", Severity.ERROR, 60.0, policy,
        f"The outlier detection of {policy} ejects {instance} though it fails only {rate:.1%} "
        f"of its requests: its thresholds are too eager, and {ref.host} loses capacity.",
        tuple(lines),
        f"relax spec.outlierDetection in {policy} (a higher consecutive5xx, a shorter "
        "baseEjectionTime)",
        related=(*edges.related, proxy_subject(f"{instance}.{ref.namespace}")),
        sources=edges.sources)


def _retry_rules(evidence: Evidence, ref: ServiceRef) -> list[tuple[str, str]]:
    """(route subject, "rule N: 3 attempts on 503") for rules of ``ref``'s routes that retry."""
    out = []
    for attached in evidence.mesh.routes.get(ref, ()):
        for index, rule in enumerate(attached.spec.rules):
            if rule.retry is not None:
                codes = ",".join(map(str, rule.retry.codes)) or "5xx"
                out.append((resource_subject(attached.key),
                            f"rule {rule.name or index}: {rule.retry.attempts} attempts on "
                            f"{codes}"))
    return out


def retries(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1007 (retries used up, URX) and TUL1008 (retries multiply the load)."""
    for edges in by_service(evidence):
        ref = edges.ref
        exhausted = edges.total("retry_exhausted")
        sent = edges.total("retry")
        overflow = edges.total("retry_overflow")
        total = edges.requests
        rules = _retry_rules(evidence, ref)
        routes = tuple(sorted({subject for subject, _ in rules}))
        policy_lines = [f"retry policy: {subject} {text}" for subject, text in rules]
        budget = _policy_source(evidence, ref, "retry_budget")
        if budget:
            policy_lines.append(f"retry budget from {budget}")
        failed_share = edges.total("rq5") / total if total else 0.0
        # Severity from what callers saw: a few requests out of retries while 97 % succeed is
        # a warning, and then the retries' load (TUL1008) is the story, not a symptom of it.
        severe = failed_share >= EXHAUSTED_ERROR_SHARE
        if exhausted:
            lines = [f"{node} -> {ref.host}: {v.get('retry_exhausted', 0)} requests gave up "
                     f"after the retry limit (URX), {v.get('retry', 0)} retries, "
                     f"{v.get('rq5', 0)} of {requests(v)} requests 5xx"
                     for node, v in sorted(edges.callers.items()) if v.get("retry_exhausted")]
            lines.append(f"callers saw {failed_share:.1%} of {total} requests fail")
            yield Finding(
                "TUL1007", Severity.ERROR if severe else Severity.WARNING,
                impact(exhausted, total, base=62 if severe else 30),
                routes[0] if len(routes) == 1 else service_subject(ref),
                f"Requests to {ref.host} fail even after every retry (URX): it fails "
                "persistently, and retrying does not help. The application produced these "
                "errors; the mesh's retries could not hide them.",
                (*lines, *policy_lines, *instance_errors(evidence, ref)),
                f"fix why {ref.host} fails (retries only hide transient errors); lower "
                f"retry.attempts in {routes[0] if routes else 'the HTTPRoute rule'} so failures "
                "surface sooner and cost less",
                related=(*edges.related, *routes), sources=edges.sources)
        if overflow or (sent >= 10 and sent >= total):
            yield Finding(
                "TUL1008", Severity.WARNING, impact(sent, sent + total, base=40),
                service_subject(ref),
                f"Retries multiply the load on {ref.host}: callers sent {sent} retries for "
                f"{total} requests" + (f", and {overflow} more were refused by the retry "
                                       "budget" if overflow else "") + ".",
                (f"{sent} retries, {overflow} retry overflows, {total} requests in the window",
                 *policy_lines),
                "fix the failing service; lower retry.attempts on the HTTPRoute rule or set a "
                f"stricter spec.retryBudget in a TrafficPolicy for {ref.name}",
                related=(*edges.related, *routes), sources=edges.sources,
                symptom=bool(exhausted) and severe)


RULES = (circuit_breaker, outlier_ejection, retries)
