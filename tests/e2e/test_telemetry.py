"""Golden metrics from real sidecars: known traffic must come out as the right figures in
`tulle stat`, `tulle routes` and `tulle edges`, and proxies keep few stats."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.support.http import request
from tests.support.mesh import Mesh, wait_for
from tests.support.ports import free_port
from tests.support.scenarios import BOOKS_VERSIONS, SEARCH_ROUTE, books_and_web, never_listening

pytestmark = pytest.mark.envoy

WINDOW = "300"  # seconds: covers the whole test


@pytest.fixture(autouse=True)
def _fast_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    # Agents report every 0.5 s instead of 5 s, so figures arrive quickly.
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")


start = books_and_web


def send(port: int, paths: list[str]) -> list[int]:
    with ThreadPoolExecutor(10) as pool:
        return [r.status for r in pool.map(lambda p: request(port, p, timeout=30), paths)]


def telemetry(mesh: Mesh, what: str, **query: str) -> dict[str, Any]:
    params = "&".join(f"{k}={v}" for k, v in {"window": WINDOW, **query}.items())
    data: dict[str, Any] = mesh.api.get(f"/v1/telemetry/{what}?{params}")
    return data


def books_row(mesh: Mesh, expected: int) -> dict[str, Any]:
    def complete() -> dict[str, Any] | None:
        rows = telemetry(mesh, "services", name="books")["services"]
        # Counters and the latency histogram both complete (histograms merge a read later).
        if rows and rows[0]["requests"] == expected:
            return dict(rows[0])
        return None
    return wait_for(f"{expected} requests in books' stats", complete, timeout=20)


def test_known_traffic_gives_the_right_figures(mesh: Mesh) -> None:
    port = start(mesh)
    # 300 requests: 30 fail with 503, 70 are fast, 200 take at least 100 ms.
    paths = ["/?status=503"] * 30 + ["/fast"] * 70 + ["/?delay=100"] * 200
    statuses = send(port, paths)
    assert statuses.count(503) == 30 and statuses.count(200) == 270

    row = books_row(mesh, 300)
    print(f"measured: books over 300 requests: {json.dumps(row)}")
    assert row["instances"] == 1
    assert row["codes"] == {"2xx": 270, "5xx": 30}
    assert abs(row["successRate"] - 0.90) <= 0.01
    latency = row["latencyMs"]
    # Two thirds of the requests waited 100 ms: the median and the tail are at least that;
    # a third were fast, so p50 is not far above (bucket 100-150 ms, interpolated).
    assert 100 <= latency["p50"] <= latency["p95"] <= latency["p99"], latency
    assert latency["p50"] < 1000, latency

    # The service's row may come from web-1's view (its report can arrive first): the
    # instance's own report follows.
    wait_for("books-1's 300 requests", lambda: [w["requests"] for w in telemetry(
        mesh, "workloads", name="books-1")["workloads"]] == [300], timeout=20)
    workloads = telemetry(mesh, "workloads", name="books-1")["workloads"]
    assert workloads[0]["identity"].endswith("/ns/default/sa/books")

    # The caller's side arrives in web-1's own reports.
    def edge_complete() -> dict[str, Any] | None:
        edges = telemetry(mesh, "edges")["edges"]
        found = [e for e in edges if e["destination"]["service"] == "books"]
        return found[0] if found and found[0]["requests"] == 300 else None
    edge = wait_for("the web-1 -> books edge", edge_complete, timeout=20)
    assert edge["source"]["workload"] == "web-1"
    assert edge["source"]["identity"].endswith("/ns/default/sa/web")
    assert edge["destination"]["identities"] == [workloads[0]["identity"]]
    assert edge["mtls"] is True
    assert abs(edge["successRate"] - 0.90) <= 0.01
    assert edge["latencyMs"]["p50"] >= 100

    # Without an HTTPRoute, books has one default route carrying everything.
    routes = telemetry(mesh, "routes", name="books")["routes"]
    assert [(r["route"], r["requests"]) for r in routes] == [("(default)", 300)]

    text = mesh.cli("stat", "services", "books", "--window", "5m").stdout
    assert "books" in text and "90.00%" in text, text
    text = mesh.cli("edges", "-o", "wide", "--window", "5m").stdout
    assert "web-1.default" in text and "books.default" in text and "yes" in text, text


def test_routes_show_each_rule(mesh: Mesh) -> None:
    port = start(mesh)
    mesh.cli("apply", "-f", "-", stdin=SEARCH_ROUTE)
    mesh.sync()
    send(port, ["/search?q=1"] * 12 + ["/search?status=500"] * 3 + ["/other"] * 5)

    def counted() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = telemetry(mesh, "routes", name="books")["routes"]
        return rows if sum(r["requests"] for r in rows) == 20 else None
    rows = wait_for("20 requests in the route stats", counted, timeout=20)
    by_rule = {r["rule"]: r for r in rows}
    assert set(by_rule) == {"search", "1"}
    assert by_rule["search"]["requests"] == 15
    assert by_rule["search"]["successRate"] == pytest.approx(0.8)
    assert by_rule["search"]["matches"] == "PathPrefix /search"
    assert by_rule["1"]["requests"] == 5 and by_rule["1"]["successRate"] == 1.0
    text = mesh.cli("routes", "books", "-o", "wide", "--window", "5m").stdout
    assert "default/books" in text and "search" in text and "80.00%" in text, text


def test_stats_per_proxy_stay_bounded_in_a_large_mesh(mesh: Mesh) -> None:
    services = "\n---\n".join(
        f"apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {{name: svc-{i:03}}}"
        for i in range(100))
    mesh.cli("apply", "-f", "-", stdin=services)
    port = start(mesh)
    send(port, ["/"] * 20)
    mesh.sync()
    document = mesh.admin("web-1", "stats", format="json")
    counters = [s for s in document["stats"] if "name" in s]
    histograms = [h for s in document["stats"] if "histograms" in s
                  for h in s["histograms"].get("computed_quantiles", ())]
    clusters = {s["name"].split(".")[1] for s in counters if s["name"].startswith("cluster.")}
    total = len(counters) + len(histograms)
    print(f"measured: web-1 keeps {total} stats with {len(clusters)} clusters (102 services)")
    assert len(clusters) >= 100  # every service's cluster is there...
    assert total <= 2000, total  # ...and the stats stay bounded
    # The agent reports the same count.
    workloads = telemetry(mesh, "workloads", name="web-1")["workloads"]
    wait_for("web-1's proxy report", lambda: telemetry(
        mesh, "workloads", name="web-1")["workloads"][0]["proxy"]["stats"], timeout=10)
    assert workloads


def test_failures_before_any_instance_count_against_the_service_called(mesh: Mesh) -> None:
    # bad-1's application listens on another port than registered: it never becomes ready,
    # so web-1's sidecar answers every call 503 "no healthy upstream" and bad-1's inbound
    # side sees nothing. The views count those failures against bad, as web-1 saw them.
    upstream, _ = never_listening(mesh)
    statuses = send(upstream, ["/"] * 20)
    assert statuses == [503] * 20

    def bad_row() -> dict[str, Any] | None:
        rows = telemetry(mesh, "services", name="bad")["services"]
        return rows[0] if rows and rows[0]["requests"] >= 20 else None
    row = wait_for("bad's 20 failed requests in stat", bad_row, timeout=20)
    assert row["seenBy"] == "callers"
    assert row["successRate"] == 0.0 and row["codes"] == {"5xx": 20}
    assert row["errors"]["5xx"] == 20 and row["errors"]["no_healthy"] == 20, row["errors"]
    text = mesh.cli("stat", "services", "bad", "--window", "5m").stdout
    assert "bad*" in text and "0.00%" in text and "as the callers saw it" in text, text
    wide = mesh.cli("stat", "services", "bad", "-o", "wide", "--window", "5m").stdout
    assert "5xx=20, no_healthy=20" in wide, wide
    # Its instance saw nothing, and says why: it never became ready.
    [instance] = telemetry(mesh, "workloads", name="bad-1")["workloads"]
    assert (instance["requests"], instance["state"]) == (0, "starting"), instance
    text = mesh.cli("stat", "workloads", "bad-1", "--window", "5m").stdout
    assert text.splitlines()[-1].split()[-1] == "starting", text

    edges = [e for e in telemetry(mesh, "edges")["edges"]
             if e["destination"]["service"] == "bad"]
    assert [(e["source"]["workload"], e["requests"], e["successRate"], e["connected"])
            for e in edges] == [("web-1", 20, 0.0, False)]
    text = mesh.cli("edges", "-o", "wide", "--window", "5m").stdout
    line = next(line for line in text.splitlines() if "bad.default" in line)
    assert "0.00%" in line and "5xx=20, no_healthy=20" in line, text
    assert line.split()[2] == "-", "no mTLS is claimed for a hop that never happened"

    routes = telemetry(mesh, "routes", name="bad")["routes"]
    assert [(r["requests"], r["successRate"], r["errors"].get("no_healthy")) for r in routes
            ] == [(20, 0.0, 20)]

    # `tulle check` blames the same edge, for the same reason.
    check = mesh.cli("check", "--proxy", "--wait", "0", "-o", "json", check=False)
    failing = [e for c in json.loads(check.stdout)["checks"]
               for e in (c.get("details") or {}).get("edges", [])]
    assert any(e["service"] == "bad" and e["failures"] == 20 and
               "no healthy endpoint" in e["kinds"] for e in failing), check.stdout


TO_NOTHING = BOOKS_VERSIONS + """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - name: canary
    backendRefs: [{name: books-v1, weight: 50}, {name: books-v2, weight: 50}]
"""


def test_calls_a_route_sends_to_an_empty_version_count_against_the_service(
        mesh: Mesh) -> None:
    # books v2 has no instance: the canary's share gets 503 "no healthy upstream" in web-1's
    # sidecar. books-1 saw only the other share; stat books counts both, as web-1 saw them.
    mesh.run("books", name="books-1", extra=("--version", "v1"))
    port = free_port()
    mesh.run("web", name="web-1", extra=("--upstream", f"books:{port}"))
    mesh.cli("apply", "-f", "-", stdin=TO_NOTHING)
    mesh.sync()
    statuses = send(port, ["/"] * 40)
    failed = statuses.count(503)
    assert 0 < failed < 40 and statuses.count(200) == 40 - failed, statuses

    def complete() -> dict[str, Any] | None:
        rows = telemetry(mesh, "services", name="books")["services"]
        return rows[0] if rows and rows[0]["requests"] == 40 else None
    row = wait_for("40 requests in books' stats", complete, timeout=20)
    assert row["seenBy"] == "callers"
    assert row["codes"] == {"2xx": 40 - failed, "5xx": failed}
    assert row["errors"]["no_healthy"] == failed, row["errors"]
    # The instance saw only its share (its own report may come after web-1's).
    wait_for(f"books-1's {40 - failed} requests", lambda: telemetry(
        mesh, "workloads", name="books-1")["workloads"][0]["requests"] == 40 - failed,
        timeout=20)
    assert telemetry(mesh, "services", name="books")["services"][0]["requests"] == 40, \
        "never the sum of both views"
    # The canary rule, as web-1 saw it, tells the same story.
    [canary] = telemetry(mesh, "routes", name="books")["routes"]
    assert (canary["rule"], canary["requests"], canary["errors"].get("5xx")) == (
        "canary", 40, failed), canary
