"""`tulle slo`: each ServiceLevelObjective's indicators over the windows the control plane keeps
(its last 15 minutes), and who burns the budget.

Compliance over an SLO's own window (28 days) needs a longer memory than the control plane's:
`tulle prometheus rules` gives Prometheus the rules for it. What this says is how the recent
requests stand against the objective, and how fast they burn its budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tulle.diagnose.slos import burn, per_node, worst
from tulle.model.slo import FAST_BURN, MeshSlo, format_ms, verdict, window_text
from tulle.telemetry.query import NodeInfo
from tulle.telemetry.windows import Window

RECENT_S = 300.0
TOP_BURNERS = 3


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100.0 * value, 4)


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def slo_rows(slos: Iterable[MeshSlo], seen: Window, recent: Window,
             nodes: Mapping[str, NodeInfo]) -> list[dict[str, Any]]:
    rows = []
    for slo in slos:
        for indicator in slo.indicators:
            nodes_seen = per_node(slo, indicator, seen, nodes)
            over_seen = burn(indicator, nodes_seen.values())
            over_recent = burn(indicator, per_node(slo, indicator, recent, nodes).values())
            rows.append({
                "namespace": slo.key.namespace, "name": slo.key.name, "target": slo.target,
                "sli": indicator.sli, "objective": indicator.objective,
                "threshold": None if indicator.threshold_ms is None
                else format_ms(indicator.threshold_ms),
                "window": window_text(slo.window_s),
                "requests": over_seen.requests, "bad": over_seen.bad,
                "actual": _percent(None if over_seen.ratio is None else 1 - over_seen.ratio),
                "budgetLeft": _percent(over_seen.budget_left),
                "burnRate": _rate(over_seen.rate),
                "burnRateRecent": _rate(over_recent.rate),
                "fastBurnRate": _rate(FAST_BURN.factor(slo.window_s)),
                "verdict": verdict(over_seen, over_recent, slo.window_s),
                # Sidecars whose requests were bad: the instances (a Service's), or the
                # callers (a route rule's).
                "burnedBy": [{"proxy": node, "bad": c.bad, "requests": c.requests}
                             for node, c in worst(nodes_seen, TOP_BURNERS)],
            })
    return rows
