"""`tulle workload revoke`: one instance cut off in one push, with real Envoys and real TLS.

web-1 and web-2 are instances of one service (one SPIFFE ID). Revoking web-1 must cut off
web-1 alone: its certificate is refused by every callee (new handshakes, and the connections
it already had are drained), it leaves every proxy's endpoints and proxy-status, and it
cannot come back under its name; web-2, with the same identity, goes on working.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.test_identity import inbound_port, refused
from tests.support.mesh import Mesh, Workload, wait_for
from tests.support.pki import Identity, https_get

pytestmark = pytest.mark.envoy


def current_identity(mesh: Mesh, name: str) -> Identity:
    """The certificate and key web-N's sidecar presents now, as a thief would copy them."""
    directory = mesh.state_dir / "workloads" / f"{name}.default" / "identity"
    cert = max(directory.glob("cert-*.pem"), key=lambda p: int(p.stem.split("-")[1]))
    key = directory / cert.name.replace("cert-", "key-")
    return Identity(cert.read_text(), key.read_text())


def answers(mesh: Mesh, via: Workload) -> bool:
    try:
        return int(mesh.call(via, "http://books/ping", timeout=5)["status"]) == 200
    except OSError:
        return False


def test_a_revoked_instance_is_cut_off_and_its_sibling_is_not(mesh: Mesh, tmp_path: Path
                                                                ) -> None:
    books = mesh.run("books", name="books-1")
    web1, web2 = mesh.run("web", name="web-1"), mesh.run("web", name="web-2")
    mesh.sync()
    assert answers(mesh, web1) and answers(mesh, web2)  # web-1's pool holds a connection
    stolen, sibling = current_identity(mesh, "web-1"), current_identity(mesh, "web-2")
    port = inbound_port(mesh, "books-1")
    assert https_get(port, "/before", identity=stolen)[0] == 200, "valid until revoked"

    result = json.loads(mesh.cli("workload", "revoke", "web-1", "-o", "json").stdout)
    assert result["node"] == "web-1.default" and result["serials"], result
    assert result["synced"] is True, result

    # Every callee refuses the certificate from now on; web-2's, the same SPIFFE ID, works.
    refused(port, identity=stolen)
    assert https_get(port, "/sibling", identity=sibling)[0] == 200
    # web-1's connection from before the revocation is drained: its calls stop, for good.
    wait_for("web-1's calls to books to fail", lambda: not answers(mesh, web1), timeout=20)
    time.sleep(1)
    assert not answers(mesh, web1)
    assert answers(mesh, web2)

    # It is gone from the mesh's view, and cannot come back under its name.
    names = {w["name"] for w in json.loads(mesh.cli("get", "workloads", "-o", "json").stdout)}
    assert "web-1" not in names and {"web-2", "books-1"} <= names
    proxies = json.loads(mesh.cli("proxy-status", "-o", "json").stdout)
    assert "web-1.default" not in json.dumps(proxies)
    again = mesh.cli("run", "--service", "web", "--name", "web-1", "--", "true", check=False)
    assert again.returncode != 0
    assert "was revoked" in again.stderr and "--name" in again.stderr, again.stderr
    # The books proxy was not disturbed beyond the drain: it still answers web-2.
    assert mesh.workload(books.name)["state"] == "ready"
