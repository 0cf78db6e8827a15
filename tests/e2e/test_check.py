"""`tulle check`: a healthy mesh passes; a stopped control plane fails fast and skips the
rest; a called service without endpoints is named; a CA warning fails only with --strict."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.support.mesh import Mesh, wait_for
from tests.support.scenarios import books_and_web
from tulle.checks.render import CROSS

pytestmark = pytest.mark.envoy

CONTROL_PLANE_IDS = {"cp-running", "cp-reachable", "cp-authenticated", "cp-version",
                     "store-integrity", "store-readable", "replicas-answering",
                     "replicas-clock", "etcd-quorum", "hosts-reachable", "hosts-clock",
                     "identity-anchors", "identity-issuer",
                     "identity-algorithms", "identity-issuer-signed", "identity-expiry",
                     "identity-join-tokens"}
PROXY_IDS = {"proxies-connected", "proxies-synced", "proxies-streams", "proxies-certificates",
             "proxies-versions", "proxies-agent-versions",
             "telemetry-reports", "traffic-endpoints", "traffic-edges", "traffic-sidecars",
             "traffic-proxy-resources"}


def check(mesh: Mesh, *args: str) -> tuple[int, dict[str, Any]]:
    # The subprocess timeout bounds the command: it must finish on its own.
    result = mesh.cli("check", *args, "-o", "json", check=False, timeout=120)
    document: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, document


def by_id(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in document["checks"]}


def test_a_healthy_mesh_passes_every_check(mesh: Mesh) -> None:
    books_and_web(mesh)
    web = mesh.workloads[1]
    for _ in range(10):
        assert mesh.call(web, "http://books/")["status"] == 200

    code, document = check(mesh, "--proxy")
    checks = by_id(document)
    assert set(checks) == CONTROL_PLANE_IDS | PROXY_IDS
    assert {c["id"]: c["status"] for c in document["checks"] if c["status"] != "ok"} == {}
    assert code == 0 and document["ok"] is True
    assert checks["proxies-certificates"]["message"].startswith("2 serving certificates")
    assert checks["traffic-edges"]["message"].startswith("1 edges, none failing")
    assert checks["hosts-reachable"]["message"] == "1 host(s), all 2 agents answer"
    assert checks["hosts-clock"]["message"].startswith("1 host(s) within 1s")

    table = mesh.cli("check", "--proxy").stdout
    assert "control plane\n-------------\n√ the control plane is running" in table
    assert "data plane traffic" in table and CROSS not in table and "‼" not in table
    assert table.rstrip().endswith("Status check results are √")


def test_a_stopped_control_plane_fails_reachability_and_skips_the_rest(mesh: Mesh) -> None:
    # Frozen first: it holds its lock and accepts connections, but never answers.
    pid = mesh.status()["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        code, document = check(mesh, "--proxy")
    finally:
        os.kill(pid, signal.SIGCONT)
    checks = by_id(document)
    assert code == 1 and checks["cp-running"]["status"] == "ok"
    assert checks["cp-reachable"]["status"] == "failed"
    assert "did not answer in time" in checks["cp-reachable"]["message"]
    assert checks["store-integrity"]["status"] == "skipped"

    mesh.cli("down")
    code, document = check(mesh, "--proxy")
    checks = by_id(document)
    assert code == 1 and document["ok"] is False
    assert checks["cp-reachable"]["status"] == "failed"
    assert "not running" in checks["cp-reachable"]["message"]
    assert checks["cp-running"]["status"] == "failed"
    skipped = {i for i, c in checks.items() if c["status"] == "skipped"}
    assert skipped == (CONTROL_PLANE_IDS | PROXY_IDS) - {"cp-running", "cp-reachable"}
    assert all("cp-reachable failed" in checks[i]["message"] for i in skipped)

    table = mesh.cli("check", check=False, timeout=60)
    assert table.returncode == 1
    assert f"{CROSS} the control plane API answers" in table.stdout
    assert "see: docs/checks/control-plane.md#cp-reachable" in table.stdout

    mesh.up()  # back again: the same checks pass
    code, document = check(mesh)
    assert code == 0, document


def test_a_called_service_without_endpoints_is_named(mesh: Mesh) -> None:
    books_and_web(mesh)
    web, books = mesh.workloads[1], mesh.workloads[0]
    books.stop()
    mesh.wait_endpoints("web-1", "books", set())
    for _ in range(10):
        assert mesh.call(web, "http://books/")["status"] == 503

    def flagged() -> dict[str, dict[str, Any]] | None:
        checks = by_id(check(mesh, "--proxy")[1])
        return checks if checks["traffic-edges"]["status"] == "failed" else None

    # The calls reach the control plane with web-1's next report (every 5 s).
    checks = wait_for("check to flag the books edge", flagged, timeout=30, interval=1)
    endpoints = checks["traffic-endpoints"]
    assert endpoints["status"] == "failed"
    [service] = endpoints["details"]["services"]
    assert (service["service"], service["callers"]) == ("books", ["web-1.default"])
    assert service["reason"] in ("no ready instance", "no such service")
    assert "tulle diagnose books" in endpoints["message"]
    [failing] = checks["traffic-edges"]["details"]["edges"]
    assert (failing["source"], failing["service"]) == ("web-1.default", "books")
    assert failing["failures"] >= 10 and "503 service unavailable" in failing["kinds"]
    # The control plane and the remaining proxy are fine.
    assert all(checks[i]["status"] == "ok" for i in CONTROL_PLANE_IDS)
    assert checks["proxies-connected"]["status"] == "ok"

    code, document = check(mesh, "--proxy")
    assert code == 1 and document["ok"] is False


def _short_lived_pki(directory: Path, issuer_days: float) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def ca(name: str, key: ec.EllipticCurvePrivateKey, signer: x509.Name,
           signer_key: ec.EllipticCurvePrivateKey, days: float) -> x509.Certificate:
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(signer).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False),
                    critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(signer_key, hashes.SHA256()))

    root_key, issuer_key = ec.generate_private_key(ec.SECP256R1()), \
        ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corp root")])
    root = ca("corp root", root_key, root_name, root_key, 3650)
    issuer = ca("corp mesh issuer", issuer_key, root_name, root_key, issuer_days)
    paths = directory / "root.pem", directory / "issuer.pem", directory / "issuer.key"
    paths[0].write_bytes(root.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(issuer.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(issuer_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return paths


def test_a_ca_expiring_soon_warns_and_fails_only_with_strict(mesh: Mesh,
                                                             tmp_path: Path) -> None:
    mesh.run("books", name="books-1")
    root, issuer, key = _short_lived_pki(tmp_path, issuer_days=20)
    mesh.cli("certs", "import", "--root", str(root), "--issuer", str(issuer),
             "--issuer-key", str(key))
    mesh.sync()

    code, document = check(mesh, "--proxy")
    statuses = {c["id"]: c["status"] for c in document["checks"]}
    assert {i: s for i, s in statuses.items() if s != "ok"} == {"identity-expiry": "warning"}
    expiry = by_id(document)["identity-expiry"]
    assert "CN=corp mesh issuer expires in" in expiry["message"]
    assert expiry["docs"] == "docs/checks/identity.md#identity-expiry"
    assert code == 0 and document["ok"] is True

    strict_code, strict = check(mesh, "--proxy", "--strict")
    assert strict_code == 1 and strict["ok"] is False

    table = mesh.cli("check", check=False)
    assert table.returncode == 0
    assert "‼ the anchors and issuer have 60 days or more left" in table.stdout
    assert "tulle certs rotate issuer" in table.stdout
