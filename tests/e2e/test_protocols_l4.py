"""Connection-level figures through real Envoy: upgraded connections (WebSocket) and tcp
services reached by name through CONNECT, in `tulle stat` and the sidecars' Prometheus
metrics; and what `tulle diagnose` says when a tcp service's application cannot be reached."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_prometheus import agent_url, metrics_token, scrape
from tests.support import promtext
from tests.support.mesh import TULLE, Mesh, Workload, wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.envoy

APPS = Path(__file__).resolve().parents[1] / "apps"


@pytest.fixture(autouse=True)
def fast_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")


def _stat_row(mesh: Mesh, name: str) -> dict[str, Any]:
    stat = json.loads(mesh.cli("stat", "services", name, "-o", "json").stdout)
    [row] = [r for r in stat["services"] if r["name"] == name]
    return dict(row)


def test_one_websocket_session_is_one_upgraded_connection(mesh: Mesh) -> None:
    port = free_port()
    mesh.run("chat", name="chat-1", port=port,
             command=[sys.executable, str(APPS / "ws_echo.py"), str(port)])
    mesh.sync()
    result = mesh.cli("run", "--service", "client", "--", sys.executable,
                      str(APPS / "ws_client.py"), "http://chat/ws", "3", timeout=60)
    line = [x for x in result.stdout.splitlines() if x.startswith("{")][-1]
    assert json.loads(line)["answers"] == ["echo: m0", "echo: m1", "echo: m2"]

    # The session has closed: once its duration is reported, every figure is in.
    row = wait_for("chat's closed upgraded connection in telemetry",
                   lambda: (r := _stat_row(mesh, "chat"))["upgrades"]["closed"] and r)
    upgrades = row["upgrades"]
    assert (upgrades["opened"], upgrades["active"], upgrades["closed"]) == (1, 0, 1), upgrades
    assert upgrades["bytesIn"] > 0 and upgrades["bytesOut"] > 0, upgrades
    assert upgrades["durationSeconds"]["mean"] is not None, upgrades
    table = mesh.cli("stat", "services", "chat").stdout
    [upgraded] = [x for x in table.splitlines() if "upgraded (WebSocket)" in x]
    assert upgraded.split()[:5] == ["default", "chat", "upgraded", "(WebSocket)", "1"], table

    text = scrape(agent_url(mesh, "chat-1"), metrics_token(mesh))
    promtext.check_metrics(text, "chat-1's metrics")
    samples = promtext.parse(text)
    inbound = {"direction": "inbound", "workload": "chat-1"}
    assert promtext.value(samples, "tulle_upgraded_connections_total", **inbound) == 1
    assert promtext.value(samples, "tulle_upgraded_connections_active", **inbound) == 0
    assert promtext.value(samples, "tulle_upgraded_bytes_received_total", **inbound) > 0
    assert promtext.value(samples, "tulle_upgraded_bytes_sent_total", **inbound) > 0
    assert promtext.value(samples, "tulle_upgraded_connection_duration_seconds_count",
                          **inbound) == 1


TCP_SERVICE = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: lines}
spec: {protocol: tcp}
"""


def _connect_line(mesh: Mesh, line: str) -> list[str]:
    result = mesh.cli("run", "--service", "client", "--", sys.executable,
                      str(APPS / "connect_line.py"), "lines:7", line, timeout=60)
    return result.stdout.splitlines()


def test_a_tcp_service_shows_connections_and_bytes(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=TCP_SERVICE)
    port = free_port()
    mesh.run("lines", name="lines-1", port=port,
             command=[sys.executable, str(APPS / "tcp_echo.py"), str(port)])
    mesh.sync()
    for word in ("one", "two"):
        assert _connect_line(mesh, word)[-2:] == ["HTTP/1.1 200 OK", f"lines-1:{word}"]

    row = wait_for("lines' two connections in telemetry",
                   lambda: (r := _stat_row(mesh, "lines"))["l4"]["opened"] >= 2
                   and r["l4"]["bytesOut"] >= 24 and r)
    assert row["protocol"] == "tcp"
    # "one\n" and "two\n" in; "lines-1:one\n" and "lines-1:two\n" out.
    assert row["l4"] == {"opened": 2, "bytesIn": 8, "bytesOut": 24, "connectFailures": 0}, row
    table = mesh.cli("stat", "services", "lines").stdout
    [tcp] = [x for x in table.splitlines() if x.split()[:3] == ["default", "lines", "tcp"]]
    assert tcp.split()[3:7] == ["2", "0", "8B", "24B"], table

    samples = promtext.parse(scrape(agent_url(mesh, "lines-1"), metrics_token(mesh)))
    inbound = {"direction": "inbound", "workload": "lines-1"}
    assert promtext.value(samples, "tulle_connections_total", **inbound) == 2
    assert promtext.value(samples, "tulle_bytes_received_total", **inbound) == 8
    assert promtext.value(samples, "tulle_bytes_sent_total", **inbound) == 24


MISMATCHED = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: legacy}
spec: {protocol: http}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: lines}
spec:
  parentRefs: [{name: lines}]
  rules:
  - backendRefs: [{name: lines}]
    timeouts: {request: 1s}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: legacy}
spec:
  parentRefs: [{name: legacy}]
  rules:
  - backendRefs: [{name: legacy}]
    retry: {attempts: 2, grpcCodes: [unavailable]}
"""

SUBSET = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: greeter}
spec: {protocol: grpc}
---
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: greeter-v2}
spec: {protocol: http, selector: {service: greeter, version: v2}}
"""


def test_analyze_reports_mismatched_protocol_declarations(mesh: Mesh, tmp_path: Path) -> None:
    mesh.cli("apply", "-f", "-", stdin=TCP_SERVICE)
    # apply warns about what the change introduces, and stores it anyway (warnings only).
    applied = mesh.cli("apply", "-f", "-", stdin=MISMATCHED)
    assert "TUL0020" in applied.stdout + applied.stderr, applied
    assert "TUL0021" in applied.stdout + applied.stderr, applied

    result = mesh.cli("analyze", "-o", "json", check=False)
    view = json.loads(result.stdout)
    found = {(m["code"], m["resource"]["name"], m["field"]) for m in view["messages"]}
    assert {("TUL0020", "lines", "spec.parentRefs[0]"),
            ("TUL0021", "legacy", "spec.rules[0].retry.grpcCodes")} <= found, found
    [on_tcp] = [m for m in view["messages"] if m["code"] == "TUL0020"]
    assert "lines.default is a tcp service" in on_tcp["message"]
    assert on_tcp["docs"] == "docs/diagnostics/TUL0020.md"

    # Files alone: a subset declaring http under a grpc service, with no control plane.
    subset = tmp_path / "subset.yaml"
    subset.write_text(SUBSET)
    alone = subprocess.run([*TULLE, "--state-dir", str(tmp_path / "nowhere"), "analyze", "-f",
                            str(subset)], capture_output=True, text=True, timeout=60,
                           env=mesh.env(), check=False)
    assert alone.returncode == 0, alone  # a warning: the default threshold is error
    assert "TUL0019" in alone.stdout and f"{subset}:6" in alone.stdout, alone.stdout
    assert "which declares grpc" in alone.stdout, alone.stdout


def _first_finding(mesh: Mesh, code: str) -> dict[str, Any]:
    """Wait until diagnose reports ``code``; it must rank first in that same report."""
    reports: list[dict[str, Any]] = []

    def found() -> bool:
        result = mesh.cli("diagnose", "-o", "json", check=False)
        assert result.returncode in (0, 1), result.stderr
        reports.append(json.loads(result.stdout))
        return any(f["code"] == code for f in reports[-1]["findings"])

    wait_for(f"diagnose to report {code}", found, 30, interval=0.5)
    findings = reports[-1]["findings"]
    assert findings[0]["code"] == code, json.dumps(findings, indent=1)
    return dict(findings[0])


def _refused(port: int) -> bool:
    """A connection through a `--upstream` TCP proxy that finds no instance: accepted by the
    sidecar, then closed (or reset) before any byte comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        try:
            conn.sendall(b"x\n")
            return conn.recv(100) == b""
        except ConnectionResetError:
            return True


def test_a_tcp_application_listening_on_another_port_is_named(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=TCP_SERVICE)
    registered, actual = free_port(), free_port()
    log = mesh.root / "lines-1.out"
    with log.open("wb") as out:  # registered on one port, listening on another
        process = subprocess.Popen(
            [*TULLE, "--state-dir", str(mesh.state_dir), "run", "--service", "lines",
             "--name", "lines-1", "--port", str(registered), "--",
             sys.executable, str(APPS / "tcp_echo.py"), str(actual)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=mesh.env())
    mesh.workloads.append(Workload("lines-1", "lines", process, log, actual))
    upstream = free_port()
    mesh.run("client", name="client-1", extra=("--upstream", f"lines:{upstream}"))
    wait_for("lines-1 to register", lambda: mesh.workload("lines-1")["state"] == "starting")
    assert all(_refused(upstream) for _ in range(3))
    assert _connect_line(mesh, "x")[:2] == ["HTTP/1.1 503 Service Unavailable",
                                            "no healthy upstream"]

    finding = _first_finding(mesh, "TUL1002")
    assert finding["subject"] == "proxy/lines-1.default"
    assert f"port {registered}" in finding["cause"]
    assert "(a tcp service) found no instance to reach" in finding["cause"], finding
    assert any(line.startswith("client-1.default -> lines.default: 3 connections, 3 failed")
               for line in finding["evidence"]), finding["evidence"]
    assert "--port ACTUAL_PORT" in finding["fix"]
    # edges shows the refused connections too, though no request was ever made.
    edges = json.loads(mesh.cli("edges", "-o", "json").stdout)["edges"]
    [edge] = [e for e in edges if e["source"]["workload"] == "client-1"]
    assert (edge["destination"]["service"], edge["requests"], edge["errors"]) == (
        "lines", 0, {"no_healthy": 3}), edge


def test_a_killed_tcp_application_is_named(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=TCP_SERVICE)
    port = free_port()
    lines = mesh.run("lines", name="lines-1", port=port,
                     command=[sys.executable, str(APPS / "tcp_echo.py"), str(port)])
    upstream = free_port()
    mesh.run("client", name="client-1", extra=("--upstream", f"lines:{upstream}"))
    mesh.sync()
    with socket.create_connection(("127.0.0.1", upstream), timeout=5) as conn:
        conn.sendall(b"hi\n")
        assert conn.makefile("rb").readline() == b"lines-1:hi\n"
    [app] = subprocess.run(["pgrep", "-P", str(lines.process.pid), "-f", "tcp_echo.py"],
                           capture_output=True, text=True, check=True).stdout.split()
    os.kill(int(app), signal.SIGKILL)  # the instance leaves with its application
    wait_for("lines-1 to stop", lambda: lines.process.poll() is not None)
    wait_for("client-1's connections to be refused", lambda: _refused(upstream))
    assert all(_refused(upstream) for _ in range(3))

    finding = _first_finding(mesh, "TUL1001")
    assert finding["subject"] == "service/lines.default"
    assert "the mesh refused these connections itself" in finding["cause"], finding
    assert any("lines-1.default served lines.default in the window and is no longer "
               "registered" in line for line in finding["evidence"]), finding["evidence"]
