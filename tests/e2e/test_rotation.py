"""Certificate rotation under continuous load: leaves, the issuer and the root, with zero failed
requests."""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from pathlib import Path

import psutil
import pytest

from tests.support.load import Load
from tests.support.mesh import Mesh, wait_for
from tests.support.pki import bundle
from tests.support.ports import free_port

pytestmark = pytest.mark.envoy

# Traffic must flow (no rate is asserted: the machine is shared). A window of load is a
# number of requests, about two seconds of Load's 240 req/s, however long they take.
MIN_REQUESTS = 100
WINDOW = 480

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
    unhealthy: list[dict[str, object]] = []
    load = Load(port).start()

    def rotated_many_times() -> bool:
        for workload in mesh.api.get("/v1/identity/status")["workloads"]:
            serials[workload["node"]].add(workload["serial"])
            if not workload["chainsToBundle"] or workload["missedRenewal"]:
                unhealthy.append(workload)
        return len(serials) == 3 and all(len(s) >= 10 for s in serials.values()) \
            and handshakes(mesh, "books-1") - before >= 10

    # With 6 s certificates renewed at half-life, each workload goes through many of them,
    # and they are used: connections are recycled, so new handshakes keep happening.
    wait_for("10 certificates per workload and 10 new handshakes", rotated_many_times,
             timeout=120, interval=1.0)
    result = load.stop()
    result.report("load during leaf rotations")

    assert result.failures == [], result.failures[:10]
    assert result.ok >= MIN_REQUESTS, "no traffic flowed"
    assert unhealthy == [], unhealthy[:5]
    assert set(serials) == {"books-1.default", "books-2.default", "web-1.default"}
    current = {w["node"]: w["serial"] for w in mesh.api.get("/v1/identity/status")["workloads"]}
    certs = mesh.admin("books-1", "certs")
    assert current["books-1.default"] in certs.replace('"', "")
    assert envoy_pids(mesh) == pids, "rotation must never restart Envoy"


def rotate_under_load(mesh: Mesh, kind: str) -> tuple[dict[str, object], object]:
    port = start_mesh(mesh)
    load = Load(port).start()
    wait_for("a window of load", lambda: load.result.sent >= WINDOW, timeout=60)
    rotated = json.loads(mesh.cli("certs", "rotate", kind, "-o", "json").stdout)
    after = load.result.sent
    wait_for("a window of load after the rotation",
             lambda: load.result.sent >= after + WINDOW, timeout=60)
    result = load.stop()
    result.report(f"load during a rotation of the {kind}")
    assert result.failures == [], result.failures[:10]
    assert result.ok >= MIN_REQUESTS, "no traffic flowed"
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
