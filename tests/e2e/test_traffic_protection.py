"""Rate limits and fault injection, through real sidecars."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.http import counter, request
from tests.support.mesh import Mesh, wait_for
from tests.support.scenarios import books_and_web

pytestmark = pytest.mark.envoy

SERVICE_LIMIT = """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-limit}
spec:
  targetRefs: [{kind: Service, name: books}]
  rateLimit: {requests: 5, interval: 2s}
"""

ROUTE_LIMIT = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - name: search
    matches: [{path: {type: PathPrefix, value: /search}}]
    backendRefs: [{name: books}]
  - backendRefs: [{name: books}]
---
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: search-limit}
spec:
  targetRefs: [{kind: HTTPRoute, group: gateway.networking.k8s.io, name: books,
                sectionName: search}]
  rateLimit: {requests: 3, interval: 2s}
"""


start = books_and_web


def test_service_rate_limit_answers_429_with_headers(mesh: Mesh) -> None:
    port = start(mesh)
    within = [request(port, "/") for _ in range(4)]
    assert {r.status for r in within} == {200}  # no limit yet
    mesh.cli("apply", "-f", "-", stdin=SERVICE_LIMIT)
    mesh.sync()
    # Every request now meets the limit's bucket (full when made): none takes a connection
    # accepted before the change.
    mesh.wait_quiescent("books-1")
    replies = [request(port, "/") for _ in range(12)]
    statuses = [r.status for r in replies]
    assert statuses[:5] == [200] * 5, statuses  # the bucket holds 5
    limited = [r for r in replies if r.status == 429]
    assert len(limited) >= 6, statuses
    assert limited[0].headers.get("x-ratelimit-limit") == "5"
    assert "x-ratelimit-remaining" in limited[0].headers
    # Not a readiness wait: the limit's interval passing is what refills the bucket.
    time.sleep(2.1)
    assert {request(port, "/").status for _ in range(3)} == {200}  # within the limit: none


def test_route_rate_limit_applies_to_its_rule_only(mesh: Mesh) -> None:
    port = start(mesh)
    mesh.cli("apply", "-f", "-", stdin=ROUTE_LIMIT)
    # The route table (RDS) carries the bucket, which starts full; the listener gains the
    # rate-limit filter (LDS) only now that a route uses it. Each request here opens a new
    # connection, so it meets both once they are ACKed.
    mesh.sync()
    searches = [request(port, "/search?q=x").status for _ in range(8)]
    assert searches[:3] == [200] * 3 and searches.count(429) >= 4, searches
    assert {request(port, "/browse").status for _ in range(8)} == {200}


FAULTS = """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-chaos}
spec:
  targetRefs: [{kind: Service, name: books}]
  faultInjection:
    abort: {httpStatus: 503, percent: 30}
    delay: {fixedDelay: 200ms, percent: 20}
    match:
      headers: [{name: x-chaos, value: "on"}]
"""


def test_fault_injection_hits_the_configured_share_of_matching_requests(mesh: Mesh) -> None:
    port = start(mesh)
    mesh.cli("apply", "-f", "-", stdin=FAULTS)
    mesh.sync()
    n = 400
    chaos = [request(port, "/", headers={"x-chaos": "on"}) for _ in range(n)]
    aborted = [r for r in chaos if r.status == 503]
    delayed = [r for r in chaos if r.status == 200 and r.seconds >= 0.19]
    # Binomial bounds at +-4 standard deviations.
    assert 120 - 37 <= len(aborted) <= 120 + 37, len(aborted)
    assert all(r.status in (200, 503) for r in chaos)
    assert "fault filter abort" in str(aborted[0].body)
    served = n - len(aborted)
    share = len(delayed) / served
    print(f"measured: faults on {n} matching requests: {len(aborted)} aborted (30 % set), "
          f"{share:.1%} of the rest delayed (20 % set)")
    assert 0.20 - 0.10 <= share <= 0.20 + 0.10, (len(delayed), served)
    plain = [request(port, "/") for _ in range(100)]
    assert {r.status for r in plain} == {200}  # no header, no faults
    # (A loaded CI machine may stall a request now and then; 20 % delays would show.)
    assert sum(r.seconds >= 0.19 for r in plain) <= 5
    # Removed at run time: the route loses its fault config and the listener its fault
    # filter. 40 matching requests all answered (30 % aborts would leave 1 in 600,000 so).
    mesh.cli("delete", "trafficpolicy", "books-chaos")
    mesh.sync()
    assert {request(port, "/", headers={"x-chaos": "on"}).status for _ in range(40)} == {200}


def test_a_listener_change_lets_requests_in_flight_finish(mesh: Mesh) -> None:
    """A service rate limit changes every instance's inbound listener. Connections accepted
    with the old listener drain: a slow request already in flight must still complete."""
    port = start(mesh)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(request, port, "/?delay=3000", timeout=15)
        books = mesh.workloads[0]
        assert books.app_port is not None
        wait_for("the slow request to reach books", lambda: counter(books.app_port) == 1)
        mesh.cli("apply", "-f", "-", stdin=SERVICE_LIMIT)
        mesh.sync()
        reply = slow.result()
    assert reply.status == 200, (reply.status, reply.body)
    # The change is in force for new requests.
    statuses = [request(port, "/").status for _ in range(12)]
    assert 429 in statuses, statuses


DRY_RUN_LIMIT = """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-limit}
spec:
  targetRefs: [{kind: Service, name: books}]
  rateLimit: {requests: 5, interval: 60s}
  mode: DryRun
"""


def test_a_dry_run_rate_limit_refuses_nothing_and_counts_what_enforcement_then_refuses(
        mesh: Mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")
    port = start(mesh)
    mesh.cli("apply", "-f", "-", stdin=DRY_RUN_LIMIT)
    mesh.sync()
    mesh.wait_quiescent("books-1")
    replies = [request(port, "/") for _ in range(12)]
    assert {r.status for r in replies} == {200}  # refuses nothing...
    assert not any(h.startswith("x-ratelimit") for r in replies for h in r.headers)
    stats = mesh.stats("books-1")
    would = stats["inbound_ratelimit_dry_run.http_local_rate_limit.rate_limited"]
    assert would == 7, stats  # ...and counts the 7 over the bucket of 5

    def row() -> dict[str, object] | None:
        data = json.loads(mesh.cli("stat", "services", "books", "-o", "json").stdout)
        limits = next(r for r in data["services"] if r["name"] == "books")["rateLimit"]
        return limits if limits["wouldLimit"] == 7 else None
    assert wait_for("the dry run's count in telemetry", row, timeout=30) == {
        "limited": 0, "wouldLimit": 7}
    mesh.cli("policy", "promote", "books-limit")
    mesh.sync()
    mesh.wait_quiescent("books-1")
    # Enforced, on the same traffic: the same 7 refused (a fresh bucket of 5).
    statuses = [request(port, "/").status for _ in range(12)]
    assert statuses == [200] * 5 + [429] * 7, statuses


ROUTE_DRY_RUN_LIMIT = ROUTE_LIMIT.replace("rateLimit: {requests: 3, interval: 2s}",
                                          "rateLimit: {requests: 3, interval: 60s}\n  "
                                          "mode: DryRun")


def test_a_route_rules_dry_run_limit_counts_per_rule_what_enforcement_then_refuses(
        mesh: Mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")
    port = start(mesh)
    mesh.cli("apply", "-f", "-", stdin=ROUTE_DRY_RUN_LIMIT)
    mesh.sync()
    searches = [request(port, "/search?q=x") for _ in range(8)]
    assert {r.status for r in searches} == {200}  # refuses nothing...
    assert not any(h.startswith("x-ratelimit") for r in searches for h in r.headers)
    assert {request(port, "/browse").status for _ in range(8)} == {200}

    def rules() -> dict[str, int] | None:
        data = json.loads(mesh.cli("routes", "books", "-o", "json").stdout)
        found = {r["rule"]: r["wouldLimit"] for r in data["routes"]}
        return found if found.get("search") == 5 else None
    # ...and counts, for its rule only, the 5 over the bucket of 3.
    assert wait_for("the rule's dry-run count in telemetry", rules, timeout=30) == {
        "search": 5, "1": 0}
    assert "WOULD LIMIT (DRY RUN)" in mesh.cli("routes", "books").stdout
    mesh.cli("policy", "promote", "search-limit")
    mesh.sync()
    # Enforced, on the same traffic: the same 5 refused (a fresh bucket of 3).
    statuses = [request(port, "/search?q=x").status for _ in range(8)]
    assert statuses == [200] * 3 + [429] * 5, statuses
    assert {request(port, "/browse").status for _ in range(8)} == {200}
