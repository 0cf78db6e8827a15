"""gRPC in what tulle shows: tap names a failed call's grpc-status and message (it arrives in
an HTTP 200), and diagnose speaks of gRPC status codes for gRPC services."""

from __future__ import annotations

import sys

import pytest

from tests.e2e.test_diagnose_families import first_finding
from tests.e2e.test_protocols import APPS, GRPC_SERVICE, _greeter, _grpc_call
from tests.support.mesh import Mesh, wait_for
from tests.support.ports import free_port
from tests.support.tap import Tap

pytestmark = pytest.mark.envoy


def test_tap_shows_a_grpc_failure_inside_http_200(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=GRPC_SERVICE)
    _greeter(mesh, "greeter-1", env=("FAIL_EVERY=2",))
    mesh.sync()
    every = Tap.start(mesh, "greeter")
    failures = Tap.start(mesh, "greeter", "--status", "5xx", output="table")
    try:
        calls = _grpc_call(mesh, "10")  # every second call: UNAVAILABLE, in an HTTP 200
        assert sum(calls["failures"].values()) == 5, calls
        # The instance's side sees every call. (The caller's sidecar starts with the call, and
        # may get its tap logger after its first calls: its side is checked as it arrives.)
        every.wait("the ten calls on the instance's side", count=10, direction="inbound",
                   path="/tulle.test.Greeter/Hello")
        wait_for("the failed calls in the 5xx tap",
                 lambda: sum("  in  " in line for line in failures.lines) >= 5)
    finally:
        every.stop()
        failures.stop()
    inbound = every.events(direction="inbound")
    assert sorted(str(e["grpcStatus"]) for e in inbound) == ["OK"] * 5 + ["UNAVAILABLE"] * 5
    failed = every.events(grpcStatus="UNAVAILABLE")
    assert {(e["status"], e["grpcMessage"]) for e in failed} == {(200, "greeter-1 is flaky")}
    outbound = every.events(direction="outbound")
    assert {e["grpcStatus"] for e in outbound} <= {"OK", "UNAVAILABLE"}, outbound
    # --status 5xx shows the failed calls, as stat counts them, and only those.
    header, *rows = failures.lines
    assert header.startswith("TIME") and sum("  in  " in row for row in rows) == 5, rows
    assert all("200 gRPC UNAVAILABLE (14) 'greeter-1 is flaky'" in row for row in rows), rows


RETRY_ON_UNAVAILABLE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: greeter}
spec:
  parentRefs: [{name: greeter}]
  rules:
  - name: retries
    backendRefs: [{name: greeter}]
    retry: {attempts: 3, grpcCodes: [unavailable]}
"""


def test_diagnose_names_the_instance_whose_grpc_failures_retries_hide(
        mesh: Mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")
    mesh.cli("apply", "-f", "-", stdin=GRPC_SERVICE + "---\n" + RETRY_ON_UNAVAILABLE)
    _greeter(mesh, "greeter-1")
    _greeter(mesh, "greeter-2", env=("FAIL_EVERY=2",))
    mesh.sync()
    local = free_port()
    # Steady calls (about 30 a second) from a long-running client, over one channel.
    mesh.run("client", name="client-1", extra=("--upstream", f"greeter:{local}"), command=[
        sys.executable, str(APPS / "grpc_caller.py"), f"127.0.0.1:{local}", "100000", "0.03"])
    finding = first_finding(mesh, "TUL1019")
    assert finding["subject"] == "proxy/greeter-2.default", finding
    assert "httproute/greeter.default#retries" in finding["related"], finding
    # In gRPC terms: the status the instance answered, with its share of its calls.
    cause = finding["cause"]
    assert "of its gRPC calls with gRPC status UNAVAILABLE (14)" in cause, finding
    # The hidden failure rate: every second call it answers fails (50 %).
    rate = float(cause.split(" fails ")[1].split("%")[0])
    assert 30 <= rate <= 70, cause
    [line] = [x for x in finding["evidence"] if x.startswith("greeter-2.default failed")]
    assert "gRPC calls" in line and "UNAVAILABLE (14): " in line, finding["evidence"]
