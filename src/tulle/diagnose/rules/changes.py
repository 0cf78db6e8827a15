"""Diagnosis rules: client errors after a change (TUL1026).

A rewrite that sends requests to a path the application does not serve, a new match that
leaves some requests unrouted: 4xx (404 above all) rise right after a change, while 5xx stay
flat (TUL1065 covers 5xx). The change is named with its revision and diff, and blamed only
when the traffic it touched was answered normally before it. 4xx are counted on the callers'
side: answers from the application (OUTBOUND ``rq4`` less 429s, which rate limits make and
TUL1010/TUL1011 explain) and 404s the caller's own sidecar made
because no route matched (PROXY ``noroute``, NR), which never reach a cluster.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from tulle.diagnose.evidence import Evidence, TimeSlot, requests
from tulle.diagnose.model import (
    Finding,
    Scope,
    Severity,
    proxy_subject,
    resource_subject,
    rule_subject,
    service_subject,
)
from tulle.diagnose.rank import impact
from tulle.diagnose.rules import Rule
from tulle.diagnose.rules._traffic import share
from tulle.diagnose.rules.controlplane import (
    affected_services,
    change_name,
    changed_paths,
    diff_summary,
    rollback_fix,
    when,
)
from tulle.model.meta import ResourceKey, ServiceRef
from tulle.store.base import Change
from tulle.telemetry.schema import OUTBOUND, PROXY, SeriesKey

MIN_AFTER, MIN_BEFORE = 10, 5  # requests after the change, and before it (healthy traffic)
MIN_RATE, MIN_RISE = 0.10, 0.10  # >= 10 % 4xx after, 10 points above before
_RULE_PATH = re.compile(r"^spec\.rules\[(\d+)\]")


@dataclass
class _Counts:
    requests: int = 0
    client_errors: int = 0  # 4xx the application answered
    not_found: int = 0  # of which 404
    no_route: int = 0  # 404 the caller's sidecar answered (NR)

    @property
    def total(self) -> int:
        return self.requests + self.no_route

    @property
    def errors(self) -> int:
        return self.client_errors + self.no_route

    @property
    def rate(self) -> float:
        return share(self.errors, self.total)


def _count(slots: list[TimeSlot], services: set[ServiceRef], only: set[str] | None = None
           ) -> tuple[_Counts, set[str]]:
    counts = _Counts()
    callers: set[str] = set()
    for slot in slots:
        for (node, key), values in slot.counters.items():
            if key.kind != OUTBOUND or not key.destination:
                continue
            if only is not None and node not in only:
                continue
            name, _, namespace = key.destination.partition(".")
            if ServiceRef(namespace, name) not in services:
                continue
            callers.add(node)
            counts.requests += requests(values)
            # 429s are the mesh's rate limits doing their work (TUL1010/TUL1011 name them),
            # not requests the application does not serve.
            counts.client_errors += max(0, values.get("rq4", 0) - values.get("c429", 0))
            counts.not_found += values.get("c404", 0)
    return counts, callers


def _no_route(slots: list[TimeSlot], callers: set[str]) -> int:
    return sum(slot.counters.get((node, SeriesKey(PROXY)), {}).get("noroute", 0)
               for slot in slots for node in callers)


def _answered_before(during: _Counts, rate_after: float) -> float:
    """The fewest calls of the slot a change fell in that were answered before it.

    With ``rate_after`` the 4xx share since the change, a slot of T calls and E 4xx holds at
    least T - E / rate_after calls from before the change (all of them answered without a 4xx
    at the least). And the share before the change was at most the slot's own share E / T,
    since the calls after it fail more. So when the telemetry before the change is too thin,
    that slot stands in for it: its share bounds the rise from below.
    """
    if not during.total or rate_after <= during.rate:
        return 0.0
    return during.total - during.errors / rate_after


def _changed_rule(change: Change) -> str:
    """The change's subject: the route's one changed rule when only one changed, else the
    resource."""
    subject = resource_subject(change.key)
    if change.key.kind != "HTTPRoute" or change.before is None or change.after is None:
        return subject
    paths = changed_paths(change.before.get("spec"), change.after.get("spec"), "spec")
    matches = [_RULE_PATH.match(path) for path in paths]
    indexes = {int(m.group(1)) for m in matches if m is not None}
    if len(indexes) != 1 or None in matches:
        return subject  # several rules, or more than rules, changed
    index = indexes.pop()
    rules = (change.after.get("spec") or {}).get("rules") or []
    rule = rules[index] if index < len(rules) and isinstance(rules[index], Mapping) else {}
    name = rule.get("name")
    return rule_subject(ResourceKey(change.key.kind, change.key.namespace, change.key.name),
                        index, str(name) if name else None)


def client_errors_after_change(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1026: 4xx rose on a service or rule right after a change."""
    if not evidence.timeline:
        return
    blamed: set[ServiceRef] = set()
    for change in evidence.history:  # newest first: the latest change before the rise wins
        if change.at < evidence.timeline[0].start:
            break
        services = affected_services(change)
        if not services or services & blamed:
            continue
        before, after = evidence.around(change.at)
        then, callers_then = _count(before, services)
        now, callers_now = _count(after, services)
        callers = callers_then | callers_now
        then.no_route, now.no_route = _no_route(before, callers), _no_route(after, callers)
        # The slot the change fell in holds both sides of it: when it looks like before (few
        # 4xx), the calls of callers that ran before the change count as before.
        straddle = [s for s in evidence.timeline if s.start < change.at < s.start + s.seconds]
        older = {n for n, w in evidence.workloads.items() if w.registered_at < change.at}
        during, _ = _count(straddle, services, older)
        during.no_route = _no_route(straddle, callers & older)
        mixed = False
        if during.total and during.rate < MIN_RATE:
            then = _Counts(then.requests + during.requests,
                           then.client_errors + during.client_errors,
                           then.not_found + during.not_found, then.no_route + during.no_route)
        elif then.total < MIN_BEFORE and _answered_before(during, now.rate) >= MIN_BEFORE:
            then, mixed = during, True
        if now.total < MIN_AFTER or then.total < MIN_BEFORE:
            continue
        if now.rate < MIN_RATE or now.rate - then.rate < MIN_RISE:
            continue
        blamed |= services
        mesh_made = now.no_route >= now.client_errors
        hosts = ", ".join(sorted(r.host for r in services))
        subject = _changed_rule(change)
        lines = [f"revision {change.revision} at {when(change.at)}: {change.action} "
                 f"{change_name(change)}, {diff_summary(change)}",
                 (f"4xx on calls to {hosts} in the {straddle[0].seconds:.0f} s the change fell "
                  f"in (calls from before and after it): {then.rate:.0%} of {then.total} "
                  f"requests, so at most that before it" if mixed else
                  f"4xx on calls to {hosts} before it: {then.rate:.0%} of {then.total} "
                  f"requests") + f"; since: {now.rate:.0%} of {now.total} requests",
                 f"since the change: {now.no_route} answered 404 by the caller's sidecar (no "
                 f"route matched, NR), {now.client_errors} 4xx by the application "
                 f"({now.not_found} of them 404)"]
        yield Finding(
            "TUL1026", Severity.ERROR, impact(now.errors, now.total, base=75), subject,
            f"Client errors on calls to {hosts} rose from {then.rate:.0%} to {now.rate:.0%} "
            f"right after revision {change.revision} ({change.action} {change_name(change)}). "
            + ("The mesh answered them itself: no route matches those requests any more (404 "
               "NR)." if mesh_made else "The application answered them: the change sends it "
               "requests it does not serve (a rewrite, a new path or backend)."),
            tuple(lines),
            f"{rollback_fix(change)}; or fix {change_name(change)} and apply it again",
            related=(*(service_subject(r) for r in sorted(services)),
                     *((resource_subject(change.key),) if subject != resource_subject(
                         change.key) else ())),
            sources=tuple(proxy_subject(n) for n in sorted(callers)))


RULES: tuple[Rule, ...] = (client_errors_after_change,)
