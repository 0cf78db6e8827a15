"""Measuring a ServiceLevelObjective's indicators on the telemetry windows, per sidecar: what
`tulle slo` shows and what diagnose's TUL1032 reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tulle.model.slo import Burn, Indicator, MeshSlo
from tulle.telemetry.query import NodeInfo
from tulle.telemetry.slo import Counted, counted, indicator_series
from tulle.telemetry.windows import Window


def members(slo: MeshSlo, nodes: Mapping[str, NodeInfo]) -> list[str]:
    """The node ids of a Service SLO's instances (none for a route rule's)."""
    if slo.service is None:
        return []
    return sorted(node for node, info in nodes.items()
                  if (info.namespace, info.service) == (slo.service.namespace,
                                                        slo.service.name))


def per_node(slo: MeshSlo, indicator: Indicator, window: Window,
             nodes: Mapping[str, NodeInfo]) -> dict[str, Counted]:
    """Requests and bad ones per sidecar: a Service's instances, or a route rule's callers."""
    series = indicator_series(window, members(slo, nodes), slo.route, slo.rule)
    return counted(series, indicator.threshold_ms)


def burn(indicator: Indicator, counts: Iterable[Counted]) -> Burn:
    items = list(counts)
    return Burn(sum(c.requests for c in items), sum(c.bad for c in items), indicator.budget)


def worst(counts: Mapping[str, Counted], limit: int) -> list[tuple[str, Counted]]:
    """The ``limit`` names with the most bad requests (none without any), most first."""
    ranked = sorted((item for item in counts.items() if item[1].bad),
                    key=lambda item: (-item[1].bad, item[0]))
    return ranked[:limit]
