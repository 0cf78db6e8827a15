"""Traffic evaluators over telemetry rows: failing edges and their kind, called services
without endpoints, proxies far above normal, silent reporters."""

from __future__ import annotations

from typing import Any

import pytest

from tulle.checks import traffic
from tulle.checks.dataplane import envoy_version, evaluate_versions
from tulle.checks.runner import Status

NODES_OF = {"books.default": ["books-1.default", "books-2.default"]}


def edge(values: dict[str, int], source: str = "web-1.default",
         destination: str = "books.default", gauges: dict[str, int] | None = None
         ) -> dict[str, Any]:
    return {"source": source, "destination": destination, "values": values,
            "gauges": gauges or {}}


@pytest.mark.parametrize(("values", "inbound", "kinds"), [
    # The books application is down: its sidecar cannot connect, web sees 503s.
    ({"rq2": 10, "rq5": 10, "c503": 10}, {"books-1.default": {"app_cfail": 10}},
     ["connect failures to the application", "503 service unavailable", "5xx responses"]),
    ({"rq5": 20, "c503": 20, "cfail": 20}, {},
     ["connect failures", "503 service unavailable", "5xx responses"]),
    ({"rq2": 5, "rq5": 15, "overflow": 15}, {},
     ["circuit-breaker overflows", "5xx responses"]),
    ({"rq5": 8, "c504": 8, "timeout": 8}, {}, ["timeouts", "5xx responses"]),
    ({"rq2": 10, "rq4": 10, "c429": 10}, {"books-2.default": {"limited": 10}},
     ["rate-limited (429)", "rate-limited (429) by the destination"]),
    ({"rq5": 10, "tls_err": 4, "san_fail": 4}, {},
     ["TLS errors", "TLS errors (wrong peer identity)", "5xx responses"]),
    ({"rq2": 90, "rq5": 10, "eject": 1}, {}, ["outlier ejections", "5xx responses"]),
])
def test_failing_edges_name_the_kind(values: dict[str, int],
                                     inbound: dict[str, dict[str, int]],
                                     kinds: list[str]) -> None:
    rows = [{"node": node, "values": v} for node, v in inbound.items()]
    [failing] = traffic.failing_edges([edge(values)], rows, NODES_OF)
    assert list(failing.kinds) == kinds
    assert failing.to_dict()["service"] == "books"
    assert "tulle diagnose books" in failing.describe()
    assert failing.describe().startswith("web-1.default -> books.default")


@pytest.mark.parametrize("values", [
    {"rq2": 100},
    {"rq2": 96, "rq5": 4},  # 4 % is under the 5 % threshold
    {"rq5": 4},  # too few requests to judge
    {"rq4": 50, "c404": 50},  # the caller's own 404s are not the service failing
    {},
])
def test_healthy_edges_pass(values: dict[str, int]) -> None:
    assert traffic.failing_edges([edge(values)], [], NODES_OF) == []


def test_the_worst_edge_comes_first() -> None:
    failing = traffic.failing_edges([
        edge({"rq2": 10, "rq5": 10}, destination="authors.default"),
        edge({"rq5": 20}),
    ], [], NODES_OF)
    assert [f.destination for f in failing] == ["books.default", "authors.default"]
    assert failing[1].kinds == ("5xx responses",) and failing[1].rate == 0.5


def test_inbound_counters_of_other_services_do_not_explain_an_edge() -> None:
    [failing] = traffic.failing_edges([edge({"rq5": 10})],
                                      [{"node": "authors-1.default",
                                        "values": {"app_cfail": 5}}], NODES_OF)
    assert failing.kinds == ("5xx responses",)


SERVICES: list[dict[str, Any]] = [
    {"name": "books", "namespace": "default", "workloads": ["books-1"],
     "endpoints": [{"workload": "books-1"}]},
    {"name": "authors", "namespace": "default", "workloads": ["authors-1"], "endpoints": []},
    {"name": "idle", "namespace": "default", "workloads": [], "endpoints": []},
]


@pytest.mark.parametrize(("edges", "expected"), [
    ([edge({"rq2": 3})], []),
    ([edge({"rq5": 3}, destination="authors.default")],
     [("authors", "no ready instance", ["web-1.default"])]),
    ([edge({"rq5": 3}, destination="gone.default")], [("gone", "no such service",
                                                       ["web-1.default"])]),
    ([edge({"rq5": 3}, gauges={"members": 2, "healthy": 0})],
     [("books", "no healthy endpoint", ["web-1.default"])]),
    ([edge({"rq2": 3}, gauges={"members": 2, "healthy": 1})], []),
    ([edge({}, destination="authors.default")], []),  # no calls in the window: not flagged
    ([edge({"rq5": 1}, destination="authors.default"),
      edge({"rq5": 1}, source="top-1.default", destination="authors.default")],
     [("authors", "no ready instance", ["top-1.default", "web-1.default"])]),
])
def test_services_without_endpoints(edges: list[dict[str, Any]],
                                    expected: list[tuple[str, str, list[str]]]) -> None:
    found = traffic.services_without_endpoints(SERVICES, edges)
    assert [(f["service"], f["reason"], f["callers"]) for f in found] == expected


def test_proxy_failures_name_no_route_and_route_limits() -> None:
    found = traffic.proxy_failures([
        {"node": "web-1.default", "values": {"noroute": 12, "mem": 1}},
        {"node": "top-1.default", "values": {"route_limited": 7, "noroute": 2}},
    ])
    assert [(f["proxy"], f["kind"], f["count"]) for f in found] == [
        ("web-1.default", "requests that matched no route (404)", 12),
        ("top-1.default", "requests refused by a route's rate limit (429)", 7)]


@pytest.mark.parametrize(("values", "expected"), [
    ({"rq2": 40}, []),
    ({"no_cert": 3}, [("books-1.default", 3, "without a client certificate")]),
    ({"verify_fail": 2, "san_fail": 1}, [
        ("books-1.default", 1, "unexpected identity"),
        ("books-1.default", 2, "untrusted or expired")]),
])
def test_refused_handshakes_name_the_instance(values: dict[str, int],
                                              expected: list[tuple[str, int, str]]) -> None:
    found = traffic.refused_handshakes([{"node": "books-1.default", "values": values}])
    assert [(f["proxy"], f["count"]) for f in found] == [(p, c) for p, c, _ in expected]
    assert all(words in f["kind"] for f, (_, _, words) in zip(found, expected, strict=True))


def test_refused_peers_name_the_caller_and_the_destination() -> None:
    found = traffic.refused_peers([
        {"source": "web-1.default", "destination": "books.default",
         "values": {"rq2": 20, "san_fail": 4}},
        {"source": "api-1.default", "destination": "books.default", "values": {"rq2": 9}},
    ])
    assert [(f["proxy"], f["count"]) for f in found] == [("web-1.default", 4)]
    assert "identity" in found[0]["kind"] and "books.default" in found[0]["kind"]


def _workload(name: str, memory: int | None, stats: int | None,
              age: float | None = 1.0) -> dict[str, Any]:
    return {"name": name, "namespace": "default",
            "proxy": {"memoryBytes": memory, "stats": stats, "lastReportSeconds": age}}


MIB = 1024 * 1024


def test_resource_outliers() -> None:
    rows = [_workload(f"w{i}", 40 * MIB, 900) for i in range(4)]
    assert traffic.resource_outliers(rows) == []
    rows.append(_workload("fat", 600 * MIB, 900))
    rows.append(_workload("chatty", 40 * MIB, 90_000))
    found = {(o["proxy"], o["what"]) for o in traffic.resource_outliers(rows)}
    assert found == {("fat.default", "memory"), ("chatty.default", "stats")}


def test_small_differences_are_not_outliers() -> None:
    # 5x the peers' median, but within the margin: an idle mesh has small numbers.
    rows = [_workload("a", 10 * MIB, 100), _workload("b", 30 * MIB, 500),
            _workload("c", 10 * MIB, 100)]
    assert traffic.resource_outliers(rows) == []


@pytest.mark.parametrize(("age", "silent"), [(1.0, False), (15.0, False), (16.0, True),
                                             (None, True)])
def test_silent_proxies(age: float | None, silent: bool) -> None:
    rows = [_workload("books-1", 1, 1, age)]
    found = traffic.silent_proxies(rows, ["books-1.default"], 15.0)
    assert bool(found) is silent


def test_a_proxy_without_any_row_is_silent() -> None:
    assert traffic.silent_proxies([], ["books-1.default"], 15.0) == [
        {"proxy": "books-1.default", "lastReportSeconds": None}]


@pytest.mark.parametrize(("found", "expected", "status"), [
    ({"a": "1.40.0", "b": "1.40.0"}, "1.40.0", Status.OK),
    ({"a": "1.40.0", "b": "1.39.1"}, "1.40.0", Status.FAILED),
    ({"a": "1.39.1"}, "1.40.0", Status.FAILED),
    ({"a": "1.39.1"}, None, Status.OK),  # no pinned package: only consistency counts
    ({}, "1.40.0", Status.OK),
])
def test_versions(found: dict[str, str], expected: str | None, status: Status) -> None:
    assert evaluate_versions(found, expected).status is status


def test_envoy_build_string() -> None:
    assert envoy_version("9e5580/1.40.0/Clean/RELEASE/BoringSSL") == "1.40.0"
    assert envoy_version("custom") == "custom"


@pytest.mark.parametrize(("found", "status", "words"), [
    ({"a.default": "0.1.0", "b.default": "0.1.0"}, "ok", "2 agents run tulle 0.1.0"),
    ({"a.default": "0.1.0", "b.default": "0.0.9"}, "failed", "b.default 0.0.9"),
    ({"a.default": ""}, "failed", "a.default unknown"),
])
def test_agent_versions(found: dict[str, str], status: str, words: str) -> None:
    from tulle.checks.dataplane import evaluate_agent_versions

    outcome = evaluate_agent_versions(found, "0.1.0")
    assert outcome.status.value == status and words in outcome.message


def _row(name: str, **proxy: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "proxy": {"memoryBytes": 1, **proxy}}


@pytest.mark.parametrize(("proxy", "codes"), [
    ({"serverState": 0, "listenersStopped": 0, "restarts": 0}, []),
    ({}, []),  # an agent that does not report these yet: no alarm
    ({"serverState": 0, "listenersStopped": 1, "restarts": 0}, ["TUL1017"]),
    ({"serverState": 1, "listenersStopped": 0, "restarts": 0}, ["TUL1017"]),
    ({"serverState": 0, "listenersStopped": 0, "restarts": 2}, ["TUL1018"]),
    ({"serverState": 1, "listenersStopped": 2, "restarts": 1},
     ["TUL1017", "TUL1017", "TUL1018"]),
])
def test_sidecars_not_serving(proxy: dict[str, Any], codes: list[str]) -> None:
    found = traffic.sidecars_not_serving([_row("books-1", **proxy)], ["books-1.default"])
    assert [f["code"] for f in found] == codes
    assert all(f["proxy"] == "books-1.default" for f in found)


def test_a_departed_sidecar_is_not_judged() -> None:
    rows = [_row("gone-1", listenersStopped=1, restarts=3)]
    assert traffic.sidecars_not_serving(rows, ["books-1.default"]) == []
