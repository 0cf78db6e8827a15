"""What already held against a neighbour, kept held: the probes of a local user (``nobody``)
that failed before the hardening must keep failing.

- every tulle socket binds loopback only;
- the API refuses a missing or wrong token, and the state directory's secrets are not
  readable by another user;
- garbage bytes on every port get an error, never a crash.
"""

from __future__ import annotations

import ipaddress
import json

import psutil

from tests.security.support import probe
from tests.support.mesh import Mesh

HTTP_GET = """
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
c.request("GET", sys.argv[2], headers={"Authorization": "Bearer " + sys.argv[3]})
print(c.getresponse().status)
"""

READ_FILE = """
import sys
try:
    open(sys.argv[1], "rb").read()
    print("read")
except OSError as e:
    print(type(e).__name__)
"""

GARBAGE = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(bytes(range(256)) * 64)
try:
    print(len(s.recv(65536)))
except OSError as e:
    print(type(e).__name__)
"""


def listening_ports(pids: set[int]) -> list[tuple[str, int]]:
    return sorted({(c.laddr.ip, c.laddr.port) for c in psutil.net_connections("inet")
                   if c.status == psutil.CONN_LISTEN and c.pid in pids})


def mesh_processes(mesh: Mesh) -> set[int]:
    """The control plane, and every workload's agent, Envoy and application."""
    roots = [psutil.Process(int(mesh.status()["pid"]))]
    roots += [psutil.Process(w.process.pid) for w in mesh.workloads]
    return {p.pid for root in roots for p in (root, *root.children(recursive=True))}


def loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def test_every_socket_of_the_mesh_binds_loopback(exposed_mesh: Mesh) -> None:
    exposed_mesh.run("books", name="books-1")
    exposed_mesh.run("web", name="web-1")
    ports = listening_ports(mesh_processes(exposed_mesh))
    assert len(ports) >= 8, f"too few listening sockets found to prove anything: {ports}"
    assert [p for p in ports if not loopback(p[0])] == []


def test_a_neighbour_gets_nothing_from_the_api(exposed_mesh: Mesh) -> None:
    port = str(exposed_mesh.api_port)
    for token in ("", "wrong-token"):
        assert probe(HTTP_GET, port, "/v1/status", token).stdout.strip() == "401"
    assert probe(HTTP_GET, port, "/v1/resources/httproutes", "x").stdout.strip() == "401"


def test_a_neighbour_cannot_read_the_state_directory_secrets(exposed_mesh: Mesh) -> None:
    paths = exposed_mesh.paths
    secrets = [paths.token_file, paths.metrics_token_file, paths.ca_dir / "state.json"]
    secrets += sorted(paths.ca_dir.glob("*.key"))
    for secret in secrets:
        if secret.exists():
            result = probe(READ_FILE, str(secret)).stdout.strip()
            assert result == "PermissionError", (secret, result)


def test_garbage_on_the_api_port_is_refused_and_the_api_lives_on(exposed_mesh: Mesh) -> None:
    answer = probe(GARBAGE, str(exposed_mesh.api_port)).stdout.strip()
    assert answer.isdigit() or answer in ("ConnectionResetError", "TimeoutError"), answer
    status = exposed_mesh.status()
    assert json.dumps(status) and status["pid"]
