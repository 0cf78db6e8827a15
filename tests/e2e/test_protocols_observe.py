"""gRPC in what tulle shows: tap names a failed call's grpc-status and message (it arrives in
an HTTP 200), and diagnose speaks of gRPC status codes for gRPC services."""

from __future__ import annotations

import pytest

from tests.e2e.test_protocols import GRPC_SERVICE, _greeter, _grpc_call
from tests.support.mesh import Mesh, wait_for
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
        # Each call shows once per side: the caller's sidecar and the instance's.
        every.wait("the ten calls on both sides", count=20, path="/tulle.test.Greeter/Hello")
    finally:
        every.stop()
    failed = every.events(grpcStatus="UNAVAILABLE")
    assert len(failed) == 10, every.lines
    assert {(e["status"], e["grpcMessage"]) for e in failed} == {(200, "greeter-1 is flaky")}
    assert {e["direction"] for e in failed} == {"inbound", "outbound"}
    assert len(every.events(grpcStatus="OK", status=200)) == 10, every.lines
    try:
        # --status 5xx shows the failed calls, as stat counts them, and only those.
        wait_for("the failed calls in the 5xx tap", lambda: len(failures.lines) >= 11)
    finally:
        failures.stop()
    header, *rows = failures.lines
    assert header.startswith("TIME") and len(rows) == 10, failures.lines
    assert all("200 gRPC UNAVAILABLE (14) 'greeter-1 is flaky'" in row for row in rows), rows
