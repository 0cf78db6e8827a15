"""xDS beyond loopback is bound to the workload's certificate: a stream must present the
node's credential *and* come from the node's own certificate. A copied bootstrap (the
credential) is not enough without the key, and another instance's certificate is not the
node's. Without the binding, a probe with a copied credential and any certificate of the mesh
passed authentication: it met only the one-stream-per-proxy rule, which lets a stream in
whenever the node's own Envoy is not connected (a restart, a stopped sidecar)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from tests.e2e.test_hosts import listening, other_host  # noqa: F401 (fixtures)
from tests.e2e.test_rotation import SHORT_LIVED
from tests.e2e.test_xds_handover import envoy_of
from tests.security.xds_client import open_tls_stream, xds_credential
from tests.support.mesh import Mesh, wait_for
from tulle.identity import xdsclient

pytestmark = pytest.mark.envoy


def _held(mesh: Mesh, name: str) -> tuple[bytes, bytes]:
    """The key and certificate a sidecar presents to the xDS port, from its agent's file."""
    secret_file = mesh.paths.workload_dir("default", name) / xdsclient.FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    [secret] = json.loads(secret_file.read_text())["resources"]
    held = secret["tls_certificate"]
    assert set(held["private_key"]) == {"filename"}  # the key is named, never copied
    return (Path(held["private_key"]["filename"]).read_bytes(),
            Path(held["certificate_chain"]["filename"]).read_bytes())


def _trusted(mesh: Mesh, name: str) -> bytes:
    """The roots a sidecar checks the control plane against: the file its agent keeps."""
    roots_file = mesh.paths.workload_dir("default", name) / xdsclient.ROOTS_FILE
    [secret] = json.loads(roots_file.read_text())["resources"]
    return str(secret["validation_context"]["trusted_ca"]["inline_string"]).encode()


def test_a_stream_must_come_from_the_nodes_own_certificate(listening: Mesh) -> None:  # noqa: F811
    mesh = listening
    mesh.run("books", name="books-1")
    mesh.run("web", name="web-1")
    mesh.sync()
    address = mesh.status()["xdsAddress"]
    roots = _trusted(mesh, "books-1")
    token = xds_credential(mesh, "books-1")
    node = "books-1.default"

    # The credential alone: the TLS handshake wants a client certificate.
    bare = open_tls_stream(address, token, node, roots=roots)
    assert bare.code == grpc.StatusCode.UNAVAILABLE and not bare.received, bare

    # Another instance's certificate (valid, from the same CA) with books-1's credential.
    key, chain = _held(mesh, "web-1")
    other = open_tls_stream(address, token, node, roots=roots, key=key, chain=chain)
    assert other.code == grpc.StatusCode.PERMISSION_DENIED and not other.received, other
    assert "web" in other.details and node in other.details
    refused = [e for e in mesh.api.get("/v1/xds/stream-events")
               if e["kind"] == "unauthenticated" and e["node"] == node]
    assert refused and "certificate" in refused[-1]["reason"]

    # books-1's own certificate passes the check, and meets the live stream it already has.
    key, chain = _held(mesh, "books-1")
    own = open_tls_stream(address, token, node, roots=roots, key=key, chain=chain)
    assert own.code == grpc.StatusCode.ALREADY_EXISTS and not own.received, own
    views = {p["node"]: p["state"] for p in mesh.api.get("/v1/proxies")}
    assert views[node] == "SYNCED"



def test_a_sidecar_reconnects_with_its_renewed_certificate(listening: Mesh) -> None:  # noqa: F811
    """Renewals replace the certificate the sidecar presents: an Envoy restarted after two of
    them (its first certificate is then neither the node's current one nor its previous one)
    gets its stream back."""
    mesh = listening
    mesh.cli("apply", "-f", "-", stdin=SHORT_LIVED)
    mesh.run("books", name="books-1")
    node = "books-1.default"

    def serial() -> str:
        return str(next(w["serial"] for w in mesh.api.get("/v1/identity/status")["workloads"]
                        if w["node"] == node))

    first = serial()
    seen = {first}
    wait_for("two renewals", lambda: seen.add(serial()) or len(seen) >= 3, timeout=30,
             interval=0.5)
    _, chain = _held(mesh, "books-1")
    presented = x509.load_pem_x509_certificate(chain)
    assert f"{presented.serial_number:x}" != first  # the file names a renewed certificate
    envoy_of(mesh, "books-1").kill()  # its agent starts it again, from the same bootstrap

    def synced_again() -> bool:
        views = {p["node"]: p for p in mesh.api.get("/v1/proxies")}
        return node in views and views[node]["state"] == "SYNCED" and \
            envoy_of(mesh, "books-1").is_running()

    wait_for("books-1's new Envoy to hold a synced stream", synced_again, timeout=30)
    refused = [e for e in mesh.api.get("/v1/xds/stream-events")
               if e["kind"] == "unauthenticated" and e["node"] == node]
    assert refused == [], refused
