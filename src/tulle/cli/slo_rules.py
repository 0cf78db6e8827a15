"""Prometheus rules for ServiceLevelObjectives: recording rules and multiwindow, multi-burn-rate
alerts, in the form of the Google SRE workbook (chapter "Alerting on SLOs").

Per SLO and indicator (success, latency), one rule group:

- ``tulle_slo:bad_ratio:rate5m`` ... ``rate3d`` and over the SLO's window: the share of bad
  requests (5xx; or slower than the threshold), labelled ``slo``, ``namespace``, ``sli``;
- ``tulle_slo:error_budget`` (the share that may be bad) and
  ``tulle_slo:error_budget_remaining`` (over the SLO's window; below 0 once spent);
- ``TulleSLOFastBurn`` (severity page): 2 % of the budget spent in 1 h, or 5 % in 6 h;
  ``TulleSLOSlowBurn`` (severity ticket): 10 % in 1 d, or 10 % in 3 d. Each long window is
  confirmed by a short one (5 m, 30 m, 2 h, 6 h), so an alert resolves soon after the burn
  stops. The thresholds scale with the SLO's window (14.4 for the workbook's 30 days).

The series are tulle's own metrics (docs/observability.md): a Service's indicators from its
instances' sidecars (inbound), a route rule's from its callers' sidecars.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tulle.model.slo import BURN_ALERTS, LATENCY, Indicator, MeshSlo
from tulle.model.slo import window_text as prometheus_duration

RECORD = "tulle_slo:bad_ratio:rate"
BUDGET = "tulle_slo:error_budget"
REMAINING = "tulle_slo:error_budget_remaining"
FAST_ALERT = "TulleSLOFastBurn"
SLOW_ALERT = "TulleSLOSlowBurn"


def le_label(ms: float) -> str:
    """A histogram bound as the sidecars' metrics write it in ``le`` (seconds)."""
    value = ms / 1000
    return str(int(value)) if value == int(value) else repr(value)


def _selector(slo: MeshSlo) -> tuple[str, str]:
    """(metric prefix, label matchers) of the series an SLO reads."""
    if slo.service is not None:
        return "tulle_", (f'direction="inbound",namespace="{slo.service.namespace}",'
                          f'service="{slo.service.name}"')
    return "tulle_route_", f'route="{slo.route}",rule="{slo.rule}"'


def bad_ratio(slo: MeshSlo, indicator: Indicator, window: str) -> str:
    prefix, match = _selector(slo)
    if indicator.sli == LATENCY and indicator.threshold_ms is not None:
        good = (f'sum(rate({prefix}request_duration_seconds_bucket{{{match},'
                f'le="{le_label(indicator.threshold_ms)}"}}[{window}]))')
        total = f"sum(rate({prefix}request_duration_seconds_count{{{match}}}[{window}]))"
        return f"1 - ({good} / {total})"
    bad = f'sum(rate({prefix}requests_total{{{match},code_class="5xx"}}[{window}]))'
    total = f"sum(rate({prefix}requests_total{{{match}}}[{window}]))"
    return f"{bad} / {total}"


def _windows(slo: MeshSlo) -> list[str]:
    seconds = {a.long_s for a in BURN_ALERTS} | {a.short_s for a in BURN_ALERTS}
    return [prometheus_duration(s) for s in sorted(seconds | {slo.window_s})]


def _labels(slo: MeshSlo, indicator: Indicator) -> dict[str, str]:
    return {"slo": slo.key.name, "namespace": slo.key.namespace, "sli": indicator.sli}


def _match(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def _threshold(factor: float, budget: float) -> tuple[str, str]:
    """(operator, value): a burn that needs more than every request to be bad is capped at
    every request (a 90 % objective over 28 days pages only when everything fails)."""
    value = factor * budget
    return (">", f"{value:.6g}") if value < 1 else (">=", "1")


def _burn(slo: MeshSlo, indicator: Indicator, severity: str) -> str:
    match = _match(_labels(slo, indicator))
    terms = []
    for alert in (a for a in BURN_ALERTS if a.severity == severity):
        op, value = _threshold(alert.factor(slo.window_s), indicator.budget)
        long_w, short_w = prometheus_duration(alert.long_s), prometheus_duration(alert.short_s)
        terms.append(f"({RECORD}{long_w}{{{match}}} {op} {value}"
                     f" and {RECORD}{short_w}{{{match}}} {op} {value})")
    return " or ".join(terms)


def _alert(slo: MeshSlo, indicator: Indicator, name: str, severity: str, speed: str
           ) -> dict[str, Any]:
    labels = _labels(slo, indicator)
    window = prometheus_duration(slo.window_s)
    return {
        "alert": name,
        "expr": _burn(slo, indicator, severity),
        "labels": {**labels, "severity": severity},
        "annotations": {
            "summary": f"SLO {slo.key.namespace}/{slo.key.name} ({slo.target}) burns its "
                       f"{indicator.sli} budget {speed}",
            "description": f"Objective: {indicator.describe()} over {window}. Find where it "
                           f"burns: tulle diagnose -n {slo.key.namespace}; tulle slo "
                           f"{slo.key.name} -n {slo.key.namespace}",
        },
    }


def group(slo: MeshSlo, indicator: Indicator) -> dict[str, Any]:
    labels = _labels(slo, indicator)
    window = prometheus_duration(slo.window_s)
    rules: list[dict[str, Any]] = [
        {"record": f"{RECORD}{w}", "expr": bad_ratio(slo, indicator, w),
         "labels": dict(labels)}
        for w in _windows(slo)]
    rules.append({"record": BUDGET, "expr": f"vector({indicator.budget:.6g})",
                  "labels": dict(labels)})
    rules.append({"record": REMAINING,
                  "expr": f"1 - ({RECORD}{window}{{{_match(labels)}}} / "
                          f"{indicator.budget:.6g})",
                  "labels": dict(labels)})
    rules.append(_alert(slo, indicator, FAST_ALERT, "page", "fast"))
    rules.append(_alert(slo, indicator, SLOW_ALERT, "ticket", "slowly"))
    return {"name": f"tulle-slo-{slo.key.namespace}-{slo.key.name}-{indicator.sli}",
            "rules": rules}


def rule_file(slos: Iterable[MeshSlo]) -> dict[str, Any]:
    return {"groups": [group(slo, indicator)
                       for slo in sorted(slos, key=lambda s: (s.key.namespace, s.key.name))
                       for indicator in slo.indicators]}
