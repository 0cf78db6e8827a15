"""Diagnosis rules: a ServiceLevelObjective's budget burns fast (TUL1032).

Fast is the rate at which the Google SRE workbook pages: 2 % of the SLO's window's budget in an
hour (14.4 times the sustainable rate for 30 days). The evidence is the diagnosis window's
requests against the objective, and where the bad ones were: the instances that answered them
(a Service's objective) or the callers that sent them (a route rule's), and for a Service, the
route rules that chose them. The finding is a symptom: the finding that explains the failures
(an instance, a fault, a change) ranks above it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from tulle.diagnose.evidence import Evidence
from tulle.diagnose.model import (
    Finding,
    Scope,
    Severity,
    proxy_subject,
    resource_subject,
    service_subject,
    subject,
)
from tulle.diagnose.slos import burn, per_node, worst
from tulle.humanize import format_duration
from tulle.model.slo import FAST_BURN, Burn, Indicator, MeshSlo, mesh_slos, window_text
from tulle.telemetry.slo import Counted, by_route_rule

# Fewer bad requests than this prove no burn: one failure in 50 requests is 20x a 0.1 % budget.
MIN_BAD = 5
SHOWN = 3


def _what(indicator: Indicator) -> str:
    return "answered 5xx" if indicator.threshold_ms is None else "were slower than the threshold"


def _shares(title: str, counts: Mapping[str, Counted], bad: int) -> list[str]:
    return [f"{title} {name}: {c.bad} of the {bad} bad requests (of its {c.requests})"
            for name, c in worst(counts, SHOWN)]


def _evidence(slo: MeshSlo, indicator: Indicator, seen: Burn, nodes: Mapping[str, Counted],
              evidence: Evidence) -> list[str]:
    assert seen.rate is not None and seen.ratio is not None
    window = window_text(slo.window_s)
    lines = [f"{seen.requests} requests in the last {format_duration(evidence.window.seconds)}"
             f", {seen.bad} {_what(indicator)} ({100 * seen.ratio:.3g} %); objective "
             f"{indicator.describe()} over {window}, a budget of "
             f"{100 * indicator.budget:.3g} % bad",
             f"burn rate {seen.rate:.3g}x (paging starts at "
             f"{FAST_BURN.factor(slo.window_s):.3g}x): at this rate the {window} budget is "
             f"spent in {format_duration(slo.window_s / seen.rate)}"]
    side = "instance" if slo.service is not None else "caller"
    lines += _shares(side, nodes, seen.bad)
    if slo.service is not None:
        # The callers' side: failures the service never answered count there too.
        rules = by_route_rule(evidence.window, slo.service.host, indicator.threshold_ms)
        named = {f"{route}#{rule}": c for (route, rule), c in rules.items()}
        lines += [f"route rule {name}: {c.bad} of its {c.requests} requests bad (as its "
                  "callers saw them)" for name, c in worst(named, SHOWN)]
    return lines


def burning_fast(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1032: an SLO's error budget burns at the paging rate."""
    slos = mesh_slos((key, r.spec) for key, r in evidence.mesh.resources.items())
    for slo in slos:
        for indicator in slo.indicators:
            nodes = per_node(slo, indicator, evidence.window, evidence.nodes)
            seen = burn(indicator, nodes.values())
            fast = FAST_BURN.factor(slo.window_s)
            if seen.rate is None or seen.rate < fast or seen.bad < MIN_BAD:
                continue
            target = service_subject(slo.service) if slo.service is not None else \
                subject("httproute", (slo.route or "").partition("/")[2],
                        slo.key.namespace) + f"#{slo.rule}"
            about = f"service {slo.service.name}" if slo.service is not None else \
                f"route rule {slo.target.removeprefix('httproute/')}"
            cause = (f"SLO {slo.key.namespace}/{slo.key.name} burns its {indicator.sli} "
                     f"budget {seen.rate:.3g} times as fast as {window_text(slo.window_s)} "
                     f"allows: {seen.bad} of {seen.requests} requests to {about} "
                     f"{_what(indicator)}.")
            fix = (f"the findings on {about} name the cause (`tulle diagnose -n "
                   f"{slo.key.namespace}`); if a change started it, `tulle history` and "
                   "`tulle rollback`; `tulle slo` shows when the burn stops")
            yield Finding(
                "TUL1032", Severity.ERROR, min(85.0, 40.0 + 5.0 * seen.rate / fast),
                resource_subject(slo.key), cause,
                tuple(_evidence(slo, indicator, seen, nodes, evidence)), fix,
                related=(target,),
                sources=tuple(proxy_subject(n) for n, c in sorted(nodes.items())
                              if c.bad and slo.service is None),
                symptom=True)


RULES = (burning_fast,)
