"""Revoked workload certificates, and the certificate revocation lists (CRLs) proxies check.

A revocation names one certificate by its serial and issuer. It is kept until the certificate
would have expired anyway: after that, no peer accepts the certificate, revoked or not.

Every proxy validates peers against the trust bundle and one CRL per issuer that may have
signed a live workload certificate (the active issuer, and during a rotation the old and new
ones). Envoy checks only the peer's leaf against them (``only_verify_leaf_cert_crl``), and
refuses a leaf whose issuer has no CRL: so every such issuer gets one, empty or not, and the
lists are signed again well before they run out (a CRL past its next update fails every
handshake). Signing is not deterministic (ECDSA, and the dates), so a list is signed once and
kept until the revocations or the issuers change, or it is half-way to its next update:
otherwise every snapshot would carry a new bundle to every proxy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

# Longer than any workload certificate lives, so that a control plane that is down does not
# stop traffic sooner than the certificates' own expiry would.
CRL_LIFETIME = dt.timedelta(days=7)
BACKDATE = dt.timedelta(minutes=5)  # tolerate hosts whose clocks are a little behind


@dataclass(frozen=True)
class Revocation:
    serial: str  # hexadecimal, as IssuedCertificate.serial
    issuer_id: str
    not_after: float  # the certificate's own expiry: after it, the entry is dropped
    node_id: str
    at: float  # when it was revoked

    def to_dict(self) -> dict[str, Any]:
        return {"serial": self.serial, "issuer_id": self.issuer_id,
                "not_after": self.not_after, "node_id": self.node_id, "at": self.at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Revocation:
        return cls(str(data["serial"]), str(data["issuer_id"]), float(data["not_after"]),
                   str(data["node_id"]), float(data["at"]))


def live(revocations: Iterable[Revocation], now: float) -> tuple[Revocation, ...]:
    """The revocations whose certificates have not expired, one per serial, in order."""
    seen: dict[tuple[str, str], Revocation] = {}
    for entry in revocations:
        if entry.not_after > now:
            seen.setdefault((entry.issuer_id, entry.serial), entry)
    return tuple(sorted(seen.values(), key=lambda e: (e.at, e.issuer_id, e.serial)))


def sign_crl(issuer: x509.Certificate, key: ec.EllipticCurvePrivateKey,
             revoked: Sequence[Revocation], now: dt.datetime) -> str:
    """A PEM CRL from ``issuer`` listing ``revoked`` (which must all be its own)."""
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer.subject)
               .last_update(now - BACKDATE)
               .next_update(now + CRL_LIFETIME)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   key.public_key()), critical=False))
    for entry in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(int(entry.serial, 16))
            .revocation_date(dt.datetime.fromtimestamp(entry.at, dt.UTC))
            .build())
    crl = builder.sign(key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class SignedLists:
    """The CRLs in force, and what they were signed for."""

    signed_at: dt.datetime
    issuers: tuple[str, ...]
    serials: frozenset[tuple[str, str]]  # (issuer id, serial)
    pem: str

    def still_good(self, issuers: tuple[str, ...], serials: frozenset[tuple[str, str]],
                   now: dt.datetime) -> bool:
        return (self.issuers == issuers and self.serials == serials
                and now - self.signed_at < CRL_LIFETIME / 2)
