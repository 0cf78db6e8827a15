"""Sparklines: each service's and workload's requests and failures over the last minutes, in a
few equal buckets, from the windows' slots (what the dashboard draws beside the figures)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tulle.telemetry.query import NodeInfo, requests_of
from tulle.telemetry.schema import INBOUND, INBOUND_PLAINTEXT, ROUTE
from tulle.telemetry.windows import Sample

SPARK_POINTS = 30


def sparklines(slots: Iterable[tuple[float, float, Sample]], nodes: Mapping[str, NodeInfo],
               seconds: float, points: int = SPARK_POINTS) -> dict[str, Any]:
    """``slots``: (seconds ago the slot started, its length, counters), as the windows keep
    them. Per service ("name.namespace", measured where it answers, like `tulle stat`), per
    workload, and per route rule ("name.namespace route#rule", summed over its callers, like
    `tulle routes`): requests per second and failed (5xx) requests per second in each of
    ``points`` buckets, oldest first."""
    width = seconds / points
    services: dict[str, list[list[int]]] = {}
    workloads: dict[str, list[list[int]]] = {}
    rules: dict[str, list[list[int]]] = {}

    def add(table: dict[str, list[list[int]]], name: str, index: int,
            values: Mapping[str, int]) -> None:
        series = table.setdefault(name, [[0, 0] for _ in range(points)])
        series[index][0] += requests_of(values)
        series[index][1] += values.get("rq5", 0)

    for ago, _, sample in slots:
        index = min(points - 1, max(0, int((seconds - ago) / width)))
        for (node, key), values in sample.items():
            info = nodes.get(node)
            if key.kind == ROUTE:
                add(rules, f"{key.destination} {key.route}#{key.rule}", index, values)
            elif key.kind in (INBOUND, INBOUND_PLAINTEXT) and info is not None:
                add(services, f"{info.service}.{info.namespace}", index, values)
                add(workloads, node, index, values)

    def rates(table: dict[str, list[list[int]]]) -> dict[str, Any]:
        return {name: {"rps": [round(r / width, 3) for r, _ in series],
                       "failedPerSecond": [round(f / width, 3) for _, f in series]}
                for name, series in sorted(table.items())}

    return {"seconds": seconds, "points": points, "services": rates(services),
            "workloads": rates(workloads), "routeRules": rates(rules)}
