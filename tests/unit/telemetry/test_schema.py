"""The telemetry schema: series keys on the wire, route stat prefixes, and the stats matcher
(the cardinality guard) checked with Python's `re` and with RE2, the engine Envoy uses."""

from __future__ import annotations

import re

import pytest
import re2

from tulle.telemetry.schema import (
    LATENCY_BOUNDS_MS,
    LATENCY_FIELDS,
    STATS_INCLUSION,
    SeriesKey,
    parse_route_stat_prefix,
    route_stat_prefix,
)

BOOKS = "cluster.outbound|books|default"


@pytest.mark.parametrize(("key", "wire"), [
    (SeriesKey("in"), {"k": "in"}),
    (SeriesKey("out", "books.default"), {"k": "out", "dst": "books.default"}),
    (SeriesKey("route", "books.default", "default/books", "main"),
     {"k": "route", "dst": "books.default", "route": "default/books", "rule": "main"}),
    (SeriesKey("proxy"), {"k": "proxy"}),
], ids=["inbound", "outbound", "route", "proxy"])
def test_series_key_wire(key: SeriesKey, wire: dict[str, str]) -> None:
    assert key.to_wire() == wire
    assert SeriesKey.from_wire(dict(wire)) == key


def test_series_key_from_wire_needs_a_kind() -> None:
    # The control plane answers a malformed report with 400 on KeyError.
    with pytest.raises(KeyError):
        SeriesKey.from_wire({"dst": "books.default"})


def test_series_keys_sort_by_kind_then_destination() -> None:
    keys = [SeriesKey("route", "a.x", "x/r", "0"), SeriesKey("out", "b.x"),
            SeriesKey("proxy"), SeriesKey("out", "a.x"), SeriesKey("in")]
    assert sorted(keys) == [SeriesKey("in"), SeriesKey("out", "a.x"), SeriesKey("out", "b.x"),
                            SeriesKey("proxy"), SeriesKey("route", "a.x", "x/r", "0")]


@pytest.mark.parametrize(("namespace", "route", "index", "rule", "prefix", "parsed"), [
    ("default", "books", 0, "main", "rt|default|books|0|main", ("default/books", "main")),
    ("default", "books", 2, None, "rt|default|books|2|", ("default/books", "2")),
    ("default", "books", 1, "", "rt|default|books|1|", ("default/books", "1")),
    ("shop", "cart", 3, "v1.2", "rt|shop|cart|3|v1_2", ("shop/cart", "v1_2")),
    ("shop", "cart", 4, "a|b.c", "rt|shop|cart|4|a_b_c", ("shop/cart", "a_b_c")),
], ids=["named", "unnamed uses index", "empty name uses index", "dots", "pipes and dots"])
def test_route_stat_prefix(namespace: str, route: str, index: int, rule: str | None,
                           prefix: str, parsed: tuple[str, str]) -> None:
    assert route_stat_prefix(namespace, route, index, rule) == prefix
    assert "." not in prefix  # Envoy splits stat names on dots
    assert parse_route_stat_prefix(prefix) == parsed


@pytest.mark.parametrize("prefix", [
    "",
    "rt|default|books|0",
    "rt|default|books|0|main|extra",
    "rx|default|books|0|main",
], ids=["empty", "four parts", "six parts", "other tag"])
def test_not_a_route_stat_prefix(prefix: str) -> None:
    assert parse_route_stat_prefix(prefix) is None


def test_latency_buckets() -> None:
    assert list(LATENCY_BOUNDS_MS) == sorted(set(LATENCY_BOUNDS_MS))
    assert len(LATENCY_FIELDS) == len(LATENCY_BOUNDS_MS) + 1 == 26
    assert (LATENCY_FIELDS[0], LATENCY_FIELDS[-1]) == ("lat0", "lat25")


# -- the stats matcher -------------------------------------------------------------------------

# Envoy's inclusion list: a stat is kept when any pattern (safe_regex: a full match) matches.
PYTHON = [re.compile(p) for p in STATS_INCLUSION]
RE2 = [re2.compile(p) for p in STATS_INCLUSION]


def kept(name: str) -> tuple[bool, bool]:
    """(kept by Python's re, kept by RE2)."""
    return (any(p.fullmatch(name) for p in PYTHON),
            any(p.fullmatch(name) is not None for p in RE2))


@pytest.mark.parametrize("name", [
    f"{BOOKS}.upstream_rq_2xx",
    f"{BOOKS}.upstream_rq_503",
    f"{BOOKS}.upstream_rq_time",
    f"{BOOKS}.outlier_detection.ejections_active",
    f"{BOOKS}.ssl.fail_verify_san",
    "cluster.inbound|8080.upstream_rq_200",
    "http.inbound.downstream_rq_5xx",
    "http.inbound_plaintext.downstream_rq_time",
    "vhost.books.default.route.rt|default|books|0|main.upstream_rq_2xx",
    f"vhost.books.default.route.{route_stat_prefix('shop', 'cart', 2, 'v1.2')}.upstream_rq_504",
    "inbound_ratelimit.http_local_rate_limit.rate_limited",
    "listener.0.0.0.0_15006.ssl.handshake",
    "server.memory_allocated",
    "control_plane.connected_state",
    "sds.tulle-identity.update_rejected",
    f"{BOOKS}.grpc.14",  # failed gRPC calls by status: 1 to 16
    "cluster.inbound|8080.grpc.16",
    "cluster.external|api_example_com|443.upstream_rq_503",
    "cluster.external|api_example_com|443.ssl.fail_verify_san",
    "cluster.passthrough.upstream_cx_connect_fail",
])
def test_stat_kept(name: str) -> None:
    assert kept(name) == (True, True)


@pytest.mark.parametrize("name", [
    f"{BOOKS}.upstream_cx_http1_total",
    f"{BOOKS}.lb_healthy_panic",
    f"{BOOKS}.circuit_breakers.default.cx_open",
    f"{BOOKS}.upstream_rq_2xx.extra",
    "http.inbound.downstream_cx_http1_active",
    "vhost.books.default.vcluster.other.upstream_rq_2xx",
    "runtime.load_success",
    "prefix.server.memory_allocated",
    f"{BOOKS}.grpc.0",  # successes: grpc.success says how many
    f"{BOOKS}.grpc.17",
    f"{BOOKS}.grpc.tulle.test.Greeter.Hello.14",  # per method: unbounded
])
def test_stat_dropped(name: str) -> None:
    assert kept(name) == (False, False)


@pytest.mark.parametrize("name", [
    "listener.admin.downstream_cx_total",
    "listener.127.0.0.1_5000.worker_0.downstream_cx_total",
], ids=["admin listener", "per-worker listener"])
def test_listener_stats_dropped(name: str) -> None:
    assert kept(name) == (False, False)


@pytest.mark.parametrize("name", [
    "http.outbound.rds.outbound|books.default.update_success",
    "http.upstream_8000.rds.upstream|books.default.update_rejected",
])
def test_route_table_stats_dropped(name: str) -> None:
    # One pair per route table, and every service has one in every sidecar: the control
    # plane sees ACKs and NACKs on the xDS stream instead.
    assert kept(name) == (False, False)
