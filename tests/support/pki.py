"""Certificates the tests make on their own: from a foreign CA, or from the mesh's issuer with
chosen dates. And a raw HTTPS client that presents them to a sidecar's inbound port."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Identity:
    chain_pem: str
    key_pem: str


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _leaf(spiffe_id: str, issuer_name: x509.Name, issuer_key: ec.EllipticCurvePrivateKey,
          not_before: dt.datetime, not_after: dt.datetime
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test")]))
            .issuer_name(issuer_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=False, crl_sign=False,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(spiffe_id)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_key.public_key()), critical=False)
            .sign(issuer_key, hashes.SHA256()))
    return cert, key


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def foreign_identity(spiffe_id: str) -> Identity:
    """A leaf for ``spiffe_id`` from a CA the mesh has never heard of."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "impostor root")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now() - dt.timedelta(days=1))
          .not_valid_after(now() + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf, key = _leaf(spiffe_id, name, ca_key, now() - dt.timedelta(hours=1),
                      now() + dt.timedelta(hours=1))
    return Identity(_pem(leaf) + _pem(ca), _key_pem(key))


def mesh_identity(state_dir: Path, spiffe_id: str, not_before: dt.datetime,
                  not_after: dt.datetime) -> Identity:
    """A leaf signed by the mesh's own active issuer, with the dates a test wants."""
    ca_dir = state_dir / "ca"
    issuer_id = json.loads((ca_dir / "state.json").read_text())["issuer"]
    issuer = x509.load_pem_x509_certificate((ca_dir / f"{issuer_id}.crt").read_bytes())
    issuer_key = serialization.load_pem_private_key((ca_dir / f"{issuer_id}.key").read_bytes(),
                                                    None)
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    leaf, key = _leaf(spiffe_id, issuer.subject, issuer_key, not_before, not_after)
    return Identity(_pem(leaf) + _pem(issuer), _key_pem(key))


def bundle(state_dir: Path) -> str:
    ca_dir = state_dir / "ca"
    anchors = json.loads((ca_dir / "state.json").read_text())["anchors"]
    return "".join((ca_dir / f"{a}.crt").read_text() for a in anchors)


def https_get(port: int, path: str = "/", *, identity: Identity | None,
              headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """GET over TLS straight to a sidecar's inbound port, presenting ``identity``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # this test client checks what the server accepts
    with tempfile.TemporaryDirectory() as tmp:
        if identity is not None:
            cert, key = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
            cert.write_text(identity.chain_pem)
            key.write_text(identity.key_pem)
            context.load_cert_chain(cert, key)
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
    try:
        return response.status, json.loads(body)
    except ValueError:
        return response.status, body.decode(errors="replace")


def http_get(port: int, path: str = "/", headers: dict[str, str] | None = None
             ) -> tuple[int, Any]:
    """GET in plaintext straight to a sidecar's inbound port."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(body)
    except ValueError:
        return response.status, body.decode(errors="replace")
