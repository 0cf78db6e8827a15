"""The counters `tulle diagnose` needs reach the control plane: the sidecar keeps them (the
stats matcher) and the agent extracts them into series."""

from __future__ import annotations

import re

import pytest

from tulle.telemetry.envoy_stats import EnvoyStats, extract
from tulle.telemetry.schema import STATS_INCLUSION, SeriesKey

PROXY = SeriesKey("proxy")
BOOKS = SeriesKey("out", "books.default")


@pytest.mark.parametrize(("stat", "key", "field"), [
    ("http.outbound.no_route", PROXY, "noroute"),
    ("http.upstream_9000.no_route", PROXY, "noroute"),
    ("route_ratelimit.http_local_rate_limit.rate_limited", PROXY, "route_limited"),
    ("http.outbound.fault.aborts_injected", PROXY, "fault_aborts"),
    ("http.upstream_9000.fault.delays_injected", PROXY, "fault_delays"),
    ("cluster.outbound|books|default.upstream_cx_none_healthy", BOOKS, "no_healthy"),
    ("cluster.outbound|books|default.upstream_rq_pending_overflow", BOOKS, "overflow"),
    ("cluster.outbound|books|default.upstream_rq_retry_limit_exceeded", BOOKS,
     "retry_exhausted"),
    ("cluster.outbound|books|default.upstream_rq_timeout", BOOKS, "timeout"),
    ("cluster.outbound|books|default.upstream_cx_connect_fail", BOOKS, "cfail"),
    ("cluster.inbound|8080.upstream_cx_connect_fail", SeriesKey("in"), "app_cfail"),
    ("inbound_ratelimit.http_local_rate_limit.rate_limited", SeriesKey("in"), "limited"),
])
def test_kept_and_extracted(stat: str, key: SeriesKey, field: str) -> None:
    assert any(re.search(pattern, stat) for pattern in STATS_INCLUSION), f"{stat} is dropped"
    series = extract(EnvoyStats({stat: 4}))
    assert series[key][field] == 4


def test_no_route_sums_over_listeners() -> None:
    series = extract(EnvoyStats({"http.outbound.no_route": 2, "http.upstream_9000.no_route": 3}))
    assert series[PROXY]["noroute"] == 5
