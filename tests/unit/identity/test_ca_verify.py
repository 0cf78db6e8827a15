"""Verifying a peer's leaf, and making new CAs: who may sign what."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from tests.unit.identity.certs import (
    BOOKS_ID,
    TRUST_DOMAIN,
    ca_certificate,
    chain_of,
    csr,
    der,
    leaf,
    now,
    p256,
    uri,
)
from tulle.errors import IdentityError
from tulle.identity.ca import Authority, CaState, CertificateAuthority


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.open(tmp_path / "ca", TRUST_DOMAIN)


def by_issuer(ca: CertificateAuthority, names: list[x509.GeneralName] | None = None,
              **dates: dt.datetime) -> bytes:
    """A leaf our active issuer signed, with any SANs and dates."""
    assert ca.issuer.key is not None
    return der(leaf(ca.issuer.certificate.subject, ca.issuer.key,
                    [uri(BOOKS_ID)] if names is None else names, **dates))


def test_a_signed_leaf_yields_its_spiffe_id(ca: CertificateAuthority) -> None:
    issued = ca.sign(csr([uri(BOOKS_ID)]), BOOKS_ID, 3600)
    [certificate, _] = chain_of(issued.chain_pem)
    assert ca.verify_leaf(der(certificate)) == BOOKS_ID


def _foreign_issuer_named_like_ours(ca: CertificateAuthority) -> bytes:
    return der(leaf(ca.issuer.certificate.subject, p256(), [uri(BOOKS_ID)]))


def _signed_by_the_root(ca: CertificateAuthority) -> bytes:
    [root] = ca.anchors
    assert root.key is not None
    return der(leaf(root.certificate.subject, root.key, [uri(BOOKS_ID)]))


def _the_issuer_itself(ca: CertificateAuthority) -> bytes:
    return der(ca.issuer.certificate)


def _no_san(ca: CertificateAuthority) -> bytes:
    assert ca.issuer.key is not None
    return der(leaf(ca.issuer.certificate.subject, ca.issuer.key, None))


def _foreign_chain(ca: CertificateAuthority) -> bytes:
    root_key, issuer_key = p256(), p256()
    root = ca_certificate("foreign root", root_key)
    issuer = ca_certificate("foreign issuer", issuer_key, (root, root_key))
    return der(leaf(issuer.subject, issuer_key, [uri(BOOKS_ID)]))


HOUR = dt.timedelta(hours=1)
# (case, the leaf presented, text the refusal contains)
REFUSED: list[tuple[str, Callable[[CertificateAuthority], bytes], str]] = [
    ("not DER", lambda ca: b"\x30\x03abc", "cannot be parsed"),
    ("expired", lambda ca: by_issuer(ca, not_before=now() - 2 * HOUR, not_after=now() - HOUR),
     "expired"),
    ("not valid yet", lambda ca: by_issuer(ca, not_before=now() + HOUR,
                                           not_after=now() + 2 * HOUR), "not valid yet"),
    ("from a foreign CA", _foreign_chain, "does not chain"),
    ("from a foreign key with our issuer's name", _foreign_issuer_named_like_ours,
     "does not chain"),
    ("signed by the root directly", _signed_by_the_root, "does not chain"),
    ("the issuer's own certificate", _the_issuer_itself, "does not chain"),
    ("no SAN", _no_san, "no SPIFFE ID"),
    ("two URIs", lambda ca: by_issuer(ca, [uri(BOOKS_ID), uri(BOOKS_ID + "x")]),
     "exactly one SPIFFE ID"),
    ("a URI that is not SPIFFE", lambda ca: by_issuer(ca, [uri("https://books.default/")]),
     "exactly one SPIFFE ID"),
    ("a DNS name only", lambda ca: by_issuer(ca, [x509.DNSName("books.default")]),
     "exactly one SPIFFE ID"),
]


@pytest.mark.parametrize(("present", "message"), [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_a_bad_leaf_is_refused(ca: CertificateAuthority,
                               present: Callable[[CertificateAuthority], bytes],
                               message: str) -> None:
    with pytest.raises(IdentityError) as caught:
        ca.verify_leaf(present(ca))
    assert message in caught.value.message


def test_a_leaf_is_refused_once_its_root_leaves_the_bundle(ca: CertificateAuthority) -> None:
    old = by_issuer(ca)
    old_root = ca.anchors[0]
    root = ca.new_root()
    issuer = ca.new_issuer(root)
    ca.commit(CaState(TRUST_DOMAIN, (old_root.id, root.id), issuer.id))
    assert ca.verify_leaf(old) == BOOKS_ID, "during a rotation both roots are trusted"
    new = by_issuer(ca)
    assert ca.verify_leaf(new) == BOOKS_ID

    ca.commit(CaState(TRUST_DOMAIN, (root.id,), issuer.id))
    with pytest.raises(IdentityError, match="does not chain"):
        ca.verify_leaf(old)
    assert ca.verify_leaf(new) == BOOKS_ID


# -- new roots and issuers -------------------------------------------------------------------

def constraints(authority: Authority) -> x509.BasicConstraints:
    return authority.certificate.extensions.get_extension_for_class(
        x509.BasicConstraints).value


def test_a_new_issuer_is_signed_by_its_root_and_may_sign_only_leaves(
        ca: CertificateAuthority) -> None:
    root = ca.new_root()
    issuer = ca.new_issuer(root)
    issuer.certificate.verify_directly_issued_by(root.certificate)
    assert root.is_root and not issuer.is_root
    assert (constraints(root).ca, constraints(root).path_length) == (True, 1)
    assert (constraints(issuer).ca, constraints(issuer).path_length) == (True, 0)
    usage = issuer.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    names = issuer.certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"spiffe://{TRUST_DOMAIN}"]
    with pytest.raises((ValueError, InvalidSignature)):
        issuer.certificate.verify_directly_issued_by(ca.anchors[0].certificate)


def test_new_cas_have_distinct_subjects_and_are_kept_on_disk(
        ca: CertificateAuthority, tmp_path: Path) -> None:
    roots = [ca.anchors[0], ca.new_root(), ca.new_root()]
    issuers = [ca.issuer, ca.new_issuer(roots[1]), ca.new_issuer(roots[1])]
    subjects = [a.certificate.subject for a in (*roots, *issuers)]
    assert len(set(subjects)) == len(subjects)
    assert len({a.id for a in (*roots, *issuers)}) == 6
    for authority in (*roots, *issuers):
        assert (tmp_path / "ca" / f"{authority.id}.crt").read_text() == authority.pem
        assert (tmp_path / "ca" / f"{authority.id}.key").exists()
        assert ca.authority(authority.id) is authority


def test_a_root_without_its_key_cannot_sign_an_issuer(ca: CertificateAuthority) -> None:
    key = p256()
    offline = ca.add(ca_certificate("offline root", key), None)
    with pytest.raises(IdentityError) as caught:
        ca.new_issuer(offline)
    assert offline.id in caught.value.message
    assert "tulle certs import" in (caught.value.hint or "")
