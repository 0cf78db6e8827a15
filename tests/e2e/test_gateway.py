"""The ingress gateway through real Envoy: an outside client with TLS reaches a mesh service
through `tulle gateway run`, which calls it over mTLS with its own identity (the service sees
it, AuthorizationPolicies treat it like any caller); its routes come from HTTPRoutes that name
the Gateway; it shows in edges and tap; and bad starts are refused with the fix."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.mesh import TULLE, Mesh, Workload, wait_for
from tests.support.outside import ServerCert, server_cert
from tests.support.ports import free_port
from tests.support.tap import Tap

pytestmark = pytest.mark.envoy

HOST = "shop.example.com"
EDGE_ID = "spiffe://tulle.local/ns/default/sa/edge"


@pytest.fixture(autouse=True)
def fast_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")


def gateway_yaml(port: int, protocol: str = "HTTPS") -> str:
    return yaml.safe_dump({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "edge", "namespace": "default"},
        "spec": {"listeners": [{"name": protocol.lower(), "port": port,
                                "protocol": protocol}]}})


ROUTE = yaml.safe_dump({
    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
    "metadata": {"name": "shop", "namespace": "default"},
    "spec": {"parentRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io",
                             "name": "edge"}],
             "hostnames": [HOST],
             "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/books"}}],
                        "backendRefs": [{"name": "books"}]}]}})


def tls_files(tmp_path: Path, cert: ServerCert) -> tuple[Path, Path]:
    chain, key = tmp_path / "edge.crt", tmp_path / "edge.key"
    chain.write_text(cert.chain_pem)
    key.write_text(cert.key_pem)
    key.chmod(0o600)
    return chain, key


def start_gateway(mesh: Mesh, port: int, *extra: str) -> Workload:
    log = mesh.root / "edge-gw.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*TULLE, "--state-dir", str(mesh.state_dir), "gateway", "run", "--name", "edge",
             "--port", str(port), "--listen-address", "127.0.0.1", *extra],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=mesh.env())
    gateway = Workload("edge-gw", "edge", process, log)
    mesh.workloads.append(gateway)
    wait_for("the gateway to connect", lambda: _connected(mesh, gateway), 20.0)
    return gateway


def _connected(mesh: Mesh, gateway: Workload) -> bool:
    if gateway.process.poll() is not None:
        raise AssertionError(f"the gateway exited:\n{gateway.output()}")
    return any(w["name"] == "edge-gw" and w["proxyConnected"]
               for w in mesh.api.get("/v1/workloads"))


def https_get(port: int, path: str, ca_pem: str, host: str = HOST) -> tuple[int, Any]:
    context = ssl.create_default_context(cadata=ca_pem)
    # The certificate is for HOST: verify it against that name, as a client resolving HOST
    # to this address would.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port),
                                                                   timeout=10),
                                          server_hostname=HOST)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode(errors="replace")


def xfcc(body: dict[str, Any]) -> str:
    return str({k.lower(): v for k, v in body["headers"].items()}.get(
        "x-forwarded-client-cert", ""))


def test_an_outside_client_reaches_a_mesh_service_through_the_gateway(
        mesh: Mesh, tmp_path: Path) -> None:
    mesh.run("books", name="books-1")
    cert = server_cert(HOST)
    chain, key = tls_files(tmp_path, cert)
    port = free_port()
    mesh.cli("apply", "-f", "-", stdin=gateway_yaml(port) + "---\n" + ROUTE)
    start_gateway(mesh, port, "--tls-cert", str(chain), "--tls-key", str(key))
    mesh.sync()

    def answered() -> Any:
        try:
            status, reply = https_get(port, "/books/1", cert.ca_pem)
        except OSError:
            return None  # not listening yet
        return reply if status == 200 else None
    body = wait_for("the gateway to answer", answered)
    assert body["workload"] == "books-1" and body["path"] == "/books/1"
    # books saw the gateway's own mesh identity, verified by its sidecar.
    assert f"URI={EDGE_ID}" in xfcc(body), body
    # Another host, or a path no rule matches: the gateway's 404.
    assert https_get(port, "/books/1", cert.ca_pem, host="other.example.com")[0] == 404
    assert https_get(port, "/admin", cert.ca_pem)[0] == 404

    # An AuthorizationPolicy treats the gateway like any caller, by its service account.
    policy = {"apiVersion": "tulle.io/v1alpha1", "kind": "AuthorizationPolicy",
              "metadata": {"name": "books-callers", "namespace": "default"},
              "spec": {"targetRef": {"kind": "Service", "name": "books"}, "action": "ALLOW",
                       "rules": [{"from": [{"service": "web"}]}]}}
    mesh.cli("apply", "-f", "-", stdin=yaml.safe_dump(policy))
    mesh.sync()
    mesh.wait_quiescent("books-1")
    assert https_get(port, "/books/1", cert.ca_pem)[0] == 403
    policy["spec"]["rules"] = [{"from": [{"identity": EDGE_ID}]}]
    mesh.cli("apply", "-f", "-", stdin=yaml.safe_dump(policy))
    mesh.sync()
    mesh.wait_quiescent("books-1")

    tap = Tap.start(mesh, "workload/edge-gw")
    try:
        assert https_get(port, "/books/2", cert.ca_pem)[0] == 200
        (arrival,) = tap.wait("the gateway's request in tap", path="/books/2")
    finally:
        tap.stop()
    assert arrival.event["upstreamCluster"] == "outbound|books.default"

    def edge() -> dict[str, Any] | None:
        edges = json.loads(mesh.cli("edges", "-o", "json").stdout)["edges"]
        return next((e for e in edges if e["source"]["workload"] == "edge-gw"
                     and e["destination"].get("service") == "books"), None)
    found = wait_for("the gateway's edge to books", edge)
    assert found["mtls"] is True and found["source"]["identity"] == EDGE_ID


def test_a_plain_http_gateway(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    port = free_port()
    mesh.cli("apply", "-f", "-", stdin=gateway_yaml(port, "HTTP") + "---\n" + ROUTE)
    start_gateway(mesh, port)
    mesh.sync()

    def get() -> tuple[int, Any] | None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", "/books/x", headers={"Host": f"{HOST}:{port}"})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        except (OSError, ValueError):
            return None
        finally:
            connection.close()
    status, body = wait_for("the plain gateway to answer", get)
    assert status == 200 and body["workload"] == "books-1"


@pytest.mark.parametrize(("setup", "args", "message"), [
    ("none", (), "there is no Gateway default/edge"),
    ("https", (), "is HTTPS: give its certificate and key"),
    ("https", ("--tls-cert", "CHAIN"), "--tls-cert and --tls-key go together"),
    ("https", ("--tls-cert", "CHAIN", "--tls-key", "OPEN_KEY"), "other users can read it"),
    ("other-port", ("--tls-cert", "CHAIN", "--tls-key", "KEY"), "has no listener on port"),
], ids=["no gateway", "https without files", "cert without key", "readable key",
        "wrong port"])
def test_bad_starts_are_refused_with_the_fix(mesh: Mesh, tmp_path: Path, setup: str,
                                             args: tuple[str, ...], message: str) -> None:
    port = free_port()
    chain, key = tls_files(tmp_path, server_cert(HOST))
    open_key = tmp_path / "open.key"
    open_key.write_text(key.read_text())
    open_key.chmod(0o644)
    if setup != "none":
        mesh.cli("apply", "-f", "-",
                 stdin=gateway_yaml(port + 1 if setup == "other-port" else port))
    files = {"CHAIN": str(chain), "KEY": str(key), "OPEN_KEY": str(open_key)}
    result = mesh.cli("gateway", "run", "--name", "edge", "--port", str(port),
                      *(files.get(a, a) for a in args), check=False, timeout=30)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert not any(w["name"] == "edge-gw" for w in mesh.api.get("/v1/workloads"))
