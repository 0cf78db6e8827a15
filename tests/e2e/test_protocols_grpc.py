"""gRPC through the mesh with code no one here wrote: trailers and statuses as the server set
them, server reflection (grpcio-reflection) by name and through --upstream, the standard
health check (grpcio-health-checking) deciding readiness, and deadlines (grpc-timeout)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.mesh import Mesh, wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.envoy

APPS = Path(__file__).resolve().parents[1] / "apps"

GRPC_SERVICE = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: greeter}
spec: {protocol: grpc}
"""


def _greeter(mesh: Mesh, name: str, *flags: str, wait: bool = True) -> None:
    port = free_port()
    mesh.run("greeter", name=name, port=port, wait=wait, command=[
        sys.executable, str(APPS / "grpc_greeter.py"), str(port), name, *flags])


def _last_json(stdout: str) -> dict[str, Any]:
    line = [x for x in stdout.splitlines() if x.startswith("{")][-1]
    data: dict[str, Any] = json.loads(line)
    return data


def _upstream_call(mesh: Mesh, *args: str) -> dict[str, Any]:
    """Through --upstream: the client's sidecar sees each call (routes, timeouts)."""
    local = free_port()
    result = mesh.cli("run", "--service", "client", "--upstream", f"greeter:{local}", "--",
                      sys.executable, str(APPS / "grpc_caller.py"), f"127.0.0.1:{local}",
                      *args, timeout=120)
    return _last_json(result.stdout)


def _by_name_call(mesh: Mesh, *args: str) -> dict[str, Any]:
    """By name through HTTP_PROXY: grpcio sends CONNECT greeter:50051, then HTTP/2."""
    result = mesh.cli("run", "--service", "client", "--", sys.executable,
                      str(APPS / "grpc_caller.py"), "greeter:50051", *args, timeout=120)
    return _last_json(result.stdout)


def _server_set(call: dict[str, Any]) -> dict[str, Any]:
    """The call with only the trailing metadata the server set. A failed call without
    messages is "trailers-only" (one HEADERS frame), so grpcio adds the response headers
    Envoy writes (date, x-envoy-upstream-service-time) to its trailing metadata."""
    return {**call, "trailing": {k: v for k, v in call["trailing"].items()
                                 if k in ("served-by", "blob-bin")}}


def test_trailers_status_and_details_arrive_as_the_server_set_them(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=GRPC_SERVICE)
    _greeter(mesh, "greeter-1")
    mesh.sync()
    trailing = {"served-by": "greeter-1", "blob-bin": "00ff01"}  # a binary trailer too
    failed = _upstream_call(mesh, "trailers", "FAILED_PRECONDITION", "the shelf is empty")
    assert _server_set(failed) == {"status": "FAILED_PRECONDITION", "answer": None,
                                   "details": "the shelf is empty", "trailing": trailing}, failed
    # Trailers after a message, on a call that succeeds: exactly the server's.
    ok = _upstream_call(mesh, "trailers", "OK", "-")
    assert ok == {"status": "OK", "details": "", "answer": "greeter-1",
                  "trailing": trailing}, ok
    # Through a CONNECT tunnel by name, the same.
    tunnelled = _by_name_call(mesh, "trailers", "RESOURCE_EXHAUSTED", "quota")
    assert _server_set(tunnelled) == {"status": "RESOURCE_EXHAUSTED", "details": "quota",
                                      "answer": None, "trailing": trailing}, tunnelled


def test_server_reflection_lists_services_by_name_and_through_upstream(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=GRPC_SERVICE)
    _greeter(mesh, "greeter-1", "--reflection", "--health", "/nonexistent/health")
    mesh.sync()
    expected = {"services": ["grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                             "tulle.test.Greeter"],
                "healthFile": "grpc_health/v1/health.proto"}
    # Reflection is a bidirectional stream: both ways carry it.
    assert _by_name_call(mesh, "reflect") == expected
    assert _upstream_call(mesh, "reflect") == expected


def _state(mesh: Mesh, name: str) -> tuple[str, str]:
    [w] = [w for w in mesh.api.get("/v1/workloads") if w["name"] == name]
    return w["state"], w["stateReason"]


def test_grpc_health_decides_readiness_and_an_app_without_it_is_ready_on_accept(
        mesh: Mesh, tmp_path: Path) -> None:
    mesh.cli("apply", "-f", "-", stdin=GRPC_SERVICE)
    health = tmp_path / "greeter-2.health"
    _greeter(mesh, "greeter-1")  # no health service: ready once its port accepts
    _greeter(mesh, "greeter-2", "--health", str(health))  # SERVING
    mesh.sync()
    calls = _upstream_call(mesh, "20")
    assert set(calls["answered"]) == {"greeter-1", "greeter-2"}, calls

    health.write_text("NOT_SERVING")
    reason = "the gRPC health check (grpc.health.v1) says NOT_SERVING"
    wait_for("greeter-2 not ready", lambda: _state(mesh, "greeter-2") == ("not-ready", reason)
             or None)
    mesh.sync()
    assert _upstream_call(mesh, "20") == {"answered": {"greeter-1": 20}, "failures": {}}
    # Shown with its reason: get, describe, diagnose.
    table = mesh.cli("get", "workloads").stdout
    [row] = [line for line in table.splitlines() if line.split()[1] == "greeter-2"]
    assert "not-ready" in row and reason in row, table
    described = mesh.cli("describe", "service", "greeter").stdout
    assert f"greeter-2 (no version, not-ready: {reason})" in described, described
    report = json.loads(mesh.cli("diagnose", "-o", "json", check=False).stdout)
    [finding] = [f for f in report["findings"] if f["code"] == "TUL1002"]
    assert "greeter-2" in finding["cause"] and "NOT_SERVING" in finding["cause"], finding

    health.write_text("SERVING")
    wait_for("greeter-2 ready again", lambda: _state(mesh, "greeter-2") == ("ready", "")
             or None)
    mesh.sync()
    calls = _upstream_call(mesh, "20")
    assert set(calls["answered"]) == {"greeter-1", "greeter-2"}, calls


def _curl_slow(mesh: Mesh, tmp_path: Path, seconds: str, grpc_timeout: str | None
               ) -> dict[str, str]:
    """One Slow call sent by curl, which keeps no deadline of its own: whatever ends it early
    is the mesh. Returns the response's headers (a trailers-only answer carries its gRPC
    status there) and curl's time_total."""
    frame = tmp_path / "slow.frame"
    body = seconds.encode()
    frame.write_bytes(b"\x00" + len(body).to_bytes(4, "big") + body)
    local = free_port()
    result = mesh.cli(
        "run", "--service", "client", "--upstream", f"greeter:{local}", "--", "curl", "-s",
        "--http2-prior-knowledge", "-o", "/dev/null", "-D", "-", "-w", "time_total=%{time_total}",
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        *(["-H", f"grpc-timeout: {grpc_timeout}"] if grpc_timeout else []),
        "--data-binary", f"@{frame}",
        f"http://127.0.0.1:{local}/tulle.test.Greeter/Slow", timeout=120)
    out: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition(":" if ": " in line else "=")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def test_the_callers_deadline_is_honoured_and_capped_by_the_route_timeout(
        mesh: Mesh, tmp_path: Path) -> None:
    mesh.cli("apply", "-f", "-", stdin=GRPC_SERVICE)
    _greeter(mesh, "greeter-1")
    mesh.sync()
    # A deadline of 1 s on a call the server takes 20 s to answer: the caller's sidecar ends
    # it and answers DEADLINE_EXCEEDED itself (curl would wait the 20 s).
    cut = _curl_slow(mesh, tmp_path, "20", "1S")
    assert cut.get("grpc-status") == "4", cut
    assert float(cut["time_total"]) < 10, cut
    # And the server's handler saw its call cancelled: it stops working for nobody.
    [greeter] = [w for w in mesh.workloads if w.name == "greeter-1"]
    wait_for("the server to see the call cancelled",
             lambda: "greeter-1: Slow cancelled after" in greeter.output() or None)
    # grpcio's own deadline gives the same status through the mesh.
    assert _upstream_call(mesh, "slow", "20", "1")["status"] == "DEADLINE_EXCEEDED"

    # A deadline longer than the route's request timeout: the route's 1 s caps it.
    mesh.cli("apply", "-f", "-", stdin="""\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: greeter}
spec:
  parentRefs: [{name: greeter}]
  rules:
  - backendRefs: [{name: greeter}]
    timeouts: {request: 1s}
""")
    mesh.sync()
    capped = _upstream_call(mesh, "slow", "20", "30")
    assert capped["status"] == "DEADLINE_EXCEEDED" and capped["elapsed"] < 10, capped
    assert capped["details"] == "downstream duration timeout", capped  # Envoy's words
    # A call without a deadline gets the route's timeout, the same way.
    no_deadline = _curl_slow(mesh, tmp_path, "20", None)
    assert no_deadline.get("grpc-status") == "4" and float(no_deadline["time_total"]) < 10, \
        no_deadline
    # Within both, the call completes.
    assert _upstream_call(mesh, "slow", "0.2", "30")["status"] == "OK"
