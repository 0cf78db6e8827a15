"""Certificates for benchmark clients and for the bare-Envoy baseline (tests have their own)."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pem:
    cert: Path  # chain: leaf then issuer
    key: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _leaf(spiffe_id: str, issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey,
          directory: Path, name: str) -> Pem:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bench")]))
            .issuer_name(issuer.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(hours=2))
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
    pem = Pem(directory / f"{name}.crt", directory / f"{name}.key")
    pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                         + issuer.public_bytes(serialization.Encoding.PEM))
    pem.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return pem


def mesh_client(state_dir: Path, directory: Path) -> Pem:
    """A client identity signed by a running mesh's issuer (read from its state directory)."""
    ca_dir = state_dir / "ca"
    issuer_id = json.loads((ca_dir / "state.json").read_text())["issuer"]
    issuer = x509.load_pem_x509_certificate((ca_dir / f"{issuer_id}.crt").read_bytes())
    key = serialization.load_pem_private_key((ca_dir / f"{issuer_id}.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return _leaf("spiffe://tulle.local/ns/default/sa/bench-client", issuer, key, directory,
                 "mesh-client")


def own_pki(directory: Path) -> tuple[Path, Pem, Pem]:
    """A CA, a server and a client identity, for a hand-written Envoy with mTLS."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench root")])
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    bundle = directory / "root.crt"
    bundle.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    server = _leaf("spiffe://bench.local/ns/default/sa/server", root, key, directory, "server")
    client = _leaf("spiffe://bench.local/ns/default/sa/client", root, key, directory, "client")
    return bundle, server, client


def answers(port: int, client: Pem) -> bool:
    """Whether an mTLS listener on ``port`` completes a handshake and answers HTTP."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(client.cert, client.key)
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=1)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    return True
