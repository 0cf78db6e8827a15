"""Revoking workload certificates: the CA's record, and the revocation lists proxies check
(validated independently with the openssl command, as a TLS peer would)."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.unit.identity.certs import BOOKS_ID, TRUST_DOMAIN, chain_of, csr, der, uri
from tulle.controlplane.services.identity import keep_revocation_lists
from tulle.errors import IdentityError
from tulle.identity.ca import CertificateAuthority, IssuedCertificate
from tulle.identity.crl import CRL_LIFETIME, Revocation


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.open(tmp_path / "ca", TRUST_DOMAIN)


def issue(ca: CertificateAuthority, lifetime_s: float = 3600) -> IssuedCertificate:
    return ca.sign(csr([uri(BOOKS_ID)]), BOOKS_ID, lifetime_s)


def revocation(issued: IssuedCertificate, node: str = "books-1.default",
               at: float | None = None) -> Revocation:
    return Revocation(issued.serial, issued.issuer_id, issued.not_after, node,
                      time.time() if at is None else at)


def lists(ca: CertificateAuthority) -> list[x509.CertificateRevocationList]:
    pem = ca.crl_pem()
    blocks = [f"-----BEGIN X509 CRL-----{b}" for b in pem.split("-----BEGIN X509 CRL-----")[1:]]
    return [x509.load_pem_x509_crl(block.encode()) for block in blocks]


def test_a_revoked_certificate_no_longer_vouches_and_its_sibling_still_does(
        ca: CertificateAuthority) -> None:
    revoked, sibling = issue(ca), issue(ca)
    added = ca.revoke([revocation(revoked)])
    assert [e.serial for e in added] == [revoked.serial] and added == ca.state.revoked
    with pytest.raises(IdentityError, match="revoked"):
        ca.verify_leaf(der(chain_of(revoked.chain_pem)[0]))
    assert ca.verify_leaf(der(chain_of(sibling.chain_pem)[0])) == BOOKS_ID
    assert ca.revocation_of("books-1.default") is not None
    assert ca.revocation_of("books-2.default") is None


def test_revocations_survive_a_restart_and_are_not_added_twice(
        ca: CertificateAuthority, tmp_path: Path) -> None:
    issued = issue(ca)
    assert len(ca.revoke([revocation(issued)])) == 1
    assert ca.revoke([revocation(issued)]) == (), "already revoked"
    reopened = CertificateAuthority.open(tmp_path / "ca", TRUST_DOMAIN)
    assert [e.serial for e in reopened.state.revoked] == [issued.serial]
    assert reopened.is_revoked(issued.serial)


def test_an_expired_certificate_leaves_the_record(ca: CertificateAuthority) -> None:
    issued = issue(ca)
    gone = Revocation(issued.serial, issued.issuer_id, time.time() - 1, "old-1.default",
                      time.time() - 100)
    assert ca.revoke([gone]) == ()
    assert ca.state.revoked == () and ca.revocation_mark() == ""


def test_every_issuer_has_a_signed_list_naming_its_revoked_serials(
        ca: CertificateAuthority) -> None:
    [empty] = lists(ca)
    issuer = ca.issuer.certificate
    assert empty.issuer == issuer.subject and len(empty) == 0
    assert empty.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    issued = issue(ca)
    ca.revoke([revocation(issued)])
    [signed] = lists(ca)
    assert signed.get_revoked_certificate_by_serial_number(int(issued.serial, 16))
    assert signed.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    assert signed.next_update_utc is not None
    assert signed.next_update_utc - dt.datetime.now(dt.UTC) > CRL_LIFETIME * 0.9


def test_the_lists_are_signed_once_until_the_revocations_change(
        ca: CertificateAuthority) -> None:
    """Signing is not deterministic: a list signed per snapshot would push a new bundle to
    every proxy every time."""
    first = ca.crl_pem()
    assert ca.crl_pem() == first and ca.revocation_mark() == ""
    ca.revoke([revocation(issue(ca))])
    assert ca.crl_pem() != first
    mark = ca.revocation_mark()
    assert mark and ca.revocation_mark() == mark
    ca.revoke([revocation(issue(ca), node="books-2.default")])
    assert ca.revocation_mark() != mark


def test_lists_nearing_their_next_update_are_signed_again(
        ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch) -> None:
    first = ca.crl_pem()
    later = dt.datetime.now(dt.UTC) + CRL_LIFETIME / 2 + dt.timedelta(minutes=1)
    monkeypatch.setattr("tulle.identity.ca._utcnow", lambda: later)
    again = ca.crl_pem()
    assert again != first
    [renewed] = lists(ca)
    assert renewed.next_update_utc is not None and renewed.next_update_utc > later


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_refuses_the_revoked_leaf_and_accepts_its_sibling(
        ca: CertificateAuthority, tmp_path: Path) -> None:
    """What a TLS peer does with the bundle and the lists: -crl_check checks the leaf only,
    as Envoy's only_verify_leaf_cert_crl does."""
    revoked, sibling = issue(ca), issue(ca)
    ca.revoke([revocation(revoked)])
    (tmp_path / "roots.pem").write_text(ca.bundle_pem())
    (tmp_path / "lists.pem").write_text(ca.crl_pem())

    def verify(issued: IssuedCertificate) -> subprocess.CompletedProcess[str]:
        leaf, issuer = chain_of(issued.chain_pem)
        (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        (tmp_path / "issuer.pem").write_bytes(issuer.public_bytes(serialization.Encoding.PEM))
        return subprocess.run(
            ["openssl", "verify", "-crl_check", "-CAfile", str(tmp_path / "roots.pem"),
             "-untrusted", str(tmp_path / "issuer.pem"), "-CRLfile",
             str(tmp_path / "lists.pem"), str(tmp_path / "leaf.pem")],
            capture_output=True, text=True, check=False)

    refused = verify(revoked)
    assert refused.returncode != 0 and "revoked" in refused.stdout + refused.stderr
    accepted = verify(sibling)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


def test_another_replicas_revocation_is_followed_by_reloading(
        ca: CertificateAuthority, tmp_path: Path) -> None:
    """Two replicas share the CA's files: one revokes, the other reloads and refuses too."""
    other = CertificateAuthority.open(tmp_path / "ca", TRUST_DOMAIN)
    issued = issue(ca)
    ca.revoke([revocation(issued)])
    assert not other.is_revoked(issued.serial)
    assert other.reload() is True
    assert other.is_revoked(issued.serial) and other.crl_pem() != ""
    assert other.revocation_mark() == ca.revocation_mark()
    assert other.reload() is False, "nothing new"


def test_a_quiet_mesh_gets_its_lists_signed_again_before_they_run_out(
        ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing changes for days: the periodic check still pushes new lists half-way to their
    next update, and pushes nothing while the published ones are good."""
    published = [ca.crl_pem()]
    changes: list[str] = []

    def changed() -> None:
        changes.append("push")
        published.append(ca.crl_pem())  # what the push then publishes

    async def run_for(seconds: float) -> None:
        task = asyncio.create_task(keep_revocation_lists(
            ca, lambda: published[-1], changed, every_s=0.01))
        await asyncio.sleep(seconds)
        task.cancel()

    asyncio.run(run_for(0.1))
    assert changes == []
    later = dt.datetime.now(dt.UTC) + CRL_LIFETIME / 2 + dt.timedelta(minutes=1)
    monkeypatch.setattr("tulle.identity.ca._utcnow", lambda: later)
    asyncio.run(run_for(0.1))
    assert changes == ["push"]
    [renewed] = [x509.load_pem_x509_crl(published[-1].encode())]
    assert renewed.next_update_utc is not None and renewed.next_update_utc > later


def test_a_revocation_and_a_rotation_step_written_at_once_by_two_replicas_both_hold(
        tmp_path: Path) -> None:
    """Two replicas share the CA's files. A revokes a certificate while B, which has not
    read A's write, commits a rotation step (a new issuer): B's write is made again over
    A's, with A's revocation in it. Then A, stale in turn, revokes another: its entry is
    added to B's state, and B's new issuer stays."""
    a = CertificateAuthority.open(tmp_path / "ca", TRUST_DOMAIN)
    b = CertificateAuthority.open(tmp_path / "ca", TRUST_DOMAIN)
    first, second = issue(a), issue(a)
    a.revoke([revocation(first)])
    issuer = b.new_issuer(b._authorities[b.state.anchors[0]])
    b.commit(replace(b.state, issuer=issuer.id))
    assert b.state.issuer == issuer.id
    assert [e.serial for e in b.state.revoked] == [first.serial], "A's revocation kept"

    a.revoke([revocation(second, "books-2.default")])
    on_disk = CertificateAuthority.open(tmp_path / "ca", TRUST_DOMAIN).state
    assert on_disk.issuer == issuer.id, "B's rotation step kept"
    assert {e.serial for e in on_disk.revoked} == {first.serial, second.serial}
    assert a.state == on_disk
