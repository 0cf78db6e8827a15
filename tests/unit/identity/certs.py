"""Keys, CSRs and certificates the identity tests make on their own, with the ``cryptography``
library: requests a workload could send, and certificates from CAs the mesh never created."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from tulle.identity.ca import CertificateAuthority

TRUST_DOMAIN = "example.org"
BOOKS_ID = f"spiffe://{TRUST_DOMAIN}/ns/default/sa/books"
CSR_SUBJECT = "csr-subject"

PrivateKey = CertificateIssuerPrivateKeyTypes


def open_ca(tmp_path: Path, trust_domain: str = TRUST_DOMAIN) -> CertificateAuthority:
    return CertificateAuthority.open(tmp_path / "ca", trust_domain)


def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def uri(value: str) -> x509.GeneralName:
    return x509.UniformResourceIdentifier(value)


def csr(names: Sequence[x509.GeneralName] | None, key: PrivateKey | None = None) -> bytes:
    """A PEM CSR asking for ``names`` (None: no SubjectAlternativeName at all)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, CSR_SUBJECT)]))
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(key or p256(), hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def tampered_csr(spiffe_id: str) -> bytes:
    """A well-formed CSR whose subject was changed after it was signed."""
    request = x509.load_pem_x509_csr(csr([uri(spiffe_id)]))
    der = request.public_bytes(serialization.Encoding.DER)
    assert der.count(CSR_SUBJECT.encode()) == 1
    forged = x509.load_der_x509_csr(der.replace(b"csr-subject", b"csr-subjecx"))
    return forged.public_bytes(serialization.Encoding.PEM)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def ca_certificate(subject: str | x509.Name, key: ec.EllipticCurvePrivateKey,
                   signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
                   *, is_ca: bool = True) -> x509.Certificate:
    """A root (no signer) or an intermediate signed by ``signer``, valid for a day. A
    ``subject`` given as a string is a common name."""
    name = _name(subject) if isinstance(subject, str) else subject
    issuer_name, signing_key = (signer[0].subject, signer[1]) if signer else (name, key)
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(issuer_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now() - dt.timedelta(hours=1))
            .not_valid_after(now() + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .sign(signing_key, hashes.SHA256()))


def leaf(issuer_name: x509.Name, issuer_key: ec.EllipticCurvePrivateKey,
         names: Sequence[x509.GeneralName] | None, *,
         not_before: dt.datetime | None = None,
         not_after: dt.datetime | None = None) -> x509.Certificate:
    """A workload certificate as any CA could sign it, with the SANs and dates a test wants."""
    key = p256()
    builder = (x509.CertificateBuilder()
               .subject_name(_name("leaf")).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before or now() - dt.timedelta(minutes=5))
               .not_valid_after(not_after or now() + dt.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def chain_of(chain_pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(chain_pem.encode())
