"""Signing: a CSR gets exactly the identity the workload is entitled to, or nothing."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.unit.identity.certs import (
    BOOKS_ID,
    TRUST_DOMAIN,
    ca_certificate,
    chain_of,
    csr,
    leaf,
    p256,
    pem,
    rsa_key,
    tampered_csr,
    uri,
)
from tulle.errors import IdentityError
from tulle.identity.ca import CaState, CertificateAuthority
from tulle.identity.spiffe import control_plane_dns, control_plane_id

OTHER_ID = f"spiffe://{TRUST_DOMAIN}/ns/default/sa/authors"


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.open(tmp_path / "ca", TRUST_DOMAIN)


# (case, a builder of the CSR, text the refusal contains)
REFUSED: list[tuple[str, Callable[[], bytes], str]] = [
    ("not PEM", lambda: b"hello", "not a PEM CSR"),
    ("a certificate, not a CSR", lambda: pem(ca_certificate("x", p256(), is_ca=False)),
     "not a PEM CSR"),
    ("signature does not match", lambda: tampered_csr(BOOKS_ID), "signature is not valid"),
    ("RSA key", lambda: csr([uri(BOOKS_ID)], rsa_key()), "ECDSA P-256"),
    ("P-384 key", lambda: csr([uri(BOOKS_ID)], ec.generate_private_key(ec.SECP384R1())),
     "ECDSA P-256"),
    ("no SAN", lambda: csr(None), "names no identity"),
    ("another workload's ID", lambda: csr([uri(OTHER_ID)]), "may only be " + BOOKS_ID),
    ("the ID of another trust domain",
     lambda: csr([uri("spiffe://evil.org/ns/default/sa/books")]), "may only be"),
    ("two URIs", lambda: csr([uri(BOOKS_ID), uri(OTHER_ID)]), "may only be"),
    ("the same URI twice", lambda: csr([uri(BOOKS_ID), uri(BOOKS_ID)]), "may only be"),
    ("URI plus a DNS name", lambda: csr([uri(BOOKS_ID), x509.DNSName("books.default")]),
     "may only be"),
    ("a DNS name only", lambda: csr([x509.DNSName("books.default")]), "may only be"),
    ("URI plus the replicas' DNS name (a workload posing as a control plane)",
     lambda: csr([uri(BOOKS_ID), x509.DNSName(control_plane_dns(TRUST_DOMAIN))]),
     "may only be"),
    ("URI plus an IP address",
     lambda: csr([uri(BOOKS_ID), x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]),
     "may only be"),
]


@pytest.mark.parametrize(("build", "message"), [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_a_bad_request_is_refused(ca: CertificateAuthority, build: Callable[[], bytes],
                                  message: str) -> None:
    with pytest.raises(IdentityError) as caught:
        ca.sign(build(), BOOKS_ID, 3600)
    assert message in caught.value.message


def test_the_issued_certificate_is_a_workload_leaf_for_exactly_the_id(
        ca: CertificateAuthority) -> None:
    key = p256()
    issued = ca.sign(csr([uri(BOOKS_ID)], key), BOOKS_ID, 3600)
    [certificate, _] = chain_of(issued.chain_pem)
    extensions = certificate.extensions

    assert extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.crl_sign
    assert set(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert list(extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == [
        uri(BOOKS_ID)]
    assert certificate.public_key() == key.public_key(), "the workload's own key"
    assert issued.spiffe_id == BOOKS_ID


def test_the_chain_is_the_leaf_then_its_issuer(ca: CertificateAuthority) -> None:
    issued = ca.sign(csr([uri(BOOKS_ID)]), BOOKS_ID, 3600)
    certificate, issuer = chain_of(issued.chain_pem)
    assert issuer == ca.issuer.certificate
    assert issued.issuer_id == ca.issuer.id
    certificate.verify_directly_issued_by(issuer)
    assert ca.anchors[0].pem not in issued.chain_pem, "peers take the root from the bundle"
    assert issued.serial == f"{certificate.serial_number:x}"
    other = ca.sign(csr([uri(BOOKS_ID)]), BOOKS_ID, 3600)
    assert other.serial != issued.serial


@pytest.mark.parametrize("lifetime_s", [2.0, 600.0, 86400.0, 90 * 86400.0])
def test_the_lifetime_is_honoured(ca: CertificateAuthority, lifetime_s: float) -> None:
    before = dt.datetime.now(dt.UTC)
    issued = ca.sign(csr([uri(BOOKS_ID)]), BOOKS_ID, lifetime_s)
    after = dt.datetime.now(dt.UTC)
    [certificate, _] = chain_of(issued.chain_pem)
    not_after = certificate.not_valid_after_utc
    # Certificates carry whole seconds.
    assert before + dt.timedelta(seconds=lifetime_s - 1) <= not_after
    assert not_after <= after + dt.timedelta(seconds=lifetime_s)
    assert certificate.not_valid_before_utc <= before, "valid at once"
    # A little backdating for clock skew, but never a large part of a short lifetime.
    assert after - certificate.not_valid_before_utc <= dt.timedelta(
        seconds=min(32, lifetime_s / 4 + 2))
    assert issued.not_before == certificate.not_valid_before_utc.timestamp()
    assert issued.not_after == not_after.timestamp(), "the record describes the certificate"


def test_issued_certificates_chain_to_the_bundle(ca: CertificateAuthority) -> None:
    issued = ca.sign(csr([uri(BOOKS_ID)]), BOOKS_ID, 3600)
    assert ca.chains_to_bundle(issued.chain_pem)
    [certificate, _] = chain_of(issued.chain_pem)
    assert not ca.chains_to_bundle(pem(certificate).decode()), "the issuer is needed"


def test_a_chain_from_a_foreign_ca_does_not_chain_to_the_bundle(
        ca: CertificateAuthority) -> None:
    root_key, issuer_key = p256(), p256()
    root = ca_certificate("foreign root", root_key)
    issuer = ca_certificate("foreign issuer", issuer_key, (root, root_key))
    foreign = leaf(issuer.subject, issuer_key, [uri(BOOKS_ID)])
    assert not ca.chains_to_bundle((pem(foreign) + pem(issuer)).decode())
    # The same names, other keys: an impostor of our issuer, "signed" by our root's name.
    impostor = ca_certificate(ca.issuer.certificate.subject, issuer_key,
                              (ca.anchors[0].certificate, root_key))
    forged = leaf(ca.issuer.certificate.subject, issuer_key, [uri(BOOKS_ID)])
    assert not ca.chains_to_bundle((pem(forged) + pem(impostor)).decode())


def test_a_chain_stops_chaining_when_its_root_leaves_the_bundle(
        ca: CertificateAuthority) -> None:
    issued = ca.sign(csr([uri(BOOKS_ID)]), BOOKS_ID, 3600)
    old_root = ca.anchors[0]
    root = ca.new_root()
    issuer = ca.new_issuer(root)
    ca.commit(CaState(TRUST_DOMAIN, (old_root.id, root.id), issuer.id))
    assert ca.chains_to_bundle(issued.chain_pem), "old and new anchors overlap"
    renewed = ca.sign(csr([uri(BOOKS_ID)]), BOOKS_ID, 3600)
    assert renewed.issuer_id == issuer.id and ca.chains_to_bundle(renewed.chain_pem)
    ca.commit(CaState(TRUST_DOMAIN, (root.id,), issuer.id))
    assert not ca.chains_to_bundle(issued.chain_pem)
    assert ca.chains_to_bundle(renewed.chain_pem)


def test_the_server_identity_serves_loopback_and_other_replicas(
        ca: CertificateAuthority) -> None:
    spiffe_id = control_plane_id(TRUST_DOMAIN)
    issued, key_text = ca.server_identity(spiffe_id, 3600)
    [certificate, _] = chain_of(issued.chain_pem)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [spiffe_id]
    assert names.get_values_for_type(x509.DNSName) == [
        "localhost", control_plane_dns(TRUST_DOMAIN)], "what other replicas verify"
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    key = serialization.load_pem_private_key(key_text.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == certificate.public_key()
    assert ca.chains_to_bundle(issued.chain_pem)
    assert issued.spiffe_id == spiffe_id
