"""Workload identity and mTLS, with real Envoys and real TLS."""

from __future__ import annotations

import datetime as dt
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mesh import Mesh
from tests.support.pki import (
    bundle,
    foreign_identity,
    http_get,
    https_get,
    mesh_identity,
    now,
)

pytestmark = pytest.mark.envoy

PERMISSIVE_BOOKS = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books}
spec:
  mtls: {mode: PERMISSIVE}
"""


def inbound_port(mesh: Mesh, name: str) -> int:
    return int(mesh.workload(name)["inboundPort"])


def refused(port: int, **kwargs: object) -> str:
    """How a direct request to a sidecar's inbound port failed; fails if it succeeded."""
    try:
        status, body = (https_get(port, "/", **kwargs) if "identity" in kwargs  # type: ignore[arg-type]
                        else http_get(port, "/"))
    except (ssl.SSLError, ConnectionError, OSError) as exc:
        return type(exc).__name__
    raise AssertionError(f"the request was accepted: {status} {body}")


def test_strict_refuses_plaintext_foreign_and_expired_certificates(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    port = inbound_port(mesh, "books-1")
    caller = "spiffe://tulle.local/ns/default/sa/web"
    # A certificate from the mesh's own issuer, valid now, is accepted: the refusals below are
    # about what is wrong with each client, not about the test client itself.
    valid = mesh_identity(mesh.state_dir, caller, now() - dt.timedelta(minutes=1),
                          now() + dt.timedelta(hours=1))
    status, body = https_get(port, "/ok", identity=valid)
    assert status == 200 and body["workload"] == "books-1"

    refused(port)  # plaintext straight to a STRICT inbound port
    refused(port, identity=None)  # TLS without a client certificate
    refused(port, identity=foreign_identity(caller))  # right name, wrong CA
    expired = mesh_identity(mesh.state_dir, caller, now() - dt.timedelta(hours=2),
                            now() - dt.timedelta(hours=1))
    refused(port, identity=expired)
    outsider = mesh_identity(mesh.state_dir, "spiffe://other.domain/ns/default/sa/web",
                             now() - dt.timedelta(minutes=1), now() + dt.timedelta(hours=1))
    refused(port, identity=outsider)  # signed by our issuer, but not of our trust domain


def test_permissive_accepts_plaintext_and_mtls(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=PERMISSIVE_BOOKS)
    mesh.run("books", name="books-1")
    client = mesh.run("web", name="web-1")
    port = inbound_port(mesh, "books-1")
    status, body = http_get(port, "/plain", headers={
        "x-forwarded-client-cert": "URI=spiffe://tulle.local/ns/default/sa/admin"})
    assert status == 200 and body["workload"] == "books-1"
    # A plaintext caller cannot claim an identity.
    assert "x-forwarded-client-cert" not in {k.lower() for k in body["headers"]}
    identity = mesh_identity(mesh.state_dir, "spiffe://tulle.local/ns/default/sa/legacy",
                             now() - dt.timedelta(minutes=1), now() + dt.timedelta(hours=1))
    status, body = https_get(port, "/tls", identity=identity)
    assert status == 200
    assert "URI=spiffe://tulle.local/ns/default/sa/legacy" in body["headers"][
        "x-forwarded-client-cert"]
    # And mesh traffic still flows, over mTLS.
    assert mesh.call(client, "http://books/mesh")["status"] == 200


def test_callee_sees_the_verified_caller_and_spoofs_are_stripped(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    code = ("import json, urllib.request;"
            "r = urllib.request.Request('http://books/who', headers={"
            "'x-forwarded-client-cert': 'URI=spiffe://tulle.local/ns/default/sa/admin'});"
            "print(json.load(urllib.request.urlopen(r, timeout=5))['headers']"
            "['x-forwarded-client-cert'])")
    result = mesh.cli("run", "--service", "web", "--service-account", "frontend", "--",
                      sys.executable, "-c", code, check=False)
    assert result.returncode == 0, result.stderr
    xfcc = result.stdout.strip()
    assert "URI=spiffe://tulle.local/ns/default/sa/frontend" in xfcc
    assert "By=spiffe://tulle.local/ns/default/sa/books" in xfcc
    assert "sa/admin" not in xfcc


def test_certificates_pass_independent_validation(mesh: Mesh, tmp_path: Path) -> None:
    from spiffe import X509Svid  # type: ignore[attr-defined]

    mesh.run("books", name="books-1")
    identity_dir = mesh.state_dir / "workloads" / "books-1.default" / "identity"
    cert = max(identity_dir.glob("cert-*.pem"), key=lambda p: int(p.stem.split("-")[1]))
    key = identity_dir / cert.name.replace("cert-", "key-")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert oct(identity_dir.stat().st_mode & 0o777) == "0o700"
    svid = X509Svid.parse(cert.read_bytes(), key.read_bytes())
    assert str(svid.spiffe_id) == "spiffe://tulle.local/ns/default/sa/books"

    pems = cert.read_text().split("-----END CERTIFICATE-----")
    leaf, issuer = (tmp_path / "leaf.pem"), (tmp_path / "issuer.pem")
    leaf.write_text(pems[0] + "-----END CERTIFICATE-----\n")
    issuer.write_text(pems[1].strip() + "\n-----END CERTIFICATE-----\n")
    roots = tmp_path / "bundle.pem"
    roots.write_text(bundle(mesh.state_dir))
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(roots), "-untrusted",
                               str(issuer), str(leaf)], capture_output=True, text=True,
                              check=False)
    assert verified.returncode == 0, verified.stderr
    assert ": OK" in verified.stdout


MESH_MODE = """\
apiVersion: tulle.io/v1alpha1
kind: Mesh
metadata: {{name: default}}
spec:
  mtls: {{mode: {mode}}}
"""


def test_mesh_wide_mode_changes_live(mesh: Mesh) -> None:
    mesh.run("authors", name="authors-1")
    client = mesh.run("web", name="web-1")
    port = inbound_port(mesh, "authors-1")
    refused(port)
    mesh.cli("apply", "-f", "-", stdin=MESH_MODE.format(mode="PERMISSIVE"))
    mesh.sync()
    assert http_get(port, "/")[0] == 200
    listed = mesh.cli("get", "meshes").stdout
    assert "Mesh" in listed and "default" in listed
    mesh.cli("apply", "-f", "-", stdin=MESH_MODE.format(mode="STRICT"))
    mesh.sync()
    refused(port)
    assert mesh.call(client, "http://authors/")["status"] == 200
    assert "STRICT" in mesh.cli("get", "mesh", "default", "-o", "yaml").stdout
