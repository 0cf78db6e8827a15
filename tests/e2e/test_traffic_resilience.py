"""Retries, budgets, timeouts, circuit breakers and outlier detection, against an upstream that
fails or stalls on demand."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.http import Reply, control, counter, request
from tests.support.mesh import Mesh, Workload, wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.envoy

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: books}}
spec:
  parentRefs: [{{name: books}}]
  rules:
  - backendRefs: [{{name: books}}]
{extra}
"""


def start(mesh: Mesh, instances: int = 1) -> tuple[int, list[Workload]]:
    books = [mesh.run("books", name=f"books-{i + 1}") for i in range(instances)]
    port = free_port()
    mesh.run("web", name="web-1", extra=("--upstream", f"books:{port}"))
    mesh.wait_endpoints("web-1", "books", {b.name for b in books})
    return port, books


def apply(mesh: Mesh, text: str) -> None:
    mesh.cli("apply", "-f", "-", stdin=text)
    mesh.sync()


def parallel(port: int, count: int, path: str = "/") -> list[Reply]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: request(port, path, timeout=15), range(count)))


def test_retries_recover_from_an_upstream_failing_half_the_time(mesh: Mesh) -> None:
    port, (books,) = start(mesh)
    assert books.app_port is not None
    apply(mesh, ROUTE.format(extra="    retry: {attempts: 2, codes: [503]}"))
    control(books.app_port, reset=1, fail=503, every=2)
    replies = [request(port, f"/{i}") for i in range(100)]
    assert [r.status for r in replies] == [200] * 100
    # Every second attempt fails, so after the first failure each request's first attempt
    # fails and its retry succeeds: 1 + 2 x 99 attempts, half of them failures.
    assert counter(books.app_port) == 199


BUDGET = """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-budget}
spec:
  targetRefs: [{kind: Service, name: books}]
  retryBudget: {percent: 20, minRetryConcurrency: 1}
"""


def test_retry_budget_stops_retries_against_a_failing_upstream(mesh: Mesh) -> None:
    port, (books,) = start(mesh)
    assert books.app_port is not None
    apply(mesh, ROUTE.format(extra="    retry: {attempts: 3, codes: [503]}"))
    apply(mesh, BUDGET)
    control(books.app_port, reset=1, fail=503, every=1, delay=150)
    replies = parallel(port, 30)
    assert {r.status for r in replies} == {503}
    upstream = counter(books.app_port)
    # Without a budget, 30 requests with 3 retries each would reach the upstream 120 times.
    # With 20 % of 30 requests in flight, at most ~6 retries run at once.
    print(f"measured: 30 requests x 3 retries against 100 % failures: {upstream} attempts "
          f"reached the upstream")
    assert 30 <= upstream <= 60, upstream
    stats = mesh.stats("web-1")
    assert stats["cluster.outbound|books|default.upstream_rq_retry_overflow"] > 0


def test_request_timeout_answers_504(mesh: Mesh) -> None:
    port, _ = start(mesh)
    apply(mesh, ROUTE.format(extra="    timeouts: {request: 500ms}"))
    reply = request(port, "/?delay=5000")
    print(f"measured: 500ms route timeout answered {reply.status} after {reply.seconds:.3f}s")
    assert reply.status == 504
    # Not before the timeout, and not after the application's own answer (5 s).
    assert 0.45 <= reply.seconds < 4.5, reply.seconds
    assert request(port, "/?delay=100").status == 200


POOL = """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-pool}
spec:
  targetRefs: [{kind: Service, name: books}]
  connectionPool: {maxConnections: 1, maxPendingRequests: 1, maxRequests: 1}
"""


def test_circuit_breaker_rejects_excess_requests_at_once(mesh: Mesh) -> None:
    port, _ = start(mesh)
    apply(mesh, POOL)
    replies = parallel(port, 10, "/?delay=3000")
    overflow = [r for r in replies if r.status == 503]
    served = [r for r in replies if r.status == 200]
    print(f"measured: pool of 1, 10 concurrent: {len(served)} served, {len(overflow)} UO, "
          f"slowest rejection {max((r.seconds for r in overflow), default=0):.3f}s")
    assert len(overflow) + len(served) == 10
    assert len(served) >= 1 and len(overflow) >= 5, [r.status for r in replies]
    # Rejected at once (well before a served request's 3 s), and marked as circuit breaking
    # (Envoy flag UO).
    assert all(r.seconds < 2.0 for r in overflow), [r.seconds for r in overflow]
    assert all(r.headers.get("x-envoy-overloaded") == "true" for r in overflow)
    stats = mesh.stats("web-1")
    assert stats["cluster.outbound|books|default.upstream_rq_pending_overflow"] >= 5


OUTLIERS = """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-outliers}
spec:
  targetRefs: [{kind: Service, name: books}]
  outlierDetection:
    consecutive5xx: 2
    interval: 500ms
    baseEjectionTime: 3s
    maxEjectionPercent: 50
"""


def test_outlier_is_ejected_then_comes_back(mesh: Mesh) -> None:
    port, books = start(mesh, instances=3)
    apply(mesh, OUTLIERS)
    bad = books[0]
    assert bad.app_port is not None
    control(bad.app_port, reset=1, fail=500, every=1)

    def ejected() -> bool:
        return mesh.stats("web-1").get(
            "cluster.outbound|books|default.outlier_detection.ejections_active", 0) == 1

    for _ in range(30):
        request(port, "/")
    wait_for("the failing instance to be ejected", ejected, timeout=10)
    served = {request(port, f"/{i}").workload for i in range(30)}
    assert served == {"books-2", "books-3"}, served
    # After the ejection time it is tried again (and, still failing, ejected again).
    before = counter(bad.app_port)

    def tried_again() -> bool:
        request(port, "/")
        return counter(bad.app_port) > before

    wait_for("the ejected instance to be tried again", tried_again, timeout=10)
