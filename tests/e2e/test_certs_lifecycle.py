"""The certificate lifecycle around rotation: resuming, importing a PKI, warnings, renewals."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.mesh import Mesh, wait_for
from tulle.identity.ca import CertificateAuthority, Rotation

pytestmark = pytest.mark.envoy


def test_an_interrupted_rotation_resumes_after_a_restart(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    client = mesh.run("web", name="web-1")
    old_issuer = mesh.api.get("/v1/identity/status")["issuer"]["id"]
    mesh.cli("down")
    # As if the control plane died during stage 2 of an issuer rotation.
    ca = CertificateAuthority.open(mesh.state_dir / "ca", "tulle.local")
    issuer = ca.new_issuer(ca.anchors[0])
    ca.commit(ca.with_rotation(Rotation("issuer", 2, ca.state.anchors, ca.state.issuer,
                                        issuer.id, None, time.time())))
    assert mesh.api_port  # the same ports come back with `up`
    mesh.up()

    def finished() -> bool:
        status = mesh.api.get("/v1/identity/status")
        return status["rotation"] is None and {
            w["issuerId"] for w in status["workloads"]} == {issuer.id}

    wait_for("the rotation to resume and finish", finished, timeout=40)
    assert mesh.api.get("/v1/identity/status")["issuer"]["id"] == issuer.id != old_issuer
    mesh.sync()
    got = mesh.call(client, "http://books/")
    assert got["status"] == 200, got


def _pki(tmp: Path, issuer_days: float) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def ca_cert(name: str, key: ec.EllipticCurvePrivateKey, signer_name: x509.Name,
                signer_key: ec.EllipticCurvePrivateKey, days: float) -> x509.Certificate:
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(signer_name).public_key(key.public_key())
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
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    signer_key.public_key()), critical=False)
                .sign(signer_key, hashes.SHA256()))

    root_key, issuer_key = ec.generate_private_key(ec.SECP256R1()), \
        ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corp root")])
    root = ca_cert("corp root", root_key, root_name, root_key, 3650)
    issuer = ca_cert("corp mesh issuer", issuer_key, root_name, root_key, issuer_days)
    paths = tmp / "root.pem", tmp / "issuer.pem", tmp / "issuer.key"
    paths[0].write_bytes(root.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(issuer.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(issuer_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return paths


def test_import_own_pki_then_warn_before_it_expires(mesh: Mesh, tmp_path: Path) -> None:
    mesh.run("books", name="books-1")
    client = mesh.run("web", name="web-1")
    root, issuer, key = _pki(tmp_path, issuer_days=10)
    dry = json.loads(mesh.cli("certs", "import", "--root", str(root), "--issuer", str(issuer),
                              "--issuer-key", str(key), "--dry-run", "-o", "json").stdout)
    assert dry["kind"] == "root" and len(dry["plan"]) == 3
    mesh.cli("certs", "import", "--root", str(root), "--issuer", str(issuer),
             "--issuer-key", str(key))
    status = mesh.api.get("/v1/identity/status")
    assert [a["subject"] for a in status["anchors"]] == ["CN=corp root"]
    assert status["issuer"]["subject"] == "CN=corp mesh issuer"
    assert not status["anchors"][0]["hasKey"]  # the root's key never came here
    mesh.sync()
    assert mesh.call(client, "http://books/")["status"] == 200

    checked = mesh.cli("certs", "status", check=False)
    assert checked.returncode == 1
    assert "expires in" in checked.stdout and "tulle certs rotate issuer" in checked.stdout
    assert mesh.cli("certs", "status", "--threshold", "5").returncode == 0
    mesh.cli("down")
    started = mesh.cli("up", "--api-port", str(mesh.api_port))
    assert "warning: the issuer" in started.stderr and "days" in started.stderr


def test_status_fails_when_a_workload_misses_its_renewal(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin="apiVersion: tulle.io/v1alpha1\nkind: Mesh\n"
             "metadata: {name: default}\nspec: {certificates: {workloadLifetime: 4s}}\n")
    mesh.run("books", name="books-1")
    assert mesh.cli("certs", "status").returncode == 0
    agent = mesh.workload("books-1")["pid"]
    os.kill(agent, signal.SIGSTOP)  # the agent can no longer renew
    try:
        def missed() -> bool:
            return mesh.cli("certs", "status", check=False).returncode == 1

        wait_for("a missed renewal to be reported", missed, timeout=15, interval=0.5)
        report = json.loads(mesh.cli("certs", "status", "-o", "json", check=False).stdout)
        assert any("books-1.default missed its renewal" in p for p in report["problems"])
        # Until its certificate expires, as on a host that slept.
        wait_for("books-1's certificate to expire", lambda: [
            w for w in mesh.api.get("/v1/identity/status")["workloads"]
            if w["node"] == "books-1.default" and w["remainingSeconds"] < 0], timeout=15)
    finally:
        os.kill(agent, signal.SIGCONT)
    wait_for("the agent to renew again",
             lambda: mesh.cli("certs", "status", check=False).returncode == 0, timeout=15)
    # Its expired certificate could not vouch for it: it enrolled again through its session.
    log = (mesh.state_dir / "workloads" / "books-1.default" / "agent.log").read_text()
    assert "enrolling again" in log
