"""From Envoy's admin stats (JSON) to tulle series, and the per-interval deltas agents send."""

from __future__ import annotations

from typing import Any

import pytest

from tulle.telemetry.envoy_stats import EnvoyStats, Series, delta, extract, parse
from tulle.telemetry.schema import SeriesKey

IN = SeriesKey("in")
PLAIN = SeriesKey("in_plain")
BOOKS = SeriesKey("out", "books.default")
CART = SeriesKey("out", "cart.shop")
PROXY = SeriesKey("proxy")
MAIN = SeriesKey("route", "books.default", "default/books", "main")
RULE1 = SeriesKey("route", "books.default", "default/books", "1")
BOOKS_STAT = "cluster.outbound|books|default"
MAIN_STAT = "vhost.books.default.route.rt|default|books|0|main"


def histograms(*details: dict[str, Any]) -> dict[str, Any]:
    return {"histograms": {"supported_percentiles": [0, 50, 99, 100], "details": list(details)}}


def detail(name: str, *totals: tuple[float, float, int]) -> dict[str, Any]:
    return {"name": name,
            "totals": [{"lower_bound": lo, "width": w, "count": c} for lo, w, c in totals],
            "intervals": [{"lower_bound": 0, "width": 1, "count": 999}],
            "percentiles": [{"cumulative": 1, "interval": 1}]}


@pytest.mark.parametrize(("document", "values", "hists"), [
    ({}, {}, {}),
    ({"stats": [{"name": "a.b", "value": 3}, {"name": "c", "value": 0}]},
     {"a.b": 3, "c": 0}, {}),
    ({"stats": [{"name": "server.version", "value": "1.31.0"}, {"name": "x", "value": None},
                {"name": "y"}, {"name": "z", "value": 2}]},
     {"z": 2}, {}),
    ({"stats": [{"name": "c", "value": 1},
                histograms(detail("h1", (0, 1, 4), (10, 1.5, 2)), detail("h2"))]},
     {"c": 1}, {"h1": ((0.0, 1.0, 4), (10.0, 1.5, 2)), "h2": ()}),
    ({"stats": [{"histograms": "not an object"}]}, {}, {}),
], ids=["no stats", "counters and gauges", "text readouts and nulls skipped",
        "histogram totals only", "malformed histograms"])
def test_parse(document: dict[str, Any], values: dict[str, int],
               hists: dict[str, tuple[tuple[float, float, int], ...]]) -> None:
    stats = parse(document)
    assert dict(stats.values) == values
    assert dict(stats.histograms) == hists
    assert stats.count == len(values) + len(hists)


@pytest.mark.parametrize(("values", "expected"), [
    ({"http.inbound.downstream_rq_2xx": 7, "http.inbound.downstream_rq_5xx": 1,
      "http.inbound.downstream_cx_active": 2, "http.inbound.downstream_cx_total": 9,
      "http.inbound.downstream_cx_rx_bytes_total": 100,
      "http.inbound.downstream_cx_tx_bytes_total": 200},
     {IN: {"rq2": 7, "rq5": 1, "cx": 2, "cxt": 9, "rx": 100, "tx": 200}}),
    ({"http.inbound_plaintext.downstream_rq_4xx": 3, "http.inbound.downstream_rq_4xx": 1},
     {PLAIN: {"rq4": 3}, IN: {"rq4": 1}}),
    ({"cluster.inbound|8080.upstream_cx_connect_fail": 2,
      "inbound_ratelimit.http_local_rate_limit.rate_limited": 3,
      "listener.0.0.0.0_15006.ssl.connection_error": 1,
      "listener.0.0.0.0_15006.ssl.handshake": 10, "listener.0.0.0.0_15007.ssl.handshake": 5},
     {IN: {"app_cfail": 2, "limited": 3, "tls_err": 1, "tls_ok": 15}}),
    ({f"{BOOKS_STAT}.upstream_rq_2xx": 5, f"{BOOKS_STAT}.upstream_rq_5xx": 2,
      f"{BOOKS_STAT}.upstream_rq_503": 2, "cluster.outbound|cart|shop.upstream_rq_2xx": 1},
     {BOOKS: {"rq2": 5, "rq5": 2, "c503": 2}, CART: {"rq2": 1}}),
    ({f"{BOOKS_STAT}.upstream_rq_rx_reset": 2, f"{BOOKS_STAT}.upstream_rq_tx_reset": 3,
      f"{BOOKS_STAT}.upstream_rq_pending_overflow": 4, f"{BOOKS_STAT}.upstream_rq_retry": 6,
      f"{BOOKS_STAT}.upstream_rq_retry_limit_exceeded": 1},
     {BOOKS: {"reset": 5, "overflow": 4, "retry": 6, "retry_exhausted": 1}}),
    ({f"{BOOKS_STAT}.membership_healthy": 2, f"{BOOKS_STAT}.membership_total": 3,
      f"{BOOKS_STAT}.outlier_detection.ejections_active": 1,
      f"{BOOKS_STAT}.outlier_detection.ejections_enforced_total": 4,
      f"{BOOKS_STAT}.ssl.fail_verify_san": 1},
     {BOOKS: {"healthy": 2, "members": 3, "ejected": 1, "eject": 4, "san_fail": 1}}),
    ({f"{MAIN_STAT}.upstream_rq_2xx": 4, f"{MAIN_STAT}.upstream_rq_504": 1,
      f"{MAIN_STAT}.upstream_rq_retry": 1,
      "vhost.books.default.route.rt|default|books|1|.upstream_rq_3xx": 2},
     {MAIN: {"rq2": 4, "c504": 1, "retry": 1}, RULE1: {"rq3": 2}}),
    ({"vhost.books.default.route.rt|x.upstream_rq_2xx": 4,
      "cluster.inbound|8080.upstream_rq_200": 1,
      f"{BOOKS_STAT}.upstream_rq_retry_success": 2,
      "http.upstream_8000.downstream_rq_2xx": 3,
      "cluster.tulle-xds.upstream_rq_2xx": 9},
     {}),
    ({"server.memory_allocated": 1000, "server.uptime": 30,
      "control_plane.connected_state": 1},
     {PROXY: {"mem": 1000, "uptime": 30, "xds": 1}}),
    # 10 gRPC calls, 4 failed: 1 answered by Envoy (a translated 503, counted in both), 3 in
    # HTTP 200 with a failing grpc-status: those 3 move from 2xx to 5xx.
    ({f"{BOOKS_STAT}.upstream_rq_2xx": 9, f"{BOOKS_STAT}.upstream_rq_5xx": 1,
      f"{BOOKS_STAT}.grpc.total": 10, f"{BOOKS_STAT}.grpc.failure": 4,
      f"{BOOKS_STAT}.grpc.success": 6, f"{BOOKS_STAT}.grpc.14": 3, f"{BOOKS_STAT}.grpc.4": 1},
     {BOOKS: {"rq2": 6, "rq5": 4, "grpc": 10, "grpc_fail": 4, "g14": 3, "g4": 1}}),
    ({"http.inbound.downstream_rq_2xx": 5, "cluster.inbound|8080.grpc.total": 5,
      "cluster.inbound|8080.grpc.failure": 2, "cluster.inbound|8080.grpc.14": 2},
     {IN: {"rq2": 3, "rq5": 2, "grpc": 5, "grpc_fail": 2, "g14": 2}}),
    # HTTP beside gRPC in one series: which 5xx were gRPC is unknown; nothing moves.
    ({f"{BOOKS_STAT}.upstream_rq_2xx": 9, f"{BOOKS_STAT}.upstream_rq_5xx": 1,
      f"{BOOKS_STAT}.grpc.total": 4, f"{BOOKS_STAT}.grpc.failure": 2},
     {BOOKS: {"rq2": 9, "rq5": 1, "grpc": 4, "grpc_fail": 2}}),
    # Upgraded connections (their own inbound cluster): upstream of the sidecar is the
    # application, so the bytes it was sent are the bytes callers sent (rx).
    ({"http.inbound.downstream_cx_active": 1, "cluster.inbound|8080.upstream_cx_active": 3,
      "cluster.inbound|8080|upgrade.upstream_cx_total": 2,
      "cluster.inbound|8080|upgrade.upstream_cx_active": 1,
      "cluster.inbound|8080|upgrade.upstream_cx_tx_bytes_total": 10,
      "cluster.inbound|8080|upgrade.upstream_cx_rx_bytes_total": 30,
      "cluster.inbound|8080|upgrade.upstream_cx_connect_fail": 1},
     {IN: {"cx": 1, "upg": 2, "upg_cx": 1, "upg_rx": 10, "upg_tx": 30}}),
    # A tcp service's inbound side: a TCP proxy, no HTTP manager; its open connections are
    # those to the application.
    ({"tcp.inbound.downstream_cx_total": 4, "tcp.inbound.downstream_cx_rx_bytes_total": 12,
      "tcp.inbound.downstream_cx_tx_bytes_total": 40, "tcp.inbound.downstream_cx_no_route": 1,
      "tcp.inbound_plaintext.downstream_cx_total": 1,
      "cluster.inbound|8080.upstream_cx_active": 2,
      "cluster.inbound|8080.upstream_cx_connect_fail": 1},
     {IN: {"cxt": 4, "rx": 12, "tx": 40, "cx": 2, "app_cfail": 1}, PLAIN: {"cxt": 1}}),
    # Egress: an ExternalService's port (dots back from underscores), and the passthrough.
    ({"cluster.external|api_example_com|443.upstream_rq_2xx": 3,
      "cluster.external|api_example_com|443.upstream_cx_connect_fail": 1,
      "cluster.external|10_0_0_7|5432.upstream_cx_total": 2,
      "cluster.passthrough.upstream_rq_5xx": 1},
     {SeriesKey("egress", "api.example.com:443"): {"rq2": 3, "cfail": 1},
      SeriesKey("egress", "10.0.0.7:5432"): {"cxt": 2},
      SeriesKey("egress", "*"): {"rq5": 1}}),
    # A route rule's rate limit in dry run: what it would refuse, on the rule's series.
    ({"rtdry|books_default|default|books|1|.http_local_rate_limit.rate_limited": 3,
      "rtdry|books_default|default|books|2|slow.http_local_rate_limit.rate_limited": 1,
      "rtdry|x.http_local_rate_limit.rate_limited": 9},
     {RULE1: {"would_limit": 3},
      SeriesKey("route", "books.default", "default/books", "slow"): {"would_limit": 1}}),
    # A caller's egress RBAC filter, per policy, enforced and in dry run.
    ({"http.outbound.rbac.egress_policy.no-ALLOW-rule-matched:default/a.denied": 2,
      "http.outbound.rbac.egress_dry_run_policy.AuthorizationPolicy:default/d:x."
      "shadow_denied": 1},
     {SeriesKey("egress_authz", rule="no-ALLOW-rule-matched:default/a"): {"denied": 2},
      SeriesKey("egress_authz", rule="AuthorizationPolicy:default/d:x"): {"would_deny": 1}}),
], ids=["inbound", "plaintext inbound", "inbound from cluster, limiter, listeners",
        "outbound per destination and code", "outbound resets summed", "outbound gauges",
        "route per rule", "ignored stats make no series", "proxy", "grpc failures are 5xx",
        "grpc failures inbound", "grpc beside http", "upgraded connections", "tcp inbound",
        "egress", "route rule's dry-run limit", "egress authorization"])
def test_extract_values(values: dict[str, int], expected: Series) -> None:
    # The proxy series always counts the stats Envoy keeps.
    proxy = {**expected.get(PROXY, {}), "stats": len(values)}
    assert extract(EnvoyStats(values)) == {**expected, PROXY: proxy}


# Bins (lower bound, width, count) are folded by their middle: a middle on a bound belongs to
# the bucket it bounds. latsum is the sum of middles, rounded.
@pytest.mark.parametrize(("bins", "expected"), [
    ([(0, 1, 4)], {"lat0": 4, "latsum": 2}),
    ([(0.5, 1, 3)], {"lat0": 3, "latsum": 3}),
    ([(7, 1, 2)], {"lat4": 2, "latsum": 15}),
    ([(10, 1, 2), (12, 2, 3)], {"lat6": 5, "latsum": 60}),
    ([(0, 1, 2), (140, 10, 1), (59000, 1000, 1)],
     {"lat0": 2, "lat12": 1, "lat24": 1, "latsum": 59646}),
    ([(60000, 10000, 1)], {"lat25": 1, "latsum": 65000}),
], ids=["first bucket", "middle on a bound", "on 7.5", "bins merged",
        "spread", "slower than every bound"])
def test_extract_latency(bins: list[tuple[float, float, int]], expected: dict[str, int]) -> None:
    stats = EnvoyStats({}, {"http.inbound.downstream_rq_time": tuple(bins)})
    assert extract(stats) == {IN: expected, PROXY: {"stats": 1}}


@pytest.mark.parametrize(("bins", "expected"), [
    ([(40, 1, 1)], {"upgd0": 1, "upgdsum": 40}),
    ([(2500, 100, 1), (7000000, 100000, 2)], {"upgd2": 1, "upgd6": 2, "upgdsum": 14102550}),
], ids=["under 100 ms", "seconds and hours"])
def test_extract_upgrade_durations(bins: list[tuple[float, float, int]],
                                   expected: dict[str, int]) -> None:
    stats = EnvoyStats({}, {"cluster.inbound|8080|upgrade.upstream_cx_length_ms": tuple(bins),
                            "cluster.inbound|8080.upstream_cx_length_ms": ((1, 1, 1),)})
    assert extract(stats) == {IN: expected, PROXY: {"stats": 2}}


@pytest.mark.parametrize(("name", "key"), [
    ("http.inbound.downstream_rq_time", IN),
    ("http.inbound_plaintext.downstream_rq_time", PLAIN),
    (f"{BOOKS_STAT}.upstream_rq_time", BOOKS),
    (f"{MAIN_STAT}.upstream_rq_time", MAIN),
    (f"{BOOKS_STAT}.upstream_cx_length_ms", None),
    ("cluster.tulle-xds.upstream_rq_time", None),
], ids=["inbound", "plaintext", "outbound", "route", "not a latency", "not a series"])
def test_extract_histogram_series(name: str, key: SeriesKey | None) -> None:
    series = extract(EnvoyStats({"server.uptime": 5}, {name: ((2, 1, 3),)}))
    expected: Series = {PROXY: {"uptime": 5, "stats": 2}}
    if key is not None:
        expected[key] = {"lat2": 3, "latsum": 8}  # middle 2.5: 2 < 2.5 <= 3
    assert series == expected


def test_extract_counters_and_latency_share_a_series() -> None:
    stats = EnvoyStats({f"{BOOKS_STAT}.upstream_rq_2xx": 3},
                       {f"{BOOKS_STAT}.upstream_rq_time": ((4, 2, 3),)})
    # Middle 5: on the bound of lat3 (3-5 ms).
    assert extract(stats)[BOOKS] == {"rq2": 3, "lat3": 3, "latsum": 15}


@pytest.mark.parametrize(("before", "now", "expected"), [
    ({}, {BOOKS: {"rq2": 5, "rq5": 0, "healthy": 0}}, {BOOKS: {"rq2": 5, "healthy": 0}}),
    ({BOOKS: {"rq2": 5, "rx": 100}}, {BOOKS: {"rq2": 8, "rx": 100}}, {BOOKS: {"rq2": 3}}),
    ({BOOKS: {"rq2": 5, "cx": 2}}, {BOOKS: {"rq2": 5, "cx": 2}}, {}),
    ({BOOKS: {"rq2": 100, "rq5": 4}}, {BOOKS: {"rq2": 7, "rq5": 6}},
     {BOOKS: {"rq2": 7, "rq5": 2}}),
    ({BOOKS: {"cx": 5, "healthy": 3, "members": 3}},
     {BOOKS: {"cx": 2, "healthy": 3, "members": 4}}, {BOOKS: {"cx": 2, "members": 4}}),
    ({IN: {"rq2": 1}}, {IN: {"rq2": 1}, CART: {"rq4": 2}}, {CART: {"rq4": 2}}),
    ({IN: {"rq2": 1}, CART: {"rq4": 2}}, {IN: {"rq2": 3}}, {IN: {"rq2": 2}}),
    ({PROXY: {"mem": 10, "uptime": 5, "stats": 40, "xds": 1}},
     {PROXY: {"mem": 12, "uptime": 10, "stats": 40, "xds": 1}},
     {PROXY: {"mem": 12, "uptime": 10}}),
    ({IN: {"lat0": 2, "lat3": 1, "latsum": 9}}, {IN: {"lat0": 2, "lat3": 4, "latsum": 21}},
     {IN: {"lat3": 3, "latsum": 12}}),
], ids=["first reading", "counters differenced", "nothing new: series omitted",
        "counter went down: Envoy restarted", "gauges only when changed", "new series",
        "series gone", "proxy gauges", "latency bins are counters"])
def test_delta(before: Series, now: Series, expected: Series) -> None:
    assert delta(before, now) == expected
