"""Certificate rotation under continuous load: leaves, the issuer and the root, with zero failed
requests."""

from __future__ import annotations

import json
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import psutil
import pytest

from tests.support.load import Load
from tests.support.mesh import Mesh, free_port
from tests.support.pki import bundle

pytestmark = pytest.mark.envoy

SHORT_LIVED = """\
apiVersion: tulle.io/v1alpha1
kind: Mesh
metadata: {name: default}
spec:
  certificates: {workloadLifetime: 6s}
"""


def start_mesh(mesh: Mesh) -> int:
    """books x2 and a client whose local port 'port' leads to books; returns that port."""
    port = free_port()
    mesh.run("books", name="books-1")
    mesh.run("books", name="books-2")
    mesh.run("web", name="web-1", extra=("--upstream", f"books:{port}"))
    mesh.wait_endpoints("web-1", "books", {"books-1", "books-2"})
    return port


def envoy_pids(mesh: Mesh) -> dict[str, list[int]]:
    return {w["name"]: [p.pid for p in psutil.Process(w["pid"]).children()
                        if p.name() == "envoy"] for w in mesh.api.get("/v1/workloads")}


def handshakes(mesh: Mesh, name: str) -> int:
    return sum(v for k, v in mesh.stats(name).items()
               if k.startswith("listener.") and k.endswith(".ssl.handshake"))


def test_leaf_rotation_under_load(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=SHORT_LIVED)
    port = start_mesh(mesh)
    before = handshakes(mesh, "books-1")
    pids = envoy_pids(mesh)
    serials: dict[str, set[str]] = defaultdict(set)
    load = Load(port).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for workload in mesh.api.get("/v1/identity/status")["workloads"]:
            serials[workload["node"]].add(workload["serial"])
            assert workload["chainsToBundle"] and not workload["missedRenewal"], workload
        time.sleep(1)
    result = load.stop()

    assert result.failures == [], result.failures[:10]
    assert result.seconds >= 60 and result.rate >= 200, (result.sent, result.seconds)
    # With 6 s certificates renewed at half-life, each workload went through many of them...
    assert set(serials) == {"books-1.default", "books-2.default", "web-1.default"}
    assert all(len(s) >= 10 for s in serials.values()), {n: len(s) for n, s in serials.items()}
    # ...and they were used: connections are recycled, so new handshakes kept happening.
    assert handshakes(mesh, "books-1") - before >= 10
    current = {w["node"]: w["serial"] for w in mesh.api.get("/v1/identity/status")["workloads"]}
    certs = mesh.admin("books-1", "certs")
    assert current["books-1.default"] in certs.replace('"', "")
    assert envoy_pids(mesh) == pids, "rotation must never restart Envoy"


def rotate_under_load(mesh: Mesh, kind: str) -> tuple[dict[str, object], object]:
    port = start_mesh(mesh)
    load = Load(port).start()
    time.sleep(2)
    rotated = json.loads(mesh.cli("certs", "rotate", kind, "-o", "json").stdout)
    time.sleep(2)
    result = load.stop()
    assert result.failures == [], result.failures[:10]
    assert result.rate >= 200, (result.sent, result.seconds)
    return rotated, result


def test_issuer_rotation_under_load(mesh: Mesh) -> None:
    status = mesh.api.get("/v1/identity/status")
    rotated, _ = rotate_under_load(mesh, "issuer")
    assert [s["stage"] for s in rotated["stages"]] == [1, 2, 3]  # type: ignore[index]
    after = mesh.api.get("/v1/identity/status")
    assert [a["id"] for a in after["anchors"]] == [a["id"] for a in status["anchors"]]
    assert after["issuer"]["id"] != status["issuer"]["id"]
    assert {w["issuerId"] for w in after["workloads"]} == {after["issuer"]["id"]}
    assert mesh.cli("certs", "status", check=False).returncode == 0


def test_root_rotation_under_load(mesh: Mesh, tmp_path: Path) -> None:
    status = mesh.api.get("/v1/identity/status")
    old_root = status["anchors"][0]["id"]
    rotate_under_load(mesh, "root")
    after = mesh.api.get("/v1/identity/status")
    assert [a["id"] for a in after["anchors"]] != [old_root]
    assert len(after["anchors"]) == 1
    assert all(w["chainsToBundle"] for w in after["workloads"])
    # Independent check: a workload certificate verifies against the new bundle only.
    chain = mesh.state_dir / "workloads" / "books-1.default" / "identity"
    cert = max(chain.glob("cert-*.pem"), key=lambda p: int(p.stem.split("-")[1])).read_text()
    leaf, issuer = cert.split("-----END CERTIFICATE-----")[:2]
    (tmp_path / "leaf.pem").write_text(leaf + "-----END CERTIFICATE-----\n")
    (tmp_path / "issuer.pem").write_text(issuer.strip() + "\n-----END CERTIFICATE-----\n")
    (tmp_path / "bundle.pem").write_text(bundle(mesh.state_dir))
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "bundle.pem"),
                               "-untrusted", str(tmp_path / "issuer.pem"),
                               str(tmp_path / "leaf.pem")], capture_output=True, text=True,
                              check=False)
    assert verified.returncode == 0, verified.stderr
