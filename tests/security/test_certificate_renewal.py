"""Renewals on the identity port: the key's location is the control plane's, a certificate
renews only its own instance, and a join token is spent by any request that presents it.

Probed before the fix: a renewal accepted a ``keyPath`` from the caller; books-1's certificate
renewed books-2 (they share a SPIFFE ID: same service account) with the key path set to a file
of the caller's choosing; the control plane pushed that path to books-2's Envoy, which NACKed
its secrets (with ``/etc/hostname`` as the key) while `tulle certs status` said ok; and a join
token presented for an unknown node was not spent.

Each probe below is sent in the old request format (``keyPath``) and, where it matters, in
the current one (``keyGeneration``), so that it shows the hole on the old code and proves it
closed on the new one.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.support.mesh import Mesh
from tests.support.pki import bundle
from tulle.agent.keygen import make_key_and_csr
from tulle.settings import read_token

pytestmark = pytest.mark.envoy

BOOKS_ID = "spiffe://tulle.local/ns/default/sa/books"


def identity_dir(mesh: Mesh, name: str) -> Path:
    return mesh.paths.workload_dir("default", name) / "identity"


def current_credentials(mesh: Mesh, name: str) -> tuple[Path, Path]:
    """The certificate and key a workload's agent renews with (the newest generation)."""
    directory = identity_dir(mesh, name)
    generation = max(int(m.group(1)) for p in directory.glob("cert-*.pem")
                     if (m := re.fullmatch(r"cert-(\d+)\.pem", p.name)))
    return directory / f"cert-{generation}.pem", directory / f"key-{generation}.pem"


def ask(mesh: Mesh, body: dict[str, Any], *, client: tuple[Path, Path] | None = None,
        token: str | None = None) -> tuple[int, dict[str, Any]]:
    """POST a signing request to the identity port, as any local process can."""
    context = ssl.create_default_context(cadata=bundle(mesh.state_dir))
    context.check_hostname = False
    if client is not None:
        context.load_cert_chain(*client)
    connection = http.client.HTTPSConnection("127.0.0.1", mesh.identity_port, context=context,
                                             timeout=20)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request("POST", "/v1/identity/certificates", json.dumps(body), headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def held_serials(mesh: Mesh) -> dict[str, str]:
    status = mesh.api.get("/v1/identity/status")
    return {c["node"]: c["serial"] for c in status["workloads"]}


def pushed_key_path(mesh: Mesh, node: str) -> str:
    """The key file the control plane points the proxy's identity secret at."""
    intended = mesh.api.get(f"/v1/proxies/{node}/intended")
    secret = intended["resources"]["SDS"]["tulle-identity"]
    return str(secret["tls_certificate"]["private_key"]["filename"])


def assert_unharmed(mesh: Mesh, names: tuple[str, ...], serials: dict[str, str]) -> None:
    mesh.sync()
    assert mesh.nacks() == []
    assert {n: held_serials(mesh)[n] for n in serials} == serials
    for name in names:
        assert Path(pushed_key_path(mesh, f"{name}.default")).parent == identity_dir(mesh, name)
    assert mesh.cli("certs", "status", check=False).returncode == 0


def test_a_renewal_cannot_choose_the_key_path(exposed_mesh: Mesh, tmp_path: Path) -> None:
    mesh = exposed_mesh
    mesh.run("books", name="books-1")
    serials = held_serials(mesh)
    own = current_credentials(mesh, "books-1")  # even the workload's own certificate
    csr = make_key_and_csr(tmp_path / "mine.key", BOOKS_ID).decode()
    for body in ({"node": "books-1.default", "csr": csr, "keyPath": "/etc/hostname"},
                 {"node": "books-1.default", "csr": csr, "keyPath": "/etc/hostname",
                  "keyGeneration": 2},
                 {"node": "books-1.default", "csr": csr, "keyGeneration": "../../etc/hostname"}):
        status, answer = ask(mesh, body, client=own)
        assert status == 400, (body, answer)
    assert "keyPath is not accepted" in ask(mesh, {
        "node": "books-1.default", "csr": csr, "keyPath": "/etc/hostname"},
        client=own)[1]["error"]["message"]
    assert_unharmed(mesh, ("books-1",), serials)


def test_a_siblings_certificate_cannot_renew_another_instance(exposed_mesh: Mesh,
                                                              tmp_path: Path) -> None:
    mesh = exposed_mesh
    mesh.run("books", name="books-1")
    mesh.run("books", name="books-2")  # same service account: the same SPIFFE ID
    serials = held_serials(mesh)
    sibling = current_credentials(mesh, "books-1")
    csr = make_key_and_csr(tmp_path / "theirs.key", BOOKS_ID).decode()
    for body in ({"node": "books-2.default", "csr": csr, "keyPath": "/etc/hostname"},
                 {"node": "books-2.default", "csr": csr, "keyGeneration": 9}):
        status, answer = ask(mesh, body, client=sibling)
        assert status == 403, (body, answer)
        assert "not books-2.default's" in answer["error"]["message"]
    assert_unharmed(mesh, ("books-1", "books-2"), serials)


def test_a_join_token_presented_for_an_unknown_node_is_spent(exposed_mesh: Mesh,
                                                             tmp_path: Path) -> None:
    mesh = exposed_mesh
    mesh.run("books", name="books-1")
    serials = held_serials(mesh)
    # A fresh join token for books-1, as its agent gets one to enrol again.
    token = mesh.api.post("/v1/agent/workloads/books-1.default/join-token")["joinToken"]
    assert read_token(mesh.paths) != token
    csr = make_key_and_csr(tmp_path / "k.key", BOOKS_ID).decode()
    status, answer = ask(mesh, {"node": "ghost-1.default", "csr": csr,
                                "keyPath": str(tmp_path / "k.key"), "keyGeneration": 1},
                         token=token)
    assert status == 404, answer
    for body in ({"node": "books-1.default", "csr": csr, "keyPath": str(tmp_path / "k.key")},
                 {"node": "books-1.default", "csr": csr, "keyGeneration": 2}):
        status, answer = ask(mesh, body, token=token)
        assert status == 403, (body, answer)
        assert "already used" in answer["error"]["message"]
    assert_unharmed(mesh, ("books-1",), serials)
