"""Diagnosis rules: what callers got: requests that timed out (UT, TUL1009) and 5xx on calls
to a service (TUL1013).

Each names its culprit when the evidence shows one: the route rule whose timeout fired, the
one instance whose application answers the 5xx while its peers do not. And each says who
produced the error answers: the mesh itself (Envoy's flags on the callers' side) or the
application (what the service's instances answered through their sidecars).
"""

from __future__ import annotations

from collections.abc import Iterator

from tulle.diagnose.evidence import Evidence, requests
from tulle.diagnose.model import (
    Finding,
    Scope,
    Severity,
    proxy_subject,
    service_subject,
)
from tulle.diagnose.rank import impact
from tulle.diagnose.rules import Rule
from tulle.diagnose.rules._grpc import all_grpc, speaks_grpc, status_counts, status_text
from tulle.diagnose.rules._traffic import (
    answered_by,
    backends,
    feeding,
    inbound,
    members,
    route_timeout,
    services_served,
    share,
)
from tulle.diagnose.rules._traffic import total as sum_values
from tulle.diagnose.rules.resilience import Edges, by_service, instance_errors
from tulle.model.meta import ServiceRef

EDGE_MIN_ERRORS, EDGE_MIN_SHARE = 3, 0.01  # 5xx on an edge: a finding from 3 and 1 %...
EDGE_ERROR_SHARE = 0.05  # ...an error from 5 % of the calls
# One instance is the culprit when it answers this share of the instances' 5xx, at this
# many times its peers' rate, and fails at least CULPRIT_MIN_RATE of its own answers.
CULPRIT_SHARE, CULPRIT_RATIO, CULPRIT_MIN_RATE = 0.8, 3.0, 0.05
_FLAGS = (("no_healthy", "UH"), ("cfail", "UF"), ("overflow", "UO"), ("cx_overflow", "UO"),
          ("timeout", "UT"), ("retry_exhausted", "URX"))


def _timeout_rules(evidence: Evidence, ref: ServiceRef) -> list[tuple[str, int, str, str]]:
    """(rule subject, index, field path, limit) of the rules that set a timeout on calls to
    ``ref``: its own routes' rules and the rules that send it traffic."""
    found: dict[str, tuple[str, int, str, str]] = {}
    for backend in [*backends(evidence, ref), *feeding(evidence, ref)]:
        limit = route_timeout(backend.rule)
        if limit is None or backend.subject in found:
            continue
        _, field_name = limit
        timeouts = backend.rule.timeouts
        text = (timeouts.request if field_name == "request" else timeouts.backend_request) \
            if timeouts is not None else None
        found[backend.subject] = (backend.subject, backend.index,
                                  f"spec.rules[{backend.index}].timeouts.{field_name}",
                                  text or "?")
    return [found[k] for k in sorted(found)]


def timeouts(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1009: requests time out waiting for a service (UT, 504)."""
    for edges in by_service(evidence):
        ref = edges.ref
        timed_out = edges.total("timeout")
        if not timed_out:
            continue
        lines = [f"{node} -> {ref.host}: {v.get('timeout', 0)} of {requests(v)} requests "
                 f"timed out (UT, 504)"
                 for node, v in sorted(edges.callers.items()) if v.get("timeout")]
        configured = _timeout_rules(evidence, ref)
        lines += [f"{subject}: {path.rsplit('.', 1)[1]} timeout {limit}"
                  for subject, _, path, limit in configured]
        if not configured:
            lines.append("no HTTPRoute sets a timeout: Envoy's default of 15s applies")
        lines += instance_errors(evidence, ref)
        if configured:
            subject, _, path, limit = configured[0]
            fix = (f"make {ref.host} answer faster, or raise {path} in "
                   f"{subject.split('#')[0]} (now {limit}) if that latency is expected")
        else:
            subject = service_subject(ref)
            fix = f"make {ref.host} answer within 15s, or set a longer timeout on an HTTPRoute"
        yield Finding(
            "TUL1009", Severity.ERROR, impact(timed_out, edges.requests, base=60), subject,
            f"Requests to {ref.host} time out (UT): it answers slower than the route allows. "
            "The mesh answered them 504 when the timeout expired; the application was too "
            "slow.",
            tuple(lines), fix,
            related=(*edges.related, *(c[0] for c in configured[1:])),
            sources=edges.sources, symptom=True)  # of a slow or stuck instance, if found


def _flag_line(node: str, ref: ServiceRef, values: dict[str, int]) -> str:
    if all_grpc(values):
        # gRPC calls: their failures are grpc-statuses (Envoy's own answers too: it says
        # UNAVAILABLE for a 503 it made), counted with the flags of the calls it answered.
        return (f"{node} -> {ref.host}: {values['rq5']} of {requests(values)} gRPC calls "
                f"failed ({status_counts(values) or 'no status detail'})" + _flags_of(values))
    codes = ", ".join(f"{k[1:]}: {n}" for k, n in sorted(values.items())
                      if k.startswith("c5") and n)
    return (f"{node} -> {ref.host}: {values['rq5']} of {requests(values)} requests 5xx "
            f"({codes or 'no code detail'})" + _flags_of(values))


def _flags_of(values: dict[str, int]) -> str:
    flags: dict[str, int] = {}
    for name, flag in _FLAGS:
        if values.get(name):
            flags[flag] = flags.get(flag, 0) + values[name]
    flag_text = ", ".join(f"{f} {n}" for f, n in flags.items())
    return f"; flags: {flag_text}" if flag_text else ""


def _culprit(evidence: Evidence, ref: ServiceRef) -> str | None:
    """The one instance answering most of the service's 5xx, far more often than its peers."""
    answers = {node: evidence.inbound(node) for node in members(evidence, ref)
               if node in evidence.workloads}  # a departed instance is not one to fix
    answers = {n: v for n, v in answers.items() if requests(v)}
    errors = sum(v.get("rq5", 0) for v in answers.values())
    if len(answers) < 2 or not errors:
        return None
    node, values = max(answers.items(), key=lambda item: item[1].get("rq5", 0))
    others = [v for n, v in answers.items() if n != node]
    rate = share(values.get("rq5", 0), requests(values))
    peers = share(sum(v.get("rq5", 0) for v in others), sum(requests(v) for v in others))
    if share(values.get("rq5", 0), errors) >= CULPRIT_SHARE and rate >= CULPRIT_MIN_RATE \
            and rate >= CULPRIT_RATIO * peers:
        return node
    return None


def edge_errors(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1013: 5xx on calls to a service; its culprit instance when one stands out (a
    cause), else the service (a symptom; causes above explain it)."""
    for edges in by_service(evidence):
        failed = edges.total("rq5")
        total = edges.requests
        if failed < EDGE_MIN_ERRORS or share(failed, total) < EDGE_MIN_SHARE:
            continue  # a few odd 5xx in a busy window are not a finding
        yield _edge_finding(evidence, edges, failed, total)


def _edge_finding(evidence: Evidence, edges: Edges, failed: int, total: int) -> Finding:
    ref = edges.ref
    lines = [_flag_line(node, ref, dict(v)) for node, v in sorted(edges.callers.items())
             if v.get("rq5")]
    lines += instance_errors(evidence, ref)
    app_errors = inbound(evidence, members(evidence, ref)).get("rq5", 0)
    seen = {name: edges.total(name) for name, _ in _FLAGS}
    culprit = _culprit(evidence, ref)
    severity = Severity.ERROR if share(failed, total) >= EDGE_ERROR_SHARE else Severity.WARNING
    who = answered_by(seen, app_errors)
    caller_view = sum_values(edges.callers.values())
    grpc = speaks_grpc(evidence, [ref], caller_view)
    # gRPC: "with gRPC status UNAVAILABLE (14)", as the calls failed; else "with 5xx".
    failed_with = f"with {status_text(caller_view)}" if grpc else "with 5xx"
    if culprit is not None:
        values = evidence.inbound(culprit)
        served = services_served(evidence, culprit)
        answers = (f"{share(values.get('rq5', 0), requests(values)):.0%} of its gRPC calls "
                   f"with {status_text(values)}" if grpc else
                   f"{share(values.get('rq5', 0), requests(values)):.0%} of its requests "
                   "with 5xx")
        return Finding(
            "TUL1013", severity, impact(failed, total, base=55), proxy_subject(culprit),
            f"{culprit} answers {answers} while its peers do not, so {failed} of {total} "
            f"calls to {ref.host} failed. {who}",
            tuple(lines),
            f"fix or restart {culprit} (`tulle tap {culprit.split('.')[0]} --status 5xx` "
            "shows its failing requests); stopping it moves its traffic to its peers",
            related=tuple(service_subject(r) for r in sorted({ref, *served})),
            sources=edges.sources)
    return Finding(
        "TUL1013", severity, impact(failed, total, base=30), service_subject(ref),
        f"{failed} of {total} calls to {ref.host} failed {failed_with}. {who}", tuple(lines),
        f"see the causes listed above; without one, look at {ref.name}'s own errors: "
        f"`tulle tap {ref.name} --status 5xx`",
        related=edges.related, sources=edges.sources, symptom=True)


RULES: tuple[Rule, ...] = (timeouts, edge_errors)
