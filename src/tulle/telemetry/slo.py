"""What a ServiceLevelObjective reads from the windows: per sidecar, the requests and the bad
ones (5xx, or slower than a threshold).

A Service's indicator is measured where it answers: its instances' inbound series (mTLS and
plaintext). A route rule's where it is chosen: its callers' route series for that rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tulle.telemetry.schema import (
    INBOUND,
    INBOUND_PLAINTEXT,
    LATENCY_BOUNDS_MS,
    LATENCY_FIELDS,
    REQUEST_FIELDS,
    ROUTE,
)
from tulle.telemetry.windows import Values, Window, add_into

FIVE_XX = REQUEST_FIELDS[-1]


@dataclass(frozen=True)
class Counted:
    """One sidecar's requests for an indicator, and how many of them were bad."""

    requests: int = 0
    bad: int = 0


def indicator_series(window: Window, members: Iterable[str] | None = None,
                     route: str | None = None, rule: str | None = None
                     ) -> dict[str, Values]:
    """Per node id, the summed series an indicator reads: ``members``' inbound series, or
    (``route``, ``rule``) every caller's route series for that rule."""
    wanted = set(members or ())
    out: dict[str, Values] = {}
    for (node, key), values in window.counters.items():
        if route is not None:
            if key.kind == ROUTE and key.route == route and key.rule == rule:
                add_into(out.setdefault(node, {}), values)
        elif node in wanted and key.kind in (INBOUND, INBOUND_PLAINTEXT):
            add_into(out.setdefault(node, {}), values)
    return out


def count(values: Mapping[str, int], threshold_ms: float | None = None) -> Counted:
    """Requests and bad ones: answered 5xx; or, with ``threshold_ms`` (one of the histogram's
    bounds), timed over it. Latency counts the requests the histogram timed."""
    if threshold_ms is None:
        return Counted(sum(values.get(f, 0) for f in REQUEST_FIELDS), values.get(FIVE_XX, 0))
    if threshold_ms not in LATENCY_BOUNDS_MS:
        raise ValueError(f"{threshold_ms} ms is not a bound of the latency histogram")
    timed = [values.get(f, 0) for f in LATENCY_FIELDS]
    within = sum(timed[:LATENCY_BOUNDS_MS.index(threshold_ms) + 1])
    return Counted(sum(timed), sum(timed) - within)


def counted(series: Mapping[str, Values], threshold_ms: float | None = None
            ) -> dict[str, Counted]:
    """``indicator_series`` counted, per node."""
    return {node: count(values, threshold_ms) for node, values in series.items()}


def by_route_rule(window: Window, destination: str, threshold_ms: float | None = None
                  ) -> dict[tuple[str, str], Counted]:
    """The callers' requests to ``destination`` ("name.namespace") per (route, rule) that
    chose them, counted as an indicator counts them."""
    sums: dict[tuple[str, str], Values] = {}
    for (_, key), values in window.counters.items():
        if key.kind == ROUTE and key.destination == destination:
            add_into(sums.setdefault((key.route, key.rule), {}), values)
    return {rule: count(values, threshold_ms) for rule, values in sums.items()}
