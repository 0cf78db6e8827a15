"""`tulle tap` through real sidecars: what a request shows, how fast, which filters apply, and
that sidecars do no tap work when no tap is attached."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.http import request
from tests.support.mesh import Mesh, wait_for
from tests.support.scenarios import books_and_web, never_listening
from tests.support.tap import (
    SECRETS,
    TAP_LOGGER,
    Tap,
    identity,
    loggers,
)

pytestmark = pytest.mark.envoy

REDACT = """\
apiVersion: tulle.io/v1alpha1
kind: Mesh
metadata: {name: default}
spec:
  accessLog: {redactHeaders: [x-api-key]}
"""


def received(mesh: Mesh) -> dict[str, int]:
    """Access-log entries the control plane has received, per sidecar, since it started."""
    counts: dict[str, int] = mesh.api.get("/v1/tap/status")["received"]
    return counts


def test_sidecars_do_no_tap_work_before_a_tap_or_after_it(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    assert {request(port, f"/before/{i}").status for i in range(5)} == {200}
    # No tap: no access logger anywhere, so Envoy has nothing to evaluate or send.
    assert loggers(mesh, "web-1") == [] and loggers(mesh, "books-1") == []
    assert received(mesh) == {}

    tap = Tap.start(mesh, "books")
    assert TAP_LOGGER in loggers(mesh, "web-1") and TAP_LOGGER in loggers(mesh, "books-1")
    assert request(port, "/during").status == 200
    tap.wait("the request on both sides", count=2, path="/during")
    assert tap.stop() == 0

    wait_for("the tap loggers to go", lambda: loggers(mesh, "web-1") == loggers(mesh, "books-1")
             == [])
    # Connections accepted while the logger was there close within the drain time.
    mesh.wait_quiescent("web-1", "books-1")
    before = received(mesh)
    assert {request(port, f"/after/{i}").status for i in range(10)} == {200}
    # Not a readiness wait: nothing may arrive in ten times the sidecars' flush interval.
    time.sleep(1.0)
    assert received(mesh) == before, "a sidecar streamed access logs with no tap attached"
    assert loggers(mesh, "web-1") == [] and loggers(mesh, "books-1") == []


def test_request_shows_with_identities_tls_and_redacted_headers(
        mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=REDACT)
    port = books_and_web(mesh)
    tap = Tap.start(mesh, "books")
    try:
        reply = request(port, "/books/1?page=2", method="POST", headers=SECRETS)
        completed = time.time()
        assert reply.status == 200
        arrivals = tap.wait("the request on both sides", count=2, path="/books/1?page=2")
    finally:
        tap.stop()
    delays = [a.at - completed for a in arrivals]
    print(f"measured: tap events arrived {max(delays):.3f}s after the request completed")

    by_side = {a.event["direction"]: a.event for a in arrivals}
    assert set(by_side) == {"inbound", "outbound"}
    assert by_side["outbound"]["workload"] == "web-1.default"
    assert by_side["inbound"]["workload"] == "books-1.default"
    for event in by_side.values():
        assert event["source"] == identity("web")
        assert event["destination"] == identity("books")
        assert event["mtls"] is True
        assert str(event["tlsVersion"]).startswith("TLSv1.")
        assert (event["method"], event["status"], event["flags"]) == ("POST", 200, "-")
        assert event["bytesSent"] > 0 and event["bytesReceived"] == 0
        assert isinstance(event["latencyMs"], int)
        assert event["requestId"] == by_side["outbound"]["requestId"]
        headers = event["requestHeaders"]
        assert headers["authorization"] == headers["cookie"] == "[redacted]"
        assert headers["x-api-key"] == "[redacted]"
    assert by_side["outbound"]["upstreamCluster"] == "outbound|books.default"
    # The secrets went nowhere: not to the CLI, not into the control plane's log.
    shown = json.dumps([a.event for a in tap.arrivals])
    logged = (mesh.state_dir / "controlplane.log").read_text()
    for secret in ("tap-secret-token", "tap-secret-cookie", "tap-secret-key"):
        assert secret not in shown and secret not in logged


POLICIES = """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-pool}
spec:
  targetRefs: [{kind: Service, name: books}]
  connectionPool: {maxConnections: 1, maxPendingRequests: 1, maxRequests: 1}
---
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-chaos}
spec:
  targetRefs: [{kind: Service, name: books}]
  faultInjection:
    abort: {httpStatus: 503, percent: 100}
    match:
      headers: [{name: x-chaos, value: "on"}]
"""


def test_caller_side_flags_and_status_filter(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    mesh.cli("apply", "-f", "-", stdin=POLICIES)
    mesh.sync()
    tap = Tap.start(mesh, "books", "--status", "5xx")
    try:
        assert request(port, "/fine").status == 200
        assert request(port, "/chaos", headers={"x-chaos": "on"}).status == 503
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda i: request(port, f"/slow/{i}?delay=800"), range(8)))
        assert 503 in {r.status for r in replies}
        [fault] = [a.event for a in tap.wait("the fault-injected request", path="/chaos")]
        overflow = tap.wait("a circuit-breaker rejection", flags="UO")[0].event
    finally:
        tap.stop()
    # Both exist only on the calling side: the request never reached books.
    assert (fault["direction"], fault["status"], fault["flags"]) == ("outbound", 503, "FI")
    assert fault["source"] == identity("web") and fault["destination"] is None
    assert (overflow["direction"], overflow["status"]) == ("outbound", 503)
    assert overflow["upstreamCluster"] == "outbound|books.default"
    assert all(e["status"] >= 500 for e in tap.events()), tap.events()
    assert not tap.events(path="/fine")


def test_path_method_and_max_filters_end_the_tap(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    tap = Tap.start(mesh, "books", "--path", "/api", "--method", "POST", "--max", "2")
    for path, method in (("/api/1", "GET"), ("/apix", "POST"), ("/other", "POST"),
                         ("/api/2", "POST")):
        assert request(port, path, method=method).status == 200
    assert tap.process.wait(15) == 0, tap.output()  # --max 2 ends it: one request, two sides
    assert sorted(e["direction"] for e in tap.events()) == ["inbound", "outbound"]
    assert {(e["method"], e["path"]) for e in tap.events()} == {("POST", "/api/2")}
    assert "tap ended after 2 lines" in tap.output()
    wait_for("the loggers to go", lambda: loggers(mesh, "books-1") == [])


def test_tapping_a_workload_shows_its_own_requests_only(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    client = mesh.run("client", name="client-1")
    tap = Tap.start(mesh, "web-1")
    try:
        assert loggers(mesh, "client-1") == []  # nothing to do with web-1
        assert request(port, "/from-web").status == 200
        assert mesh.call(client, "http://books/from-client")["status"] == 200
        tap.wait("web-1's request", path="/from-web")
        # Not a readiness wait: the other request's entries, if any were sent, may not arrive.
        time.sleep(0.5)
    finally:
        tap.stop()
    assert {(e["workload"], e["direction"]) for e in tap.events()} == {
        ("web-1.default", "outbound")}


def test_tap_of_an_unknown_target_or_with_a_bad_filter_says_what_to_fix(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    missing = mesh.cli("tap", "bookz", check=False)
    assert missing.returncode == 1
    assert "no service or workload named 'bookz' in namespace default" in missing.stderr
    assert 'did you mean "books"' in missing.stderr
    bad = mesh.cli("tap", "books", "--status", "6xx", check=False)
    assert bad.returncode == 2
    assert "is not a status or class" in bad.stderr and "hint:" in bad.stderr
    assert mesh.api.get("/v1/tap/status")["sessions"] == []


def test_a_call_that_never_got_a_connection_is_labelled_by_what_happened(mesh: Mesh) -> None:
    # bad-1 never becomes ready: web-1's sidecar answers every call 503 "no healthy
    # upstream". No TLS was spoken, and no plaintext either: the tap says what happened.
    upstream, _ = never_listening(mesh)
    tap = Tap.start(mesh, "bad", output="table")
    try:
        def tapped() -> list[str] | None:
            assert request(upstream, "/nothing").status == 503
            return [line for line in tap.lines if "/nothing" in line] or None
        wait_for("a tapped 503", tapped)
    finally:
        tap.stop()
    line = next(line for line in tap.lines if "/nothing" in line)
    assert "  out  " in line and "(bad.default)" in line and "  503  " in line, line
    assert "UH (no healthy upstream)" in line, line
    assert line.endswith("no connection: no healthy upstream"), line
    assert "plaintext" not in line, line
