"""Golden metrics from a window: latency quantiles within fixed buckets, success rates, and the
rows of `tulle stat`, `tulle routes` and `tulle edges`."""

from __future__ import annotations

from typing import Any

import pytest

from tulle.telemetry.query import (
    NodeInfo,
    connected,
    edge_rows,
    errors_of,
    golden,
    quantile,
    route_rows,
    seen_by,
    service_rows,
    workload_rows,
)
from tulle.telemetry.schema import SeriesKey
from tulle.telemetry.windows import Window

IN = SeriesKey("in")
PLAIN = SeriesKey("in_plain")
PROXY = SeriesKey("proxy")
BOOKS = SeriesKey("out", "books.default")
CART = SeriesKey("out", "cart.shop")
MAIN = SeriesKey("route", "books.default", "default/books", "main")
RULE1 = SeriesKey("route", "books.default", "default/books", "1")
BOOKS_ID = "spiffe://td/ns/default/sa/books"
CART_ID = "spiffe://td/ns/shop/sa/cart"
NODES = {
    "books-1.default": NodeInfo("books-1", "default", "books", BOOKS_ID),
    "cart-1.shop": NodeInfo("cart-1", "shop", "cart", CART_ID),
    "books-2.default": NodeInfo("books-2", "default", "books", ""),
}
NO_LATENCY = {"p50": None, "p95": None, "p99": None}
NO_UPGRADES = {"opened": 0, "active": 0, "closed": 0, "bytesIn": 0, "bytesOut": 0,
               "durationSeconds": {"mean": None, **NO_LATENCY}}


@pytest.mark.parametrize(("values", "q", "expected"), [
    ({}, 0.5, None),
    ({"rq2": 10, "latsum": 50}, 0.5, None),
    ({"lat0": 10}, 0.5, 0.5),
    ({"lat3": 4}, 0.25, 3.5),
    ({"lat0": 50, "lat1": 50}, 0.5, 1.0),
    ({"lat0": 50, "lat1": 50}, 0.95, 1.9),
    ({"lat0": 1, "lat2": 1}, 0.75, 2.5),
    ({"lat0": 3}, 1 / 3, 0.333),
    ({"lat25": 10}, 0.5, 60000),
    ({"lat0": 1, "lat25": 99}, 0.5, 60000),
], ids=["empty", "no latency fields", "one bucket", "3-5 ms bucket",
        "edge of a bucket", "spanning buckets", "empty bucket skipped", "rounded",
        "overflow only", "overflow: the last bound"])
def test_quantile(values: dict[str, int], q: float, expected: float | None) -> None:
    assert quantile(values, q) == expected


@pytest.mark.parametrize(("values", "seconds", "expected"), [
    ({}, 10, {"requests": 0, "rps": 0.0, "successRate": None, "codes": {},
              "latencyMs": NO_LATENCY, "bytesInPerSecond": 0.0, "bytesOutPerSecond": 0.0}),
    ({"rq2": 90, "rq4": 5, "rq5": 5, "c503": 5}, 10,
     {"requests": 100, "rps": 10.0, "successRate": 0.95,
      "codes": {"2xx": 90, "4xx": 5, "5xx": 5}, "latencyMs": NO_LATENCY,
      "bytesInPerSecond": 0.0, "bytesOutPerSecond": 0.0}),
    ({"rq1": 1, "rq3": 2, "rx": 1000, "tx": 55}, 60,
     {"requests": 3, "rps": 0.05, "successRate": 1.0, "codes": {"1xx": 1, "3xx": 2},
      "latencyMs": NO_LATENCY, "bytesInPerSecond": 16.7, "bytesOutPerSecond": 0.9}),
    ({"rq2": 2, "rq5": 1, "lat0": 50, "lat1": 50}, 3,
     {"requests": 3, "rps": 1.0, "successRate": 0.6667, "codes": {"2xx": 2, "5xx": 1},
      "latencyMs": {"p50": 1.0, "p95": 1.9, "p99": 1.98}, "bytesInPerSecond": 0.0,
      "bytesOutPerSecond": 0.0}),
    ({"rq5": 7, "c503": 7}, 7,
     {"requests": 7, "rps": 1.0, "successRate": 0.0, "codes": {"5xx": 7},
      "latencyMs": NO_LATENCY, "bytesInPerSecond": 0.0, "bytesOutPerSecond": 0.0}),
], ids=["no traffic", "4xx are not failures", "1xx 3xx and bytes", "rounded with latency",
        "all failed"])
def test_golden(values: dict[str, int], seconds: float, expected: dict[str, Any]) -> None:
    assert golden(values, seconds) == expected


def test_rps_rounding() -> None:
    assert golden({"rq2": 1}, 3)["rps"] == 0.333


# One window for the rows: 10 s.
COUNTERS = {
    ("books-1.default", IN): {"rq2": 18, "rq5": 2, "lat0": 20, "rx": 1000, "tx": 2000},
    ("books-1.default", PLAIN): {"rq2": 10, "rq4": 10, "lat1": 20},
    ("books-1.default", CART): {"rq5": 100},
    ("cart-1.shop", IN): {"rq2": 5},
}
GAUGES = {
    ("books-1.default", IN): {"cx": 2},
    ("books-1.default", PLAIN): {"cx": 1},
    ("books-1.default", CART): {"cx": 7},
    ("books-1.default", PROXY): {"mem": 1024, "stats": 40, "uptime": 99},
}
WINDOW = Window(10.0, 10.0, COUNTERS, GAUGES, {"books-1.default": 2.36})


def test_workload_rows() -> None:
    rows = workload_rows(WINDOW, NODES)
    assert [(r["namespace"], r["name"], r["requests"]) for r in rows] == [
        ("default", "books-1", 40), ("default", "books-2", 0), ("shop", "cart-1", 5)]
    assert rows[0] == {
        "namespace": "default", "name": "books-1", "service": "books", "identity": BOOKS_ID,
        "requests": 40, "rps": 4.0, "successRate": 0.95,
        "codes": {"2xx": 28, "4xx": 10, "5xx": 2},
        "latencyMs": {"p50": 1.0, "p95": 1.9, "p99": 1.98},
        "bytesInPerSecond": 100.0, "bytesOutPerSecond": 200.0, "connections": 3,
        "upgrades": NO_UPGRADES,
        "proxy": {"memoryBytes": 1024, "stats": 40, "lastReportSeconds": 2.4,
                  "serverState": None, "listenersStopped": 0, "restarts": 0}}
    assert rows[1] == {
        "namespace": "default", "name": "books-2", "service": "books", "identity": "",
        "requests": 0, "rps": 0.0, "successRate": None, "codes": {}, "latencyMs": NO_LATENCY,
        "bytesInPerSecond": 0.0, "bytesOutPerSecond": 0.0, "connections": 0,
        "upgrades": NO_UPGRADES,
        "proxy": {"memoryBytes": None, "stats": None, "lastReportSeconds": None,
                  "serverState": None, "listenersStopped": 0, "restarts": 0}}


def test_service_rows() -> None:
    rows = service_rows(WINDOW, NODES, [("shop", "cart"), ("default", "books"),
                                        ("default", "ghost")])
    # cart's instance saw 5 requests; its caller books-1 got 100 failures calling it (they
    # never reached the instance): the callers' view counts, and says so.
    assert [(r["namespace"], r["name"], r["instances"], r["requests"], r["successRate"],
             r["connections"], r["seenBy"], r["errors"]) for r in rows] == [
        ("default", "books", 2, 40, 0.95, 3, "instances", {}),
        ("default", "ghost", 0, 0, None, 0, "instances", {}),
        ("shop", "cart", 1, 100, 0.0, 0, "callers", {"5xx": 100})]


def test_upgraded_connections_of_a_service() -> None:
    # Two instances: 3 WebSocket sessions opened, 2 closed (one of 0.5 s, one of 20 s), one
    # still open; their bytes each way.
    counters = {("books-1.default", IN): {"rq1": 2, "upg": 2, "upg_rx": 100, "upg_tx": 300,
                                          "upgd1": 1, "upgd3": 1, "upgdsum": 20500},
                ("books-2.default", IN): {"rq1": 1, "upg": 1, "upg_rx": 5, "upg_tx": 7}}
    gauges = {("books-2.default", IN): {"upg_cx": 1}}
    window = Window(10.0, 10.0, counters, gauges, {})
    [row] = service_rows(window, NODES, [("default", "books")])
    assert row["upgrades"] == {
        "opened": 3, "active": 1, "closed": 2, "bytesIn": 105, "bytesOut": 307,
        "durationSeconds": {"mean": 10.25, "p50": 1.0, "p95": 55.0, "p99": 59.0}}


def test_connection_figures_of_a_tcp_service() -> None:
    # cart is a tcp service: its instance counts connections and bytes, no requests; one
    # caller failed to reach its sidecar twice, and the sidecar its application once.
    counters = {("cart-1.shop", IN): {"cxt": 4, "rx": 12, "tx": 40, "app_cfail": 1},
                ("books-1.default", CART): {"cxt": 6, "cfail": 2, "rx": 40, "tx": 12}}
    gauges = {("cart-1.shop", IN): {"cx": 1}}
    window = Window(10.0, 10.0, counters, gauges, {})
    [row] = service_rows(window, NODES, [("shop", "cart")])
    assert (row["connections"], row["l4"]) == (
        1, {"opened": 4, "bytesIn": 12, "bytesOut": 40, "connectFailures": 3})


def test_a_services_callers_include_the_callers_of_its_subsets() -> None:
    # A canary route sends books' callers to books-v2, whose instance is not ready: their
    # 503s are books' failures too.
    counters = {("books-1.default", IN): {"rq2": 8},
                ("cart-1.shop", BOOKS): {"rq2": 8},
                ("cart-1.shop", SeriesKey("out", "books-v2.default")): {"rq5": 2,
                                                                        "no_healthy": 2}}
    window = Window(10.0, 10.0, counters, {}, {})
    subsets = {("default", "books"): ["books-v2.default"]}
    [row] = service_rows(window, NODES, [("default", "books")], subsets)
    assert (row["requests"], row["successRate"], row["seenBy"], row["errors"]) == (
        10, 0.8, "callers", {"5xx": 2, "no_healthy": 2})
    [alone] = service_rows(window, NODES, [("default", "books")])
    assert (alone["requests"], alone["seenBy"]) == (8, "instances")


@pytest.mark.parametrize(("inbound", "callers", "expected"), [
    ({}, {}, "instances"),
    ({"rq2": 10}, {}, "instances"),  # callers outside the mesh only
    ({}, {"rq5": 20, "no_healthy": 20}, "callers"),  # no instance ever answered
    ({"rq2": 10}, {"rq2": 10}, "instances"),  # the same requests seen from both ends
    ({"rq2": 10}, {"rq2": 8, "rq5": 2}, "callers"),  # as many, two timed out at the caller
    ({"rq2": 10}, {"rq2": 10, "rq5": 5}, "callers"),  # five never reached an instance
    ({"rq2": 30}, {"rq2": 10, "rq5": 5}, "instances"),  # most callers are outside the mesh
], ids=["nothing", "inbound only", "callers only", "equal", "same count, more failures",
        "more requests", "fewer requests"])
def test_whose_view_counts(inbound: dict[str, int], callers: dict[str, int],
                           expected: str) -> None:
    assert seen_by(inbound, callers) == expected


def test_errors_start_with_the_failures_then_their_causes() -> None:
    assert errors_of({"rq2": 5}) == {}
    assert list(errors_of({"rq5": 3, "retry": 1, "no_healthy": 3, "cfail": 2}).items()) == [
        ("5xx", 3), ("no_healthy", 3), ("cfail", 2), ("retry", 1)]


ROUTE_COUNTERS = {
    ("books-1.default", BOOKS): {"rq2": 6, "rq5": 2, "retry": 3, "timeout": 1},
    ("cart-1.shop", BOOKS): {"rq2": 2},
    ("cart-1.shop", CART): {"rq2": 50},
    ("books-1.default", MAIN): {"rq2": 4, "retry": 1},
    ("cart-1.shop", MAIN): {"rq2": 1, "rq5": 1, "timeout": 1},
    ("cart-1.shop", RULE1): {"rq4": 2},
    ("cart-1.shop", SeriesKey("route", "cart.shop", "default/books", "main")): {"rq2": 100},
    ("cart-1.shop", SeriesKey("route", "books.default", "default/other", "main")): {"rq2": 9},
}
ROUTES_WINDOW = Window(10.0, 10.0, ROUTE_COUNTERS, {}, {})


@pytest.mark.parametrize(("rules", "expected"), [
    ([], [("(default)", "", "every request", 10, 1.0, 0.8, 3, 1)]),
    ([("default/books", "main", "PathPrefix /"), ("default/books", "1", "Exact /x"),
      ("default/books", "idle", "Exact /idle")],
     [("default/books", "main", "PathPrefix /", 6, 0.6, 0.8333, 1, 1),
      ("default/books", "1", "Exact /x", 2, 0.2, 1.0, 0, 0),
      ("default/books", "idle", "Exact /idle", 0, 0.0, None, 0, 0)]),
], ids=["default route from outbound series", "per rule in match order"])
def test_route_rows(rules: list[tuple[str, str, str]],
                    expected: list[tuple[str, str, str, int, float, float | None, int, int]],
                    ) -> None:
    rows = route_rows(ROUTES_WINDOW, "books.default", iter(rules))
    assert [(r["route"], r["rule"], r["matches"], r["requests"], r["rps"], r["successRate"],
             r["retries"], r["timeouts"]) for r in rows] == expected


EDGE_COUNTERS = {
    ("books-1.default", CART): {"rq2": 8, "rq5": 2, "overflow": 1, "retry": 0, "timeout": 3},
    ("books-2.default", CART): {"rq2": 1},
    ("ghost-1.other", BOOKS): {"rq2": 1},
    ("books-1.default", PLAIN): {"rq2": 4},
    ("books-1.default", IN): {"rq2": 100},
    ("cart-1.shop", BOOKS): {"cxt": 2, "rx": 10},
    ("cart-1.shop", SeriesKey("out", "pay.shop")): {"rx": 10, "retry": 1},
}
IDENTITIES = {"cart.shop": (CART_ID,), "books.default": (BOOKS_ID,)}
OUTSIDE = {"workload": None, "namespace": None, "service": None, "identity": None,
           "outsideMesh": True}
BOOKS_1 = {"workload": "books-1", "namespace": "default", "service": "books",
           "identity": BOOKS_ID}
BOOKS_2 = {"workload": "books-2", "namespace": "default", "service": "books",
           "identity": None}
CART_1 = {"workload": "cart-1", "namespace": "shop", "service": "cart", "identity": CART_ID}
GHOST = {"workload": "ghost-1", "namespace": "other", "service": None, "identity": None}
TO_CART = {"service": "cart", "namespace": "shop", "identities": [CART_ID]}
TO_BOOKS = {"service": "books", "namespace": "default", "identities": [BOOKS_ID]}
TO_BOOKS_1 = {"service": "books", "namespace": "default", "workload": "books-1",
              "identities": [BOOKS_ID]}


@pytest.mark.parametrize("mtls", [True, False], ids=["mtls", "no mtls"])
def test_edge_rows(mtls: bool) -> None:
    rows = edge_rows(Window(10.0, 10.0, EDGE_COUNTERS, {}, {}), NODES, IDENTITIES, mtls)
    assert [(r["source"], r["destination"], r["mtls"], r["requests"], r["errors"])
            for r in rows] == [
        (OUTSIDE, TO_BOOKS_1, False, 4, {}),
        (BOOKS_1, TO_CART, mtls, 10, {"5xx": 2, "overflow": 1, "timeout": 3}),
        (BOOKS_2, TO_CART, mtls, 1, {}),
        (CART_1, TO_BOOKS, mtls, 0, {}),
        (GHOST, TO_BOOKS, mtls, 1, {}),
    ]
    assert (rows[1]["successRate"], rows[1]["rps"]) == (0.8, 1.0)
    assert all(r["connected"] for r in rows)


@pytest.mark.parametrize(("values", "expected"), [
    ({}, True),
    ({"cxt": 2}, True),
    ({"rq2": 3}, True),  # over a connection opened before the window
    ({"rq2": 3, "rq5": 1}, True),
    ({"rq5": 4, "no_healthy": 4}, False),  # no endpoint: nothing was ever connected
    ({"rq5": 4, "cfail": 4, "cxt": 4}, True),  # connections attempted (UF): a hop existed
])
def test_connected(values: dict[str, int], expected: bool) -> None:
    assert connected(values) is expected


def test_edge_to_a_service_without_identities() -> None:
    window = Window(10.0, 10.0, {("cart-1.shop", BOOKS): {"rq2": 1}}, {}, {})
    [row] = edge_rows(window, NODES, {}, True)
    assert row["destination"] == {"service": "books", "namespace": "default", "identities": []}


def test_egress_edges_name_the_host_and_port_or_the_passthrough() -> None:
    window = Window(10.0, 10.0, {
        ("cart-1.shop", SeriesKey("egress", "api.example.com:443")): {"rq2": 4, "rq5": 1,
                                                                      "cfail": 1},
        ("cart-1.shop", SeriesKey("egress", "*")): {"rq2": 2}}, {}, {})
    rows = edge_rows(window, NODES, {}, True)
    assert [(r["source"], r["destination"], r["mtls"], r["requests"], r["errors"])
            for r in rows] == [
        (CART_1, {"external": True, "host": None, "port": None, "passthrough": True,
                  "identities": []}, False, 2, {}),
        (CART_1, {"external": True, "host": "api.example.com", "port": 443,
                  "passthrough": False, "identities": []}, False, 5,
         {"5xx": 1, "cfail": 1})]


def test_a_route_trial_sums_callers_by_rule_and_keeps_what_went_unevaluated() -> None:
    from tulle.telemetry.query import route_trial
    from tulle.telemetry.schema import TRIAL, TRIAL_SKIPPED

    split = SeriesKey(TRIAL, "books.default", "default/r", "split")
    counters = {
        ("web-1.default", split): {"rq": 3, "moved": 1, "to:books.default": 2,
                                   "to:books-v2.default": 1},
        ("web-2.default", split): {"rq": 1, "moved": 1, "to:books-v2.default": 1},
        ("web-2.default", SeriesKey(TRIAL, "books.default", "", "")): {"rq": 2, "moved": 2,
                                                                      "to:404": 2},
        ("web-2.default", SeriesKey(TRIAL, "books.default", "", TRIAL_SKIPPED)): {"rq": 5},
        ("web-1.default", SeriesKey(TRIAL, "cart.default", "", "")): {"rq": 9},
    }
    window = Window(10.0, 10.0, counters, {}, {})
    assert route_trial(window, "books.default") == {
        "requests": 6, "moved": 4, "notEvaluated": 5, "rules": [
            {"route": "", "rule": "", "requests": 2, "moved": 2, "to": {"404": 2}},
            {"route": "default/r", "rule": "split", "requests": 4, "moved": 2,
             "to": {"books-v2.default": 2, "books.default": 2}}]}
    assert route_trial(window, "other.default") is None


def test_egress_denials_by_host_and_policy_with_their_callers() -> None:
    from tulle.telemetry.query import egress_authorization

    allow = "no-ALLOW-rule-matched:default/only-web"
    counters = {
        ("ops-1.ops", SeriesKey("egress_authz", rule=allow)): {"denied": 3},
        ("ops-2.ops", SeriesKey("egress_authz", rule=allow)): {"denied": 1, "would_deny": 2},
        ("web-1.default", SeriesKey("egress_authz", rule="AuthorizationPolicy:x/y:z")):
            {"denied": 0},
    }
    window = Window(10.0, 10.0, counters, {}, {})
    assert egress_authorization(window, {allow: "api.example.com"}) == [
        {"host": "api.example.com", "policy": allow, "denied": 4, "wouldDeny": 2,
         "callers": ["ops-1.ops", "ops-2.ops"]}]
