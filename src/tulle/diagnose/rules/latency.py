"""Diagnosis rules: latency. A service slower than its own recent past (TUL1021), one
instance much slower than its peers (TUL1022), a route rule's p99 approaching its timeout
(TUL1023), and requests that hang until the timeout: accepted, never answered (TUL1024).

"Now" is the last 30 s of the telemetry timeline (``_traffic.recent``): a fault 20 s old
must not be diluted by the healthy minute before it. Latency comes from Envoy's histograms
folded into tulle's buckets, so figures are estimates within a bucket's width.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator

from tulle.diagnose.evidence import Evidence, TimeSlot, requests
from tulle.diagnose.model import (
    Finding,
    Scope,
    Severity,
    proxy_subject,
    rule_subject,
    service_subject,
)
from tulle.diagnose.rank import impact
from tulle.diagnose.rules import Rule
from tulle.diagnose.rules._traffic import (
    backends,
    callers,
    callers_view,
    feeding,
    members,
    ms,
    p,
    recent,
    route_timeout,
    services_served,
    share,
    slots_callers,
    slots_inbound,
    split_timeline,
    total,
)
from tulle.model.meta import ServiceRef
from tulle.telemetry.schema import ROUTE, rule_key
from tulle.telemetry.windows import add_into

# TUL1021: p99 now against p99 before, from callers' side.
PAST_MIN_REQUESTS, NOW_MIN_REQUESTS = 50, 20
REGRESSION_RATIO, REGRESSION_MARGIN_MS = 2.0, 100.0
REGRESSION_ERROR_RATIO, REGRESSION_ERROR_MARGIN_MS = 5.0, 1000.0
# TUL1022: an instance's p50 against its peers' median (same service and version).
SLOW_MIN_ANSWERS = 20
SLOW_RATIO, SLOW_MARGIN_MS = 2.0, 100.0
SLOW_RATIO_ONE_PEER = 3.0  # with a single peer, be surer
SLOW_ERROR_MARGIN_MS = 500.0
# TUL1023: a rule's p99 at this share of its timeout, with few timeouts yet.
NEAR_TIMEOUT_SHARE, NEAR_MIN_REQUESTS, NEAR_MAX_TIMEOUT_SHARE = 0.8, 20, 0.01
# TUL1024: callers' requests ending in a timeout.
HANG_SHARE = 0.5  # of a service's calls (none of its instances to blame)
HANG_PAST_ANSWERS = 10  # an instance answered this many before...
HANG_SILENT_S = 10.0  # ...and none in the last 10 s
HANG_MIN_TIMEOUT_S = 5.0  # below, a timeout says "slower than allowed" (TUL1009), not "hung"
DEFAULT_TIMEOUT_S = 15.0  # Envoy's route timeout when no rule sets one


def _regressed(before: dict[str, int], after: dict[str, int]
               ) -> tuple[float, float, bool] | None:
    """(p99 before, p99 now, severe) when p99 rose enough against its past; else None."""
    if requests(before) < PAST_MIN_REQUESTS or requests(after) < NOW_MIN_REQUESTS:
        return None
    then, current = p(before, 0.99), p(after, 0.99)
    if then is None or current is None or current < REGRESSION_RATIO * then \
            or current - then < REGRESSION_MARGIN_MS:
        return None
    return then, current, (current >= REGRESSION_ERROR_RATIO * then
                           and current - then >= REGRESSION_ERROR_MARGIN_MS)


def _rule_series(slots: list[TimeSlot]) -> dict[tuple[str, str, str], dict[str, int]]:
    """Callers' ROUTE series summed per (route "ns/name", rule key, virtual host)."""
    out: dict[tuple[str, str, str], dict[str, int]] = {}
    for slot in slots:
        for (_, key), values in slot.counters.items():
            if key.kind == ROUTE:
                add_into(out.setdefault((key.route, key.rule, key.destination), {}), values)
    return out


def latency_regression(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1021: a called service's p99 (or one route rule's, when the services' did not
    move) rose against its own recent past."""
    older, now = split_timeline(evidence)
    if not older or not now:
        return
    since = f"{evidence.now - min(s.start for s in now):.0f}s"
    past, present = slots_callers(older), slots_callers(now)
    regressed: set[str] = set()
    for ref in sorted({dst for _, dst, _ in evidence.edges()}):
        before, after = past.get(ref, {}), present.get(ref, {})
        found = _regressed(before, after)
        if found is None:
            continue
        then, current, severe = found
        regressed.add(ref.host)
        feeds = feeding(evidence, ref)
        yield Finding(
            "TUL1021", Severity.ERROR if severe else Severity.WARNING,
            min(80.0, 35.0 + current / max(then, 1.0)), service_subject(ref),
            f"Calls to {ref.host} got slower: p99 {ms(current)} in the last {since} against "
            f"{ms(then)} before.",
            (f"callers' p99 to {ref.host}: {ms(then)} over {requests(before)} requests before, "
             f"{ms(current)} over {requests(after)} requests now",
             f"p50: {ms(p(before, 0.5))} before, {ms(p(after, 0.5))} now",
             *(b.describe() for b in feeds)),
            f"find what changed for {ref.host}: a slow instance or dependency (see the other "
            f"findings), a deployment (`tulle history`); `tulle top` shows it live",
            related=tuple(b.subject for b in feeds),
            sources=tuple(proxy_subject(n) for n in callers(evidence, [ref])), symptom=True)
    yield from _rule_regressions(evidence, older, now, regressed, since)


def _rule_regressions(evidence: Evidence, older: list[TimeSlot], now: list[TimeSlot],
                      regressed: set[str], since: str) -> Iterator[Finding]:
    past, present = _rule_series(older), _rule_series(now)
    rules = {(f"{a.key.namespace}/{a.key.name}", rule_key(i, r.name)): (a, i, r, parent)
             for parent, attached in evidence.mesh.routes.items() for a in attached
             for i, r in enumerate(a.spec.rules)}
    for (route, rule, host), after in sorted(present.items()):
        found = _regressed(past.get((route, rule, host), {}), after)
        known = rules.get((route, rule))
        if found is None or known is None:
            continue
        attached, index, spec, parent = known
        targets = {parent.host, *(f"{b.name}.{b.namespace or attached.key.namespace}"
                                  for b in spec.backend_refs)}
        if targets & regressed:
            continue  # the service's own finding says it
        then, current, severe = found
        subject = rule_subject(attached.key, index, spec.name)
        yield Finding(
            "TUL1021", Severity.ERROR if severe else Severity.WARNING,
            min(80.0, 35.0 + current / max(then, 1.0)), subject,
            f"Requests of {subject} got slower: p99 {ms(current)} in the last {since} against "
            f"{ms(then)} before, while the rest of {parent.host}'s calls did not.",
            (f"{subject} (matches {spec.describe_matches()}): p99 {ms(then)} before, "
             f"{ms(current)} now, over {requests(after)} requests",),
            f"find what slows the requests {subject} matches (`tulle tap {parent.name}` shows "
            "their durations)",
            related=(service_subject(parent),), symptom=True)


def slow_instance(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1022: one instance answers much slower than its peers."""
    now = recent(evidence)
    groups: dict[tuple[ServiceRef, str], list[str]] = {}
    for node, workload in evidence.workloads.items():
        groups.setdefault((workload.service_ref, workload.version), []).append(node)
    for nodes in (group for _, group in sorted(groups.items())):
        measured = {}
        for node in nodes:
            values = now.inbound(node)
            if requests(values) >= SLOW_MIN_ANSWERS and (p50 := p(values, 0.5)) is not None:
                measured[node] = (p50, p(values, 0.99), requests(values))
        for node, (p50, p99, answered) in sorted(measured.items()):
            peers = [v[0] for n, v in measured.items() if n != node]
            if not peers:
                continue
            median = statistics.median(peers)
            ratio = SLOW_RATIO if len(peers) >= 2 else SLOW_RATIO_ONE_PEER
            if p50 < ratio * median or p50 - median < SLOW_MARGIN_MS:
                continue
            served = services_served(evidence, node)
            lines = [f"{node}: p50 {ms(p50)}, p99 {ms(p99)} over {answered} requests"]
            lines += [f"{n}: p50 {ms(v[0])}, p99 {ms(v[1])} over {v[2]} requests"
                      for n, v in sorted(measured.items()) if n != node]
            lines.append(f"{node} is {p50 - median:,.0f} ms slower than the median of its "
                         f"{len(peers)} peer(s) ({ms(median)})")
            yield Finding(
                "TUL1022",
                Severity.ERROR if p50 - median >= SLOW_ERROR_MARGIN_MS else Severity.WARNING,
                min(85.0, 50.0 + (p50 - median) / 50.0), proxy_subject(node),
                f"{node} answers {p50 - median:,.0f} ms slower than its peers "
                f"(p50 {ms(p50)} against {ms(median)}): its application, or its host, is slow.",
                tuple(lines),
                f"see what slows {node} (`tulle tap {node.split('.')[0]}` shows its requests' "
                "durations; its host's CPU and its dependencies); restart it, or stop it so "
                "that its peers take its traffic",
                related=tuple(service_subject(r) for r in served),
                sources=tuple(proxy_subject(n) for n in callers(evidence, served)))


def near_timeout(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1023: a route rule's p99 approaches its timeout."""
    for parent, attached_routes in sorted(evidence.mesh.routes.items()):
        for attached in attached_routes:
            route = f"{attached.key.namespace}/{attached.key.name}"
            for index, rule in enumerate(attached.spec.rules):
                limit = route_timeout(rule)
                if limit is None:
                    continue
                seconds, field_name = limit
                key = rule_key(index, rule.name)
                values = total(v for (_, k), v in evidence.window.counters.items()
                               if k.kind == ROUTE and k.route == route and k.rule == key)
                answered = requests(values)
                p99 = p(values, 0.99)
                if answered < NEAR_MIN_REQUESTS or p99 is None:
                    continue
                if p99 < NEAR_TIMEOUT_SHARE * seconds * 1000 or \
                        share(values.get("timeout", 0), answered) > NEAR_MAX_TIMEOUT_SHARE:
                    continue
                subject = rule_subject(attached.key, index, rule.name)
                yield Finding(
                    "TUL1023", Severity.WARNING, 50.0, subject,
                    f"Requests of {subject} take up to {ms(p99)} (p99), "
                    f"{share(p99, seconds * 1000):.0%} of the rule's {field_name} timeout of "
                    f"{seconds:g}s: a little slower and they fail with 504.",
                    (f"{subject}: p50 {ms(p(values, 0.5))}, p99 {ms(p99)} over {answered} "
                     f"requests, {values.get('timeout', 0)} timed out",
                     f"timeout: spec.rules[{index}].timeouts.{field_name} = {seconds:g}s"),
                    f"make {parent.host} answer faster, or raise "
                    f"spec.rules[{index}].timeouts.{field_name} in {subject.split('#')[0]} if "
                    "that latency is expected",
                    related=(service_subject(parent),))


def _timeout_s(evidence: Evidence, ref: ServiceRef) -> float:
    """The shortest request timeout on calls to ``ref``: its routes' rules and those that
    send it traffic; Envoy's default without one."""
    limits = [limit[0] for b in [*backends(evidence, ref), *feeding(evidence, ref)]
              if (limit := route_timeout(b.rule)) is not None]
    return min(limits, default=DEFAULT_TIMEOUT_S)


def _silent(evidence: Evidence, ref: ServiceRef, answering: list[TimeSlot],
            quiet: list[TimeSlot]) -> tuple[list[str], int]:
    """The ready instances of ``ref`` that answered before and nothing in the quiet slots,
    and how many requests their peers answered meanwhile. An instance ejected by outlier
    detection gets no traffic: not silent."""
    silent, peers = [], 0
    ejected = {h.hostname for node in callers(evidence, [ref])
               for h in evidence.upstream_hosts(node, ref) or () if not h.healthy}
    for node in members(evidence, ref):
        workload = evidence.workloads.get(node)
        if workload is None or not workload.serves_traffic or not quiet:
            continue
        now = requests(slots_inbound(quiet, node))
        if requests(slots_inbound(answering, node)) >= HANG_PAST_ANSWERS and not now \
                and workload.name not in ejected:
            silent.append(node)
        peers += now
    return silent, peers


def requests_hang(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1024: requests hang until the timeout: an instance accepts them, never answers."""
    answering, quiet = split_timeline(evidence, HANG_SILENT_S)
    now = recent(evidence)
    for ref in sorted({dst for _, dst, _ in now.edges()}):
        seen = callers_view(now, [ref])
        timed_out = seen.get("timeout", 0)
        limit = _timeout_s(evidence, ref)
        long_waits = bool(timed_out) and limit >= HANG_MIN_TIMEOUT_S
        silent, peers = _silent(evidence, ref, answering, quiet)
        # Evidence that calls kept coming: peers answered meanwhile, or callers waited for a
        # long timeout (a short one says "slower than allowed": TUL1009).
        if silent and not (peers or long_waits):
            silent = []
        if not silent and not (long_waits and share(timed_out, requests(seen) or timed_out)
                               >= HANG_SHARE):
            continue
        lines = [f"callers of {ref.host}: {timed_out} of {requests(seen)} requests timed out "
                 f"(UT, 504) recently; the timeout on these calls is {limit:g}s"]
        lines += [f"{node} answered {requests(slots_inbound(answering, node))} requests before "
                  f"and none in the last {HANG_SILENT_S:g}s, while it stays ready and in the "
                  f"endpoints (its peers answered {peers} meanwhile)" for node in silent]
        who = ", ".join(silent) if silent else f"the instances of {ref.host}"
        everyone = bool(silent) and len(silent) == len(members(evidence, ref))
        one_culprit = bool(silent) and (len(silent) == 1 or not everyone)
        subjects = [proxy_subject(n) for n in silent] if one_culprit else [
            service_subject(ref)]
        for subject in subjects:
            yield Finding(
                "TUL1024", Severity.ERROR, impact(timed_out, requests(seen), base=70), subject,
                f"Requests to {who} hang until the timeout: the connection is accepted but no "
                "answer comes (an application stopped, deadlocked or stuck). Callers wait "
                "until their timeout; the mesh answers 504 when the route's expires.",
                tuple(lines),
                f"see whether the application of {who} is stopped or stuck (`tulle tap`, its "
                "process state, `kill -CONT` if it was stopped) and restart it; outlier "
                "detection with consecutiveGatewayErrors would take it out of rotation",
                related=(service_subject(ref),) if subject != service_subject(ref) else (),
                sources=tuple(proxy_subject(n) for n in callers(now, [ref])))


RULES: tuple[Rule, ...] = (latency_regression, slow_instance, near_timeout, requests_hang)
