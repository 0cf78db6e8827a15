"""Diagnosis rules: failures masked by retries (TUL1019).

A route rule's retries turn an instance's failed attempt into a success for the caller: the
caller's sidecar counts the retry (``retry``) and only the final answer. The instance's own
sidecar still counts every 5xx its application answered (INBOUND). When an instance answers
far more 5xx than its callers see, and the callers retry, retries hide its failures: they burn
capacity and latency today, and surface the day retries run out.
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
    service_subject,
)
from tulle.diagnose.rank import impact
from tulle.diagnose.rules import Rule
from tulle.diagnose.rules._grpc import speaks_grpc, status_counts, status_text
from tulle.diagnose.rules._traffic import (
    callers,
    callers_view,
    feeding,
    members,
    ms,
    p,
    services_served,
    share,
    subsets,
    total,
)
from tulle.model.meta import ServiceRef

MIN_ANSWERS = 10  # an instance's answers in the window before its error rate means anything
MIN_ERRORS = 3
MIN_RATE = 0.02  # the instance fails at least 2 % of attempts...
HIDDEN_RATIO = 0.5  # ...and callers see less than half of that rate
ERROR_RATE = 0.10  # from 10 % hidden failures: an error
BACKOFF_MS = 25.0  # Envoy's base retry back-off


@dataclass(frozen=True)
class _Masked:
    node: str
    answered: int
    failed: int
    p50: float | None
    served: tuple[ServiceRef, ...]
    values: dict[str, int]

    @property
    def rate(self) -> float:
        return share(self.failed, self.answered)


def _masked(evidence: Evidence) -> list[_Masked]:
    found = []
    for node in sorted({node for node, _ in evidence.window.counters}):
        workload = evidence.workloads.get(node)
        if workload is None or not workload.serves_traffic:
            continue  # gone or going (a restart's last 503s): nothing left to fix
        values = evidence.inbound(node)
        answered, failed = requests(values), values.get("rq5", 0)
        if answered < MIN_ANSWERS or failed < MIN_ERRORS or share(failed, answered) < MIN_RATE:
            continue
        served = services_served(evidence, node)
        seen = callers_view(evidence, served)
        if not seen.get("retry") or not requests(seen):
            continue  # nobody retries: callers see the failures (TUL1013)
        if share(seen.get("rq5", 0), requests(seen)) >= HIDDEN_RATIO * share(failed, answered):
            continue
        found.append(_Masked(node, answered, failed, p(values, 0.5), tuple(served), values))
    return found


def masked_failures(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1019: an instance (or a whole version) fails attempts that retries hide."""
    masked = _masked(evidence)
    by_node = {m.node: m for m in masked}
    reported: set[str] = set()
    # A version whose every instance fails is the culprit; otherwise the instance is.
    for ref in subsets(evidence):
        nodes = members(evidence, ref)
        if nodes and all(n in by_node for n in nodes):
            yield _finding(evidence, ref, [by_node[n] for n in nodes])
            reported.update(nodes)
    for item in masked:
        if item.node not in reported:
            yield _finding(evidence, None, [item])


def _finding(evidence: Evidence, version: ServiceRef | None, items: list[_Masked]
             ) -> Finding:
    served = sorted({ref for item in items for ref in item.served})
    seen = callers_view(evidence, served)
    answered = sum(i.answered for i in items)
    failed = sum(i.failed for i in items)
    rate = share(failed, answered)
    calls, retries = requests(seen), seen.get("retry", 0)
    seen_failed = seen.get("rq5", 0)
    rules = sorted({b.subject for ref in served for b in feeding(evidence, ref)
                    if b.rule.retry is not None})
    p50 = max((i.p50 for i in items if i.p50 is not None), default=None)
    cost = (p50 or 0.0) + BACKOFF_MS
    who = (f"version {version.host}" if version is not None else items[0].node)
    # A gRPC service: its calls failed by grpc-status (in HTTP 200), not with 5xx.
    answers = total(i.values for i in items)
    grpc = speaks_grpc(evidence, served, answers)
    calls_word = "calls" if grpc else "requests"
    lines = [_answered_line(i, grpc) for i in items]
    lines += [
        f"callers of {', '.join(r.host for r in served)} saw {seen_failed} of {calls} "
        f"{calls_word} fail ({share(seen_failed, calls):.1%}): retries hid the rest",
        f"retries: {retries} for {calls} {calls_word} ({share(retries, calls):.0%} retry rate)",
        f"latency cost: each retry adds another attempt (p50 {ms(p50)}) plus Envoy's back-off "
        f"(25 ms base): about {cost:,.0f} ms on {share(retries, calls):.0%} of calls",
    ]
    lines += [f"retry policy on {rule}" for rule in rules]
    severity = Severity.ERROR if rate >= ERROR_RATE else Severity.WARNING
    subject = service_subject(version) if version else proxy_subject(items[0].node)
    related = [service_subject(r) for r in served if service_subject(r) != subject]
    related += [proxy_subject(i.node) for i in items if proxy_subject(i.node) != subject]
    return Finding(
        "TUL1019", severity, impact(failed, answered, base=62), subject,
        (f"{who} fails {rate:.0%} of its gRPC calls with "
         f"{status_text(answers)}, but callers' retries hide it: "
         if grpc else f"{who} fails {rate:.0%} of its requests, but callers' retries hide it: ")
        + f"they see {share(seen_failed, calls):.1%} failures. The application produced these "
        "errors; the mesh's retries masked them, at the cost of extra load and latency.",
        tuple(lines),
        f"fix or roll back {who} (`tulle tap {items[0].node.split('.')[0]} --status 5xx` shows "
        "its failing requests)" + (f"; meanwhile lower the weight that sends it traffic in "
                                   f"{rules[0]}" if rules and version is not None else ""),
        related=(*related, *rules),
        sources=tuple(proxy_subject(n) for n in callers(evidence, served)))


def _answered_line(item: _Masked, grpc: bool) -> str:
    if not grpc:
        return (f"{item.node} answered {item.failed} of {item.answered} requests with 5xx "
                f"({item.rate:.1%}), p50 {ms(item.p50)}")
    codes = status_counts(item.values)
    return (f"{item.node} failed {item.failed} of {item.answered} gRPC calls ({item.rate:.1%})"
            + (f": {codes}" if codes else "") + f", p50 {ms(item.p50)}")


RULES: tuple[Rule, ...] = (masked_failures,)
