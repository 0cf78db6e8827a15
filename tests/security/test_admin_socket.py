"""Envoy's admin interface against a neighbour (issue 14): a local user (``nobody``) could drain
a workload's listeners, stop its Envoy and change its log levels through the admin port, TCP on
loopback with no credential. Now admin is a Unix socket (0600) in the workload's directory
(0700): no TCP port is left to try, and the socket cannot be opened. The agent, and the control
plane through the agent, still read and change what they should.
"""

from __future__ import annotations

import json
import stat
from typing import Any

import psutil
import pytest

from tests.security.support import probe
from tests.support.http import request
from tests.support.mesh import Mesh, Workload, wait_for
from tests.support.scenarios import books_and_web

pytestmark = pytest.mark.envoy

# What the neighbour tries: open the admin socket, then on every TCP port of the workload's
# sidecar and agent, the admin requests that did harm before.
ATTACK = """
import http.client, json, socket, sys
results = {}
unix = socket.socket(socket.AF_UNIX)
unix.settimeout(5)
try:
    unix.connect(sys.argv[1])
    results["socket"] = "connected"
except OSError as e:
    results["socket"] = type(e).__name__
for port in sys.argv[2:]:
    for method, path in (("POST", "/drain_listeners?inboundonly"),
                         ("POST", "/logging?level=trace"), ("POST", "/quitquitquit")):
        try:
            c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
            c.request(method, path)
            r = c.getresponse()
            results[port + " " + path] = [r.status, r.read(120).decode(errors="replace")]
        except Exception as e:
            results[port + " " + path] = type(e).__name__
print(json.dumps(results))
"""


def tree(workload: Workload) -> list[psutil.Process]:
    agent = psutil.Process(workload.process.pid)  # `tulle run` execs into the agent
    return [agent, *agent.children(recursive=True)]


def envoy_of(workload: Workload) -> psutil.Process | None:
    found = [p for p in tree(workload) if p.name() == "envoy"]
    return found[0] if found else None


def envoy_pids(mesh: Mesh) -> dict[str, int | None]:
    return {w.name: envoy.pid if (envoy := envoy_of(w)) else None for w in mesh.workloads}


def listening(process: psutil.Process) -> set[int]:
    return {c.laddr.port for c in process.net_connections("inet")
            if c.status == psutil.CONN_LISTEN}


def listener_ports(registration: dict[str, Any]) -> set[int]:
    """The ports of the listeners tulle configures: outbound, inbound, --upstream binds."""
    ports = {registration["outboundPort"], registration["inboundPort"]}
    ports |= {u["localPort"] for u in registration["upstreams"]}
    return {p for p in ports if p}


def levels(mesh: Mesh, name: str) -> dict[str, str]:
    status, text = mesh.envoy_admin(name, "POST", "/logging")
    assert status == 200, text
    return dict(line.strip().split(": ", 1) for line in text.splitlines()[1:] if ": " in line)


def test_no_tcp_admin_port_and_a_private_socket(exposed_mesh: Mesh) -> None:
    books_and_web(exposed_mesh)
    for workload in exposed_mesh.workloads:
        registration = exposed_mesh.workload(workload.name)
        assert "adminPort" not in registration
        # Envoy's only TCP sockets are the listeners the mesh gave it.
        envoy = envoy_of(workload)
        assert envoy is not None
        assert listening(envoy) == listener_ports(registration), registration
        directory = exposed_mesh.paths.workload_dir(workload.namespace, workload.name)
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        socket_mode = (directory / "admin.sock").stat().st_mode
        assert stat.S_ISSOCK(socket_mode) and stat.S_IMODE(socket_mode) == 0o600


def test_a_neighbour_can_neither_drain_nor_stop_nor_reconfigure_a_sidecar(
        exposed_mesh: Mesh) -> None:
    port = books_and_web(exposed_mesh)
    assert request(port, "/").status == 200
    pids = envoy_pids(exposed_mesh)
    before = {w.name: levels(exposed_mesh, w.name) for w in exposed_mesh.workloads}

    for workload in exposed_mesh.workloads:
        app = {workload.app_port} if workload.app_port else set()
        ports = set().union(*(listening(p) for p in tree(workload))) - app
        directory = exposed_mesh.paths.workload_dir(workload.namespace, workload.name)
        result = probe(ATTACK, str(directory / "admin.sock"), *map(str, sorted(ports)))
        assert result.returncode == 0, result.stderr
        attempts = json.loads(result.stdout)
        assert attempts["socket"] == "PermissionError", attempts

    # Every sidecar still runs the same Envoy, at the same log levels, and serves the mesh
    # (a drained inbound listener would answer 503; a new connection for each request).
    assert envoy_pids(exposed_mesh) == pids, f"an Envoy was stopped: {attempts}"
    after = {w.name: levels(exposed_mesh, w.name) for w in exposed_mesh.workloads}
    assert after == before, f"log levels changed: {attempts}"
    assert [request(port, "/").status for _ in range(10)] == [200] * 10


def test_the_agent_and_the_control_plane_still_use_admin(exposed_mesh: Mesh,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")  # agents report quickly
    mesh = exposed_mesh
    port = books_and_web(mesh)
    assert [request(port, "/").status for _ in range(10)] == [200] * 10

    # proxy-config: the live config, read through the agent.
    config = json.loads(mesh.cli("proxy-config", "all", "books-1", "-o", "json").stdout)
    assert config["bootstrap"]["admin"] == "unix:admin.sock"
    assert {row["name"] for row in config["listeners"]} >= {"inbound", "outbound"}

    # proxy log-level: the one change the agent makes for the control plane.
    mesh.cli("proxy", "log-level", "books-1", "upstream=debug")
    assert levels(mesh, "books-1")["upstream"] == "debug"

    # check --proxy reads secrets (config_dump) and versions (server_info) of every proxy.
    result = mesh.cli("check", "--proxy", "-o", "json", check=False, timeout=120)
    checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
    for check_id in ("proxies-certificates", "proxies-versions"):
        assert checks[check_id]["status"] == "ok", checks[check_id]

    # Telemetry: the agents read their Envoy's stats and report them.
    def counted() -> bool:
        rows = mesh.api.get("/v1/telemetry/services?window=300&name=books")["services"]
        return bool(rows) and rows[0]["requests"] == 10
    wait_for("books' 10 requests in the telemetry", counted, timeout=20)
    text = mesh.cli("stat", "services", "books", "--window", "5m").stdout
    assert "books" in text and "100.00%" in text, text
