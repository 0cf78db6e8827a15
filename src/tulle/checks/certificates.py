"""Pure evaluators for certificates: validity, algorithms, days left, and chains.

Signatures are verified here with `cryptography` (``verify_directly_issued_by`` checks the
issuer name and the signature with the parent's public key), not taken from a flag the
control plane reports.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

SUPPORTED_CURVES = frozenset({"secp256r1", "secp384r1"})
MIN_RSA_BITS = 2048
WEAK_HASHES = (hashes.SHA1, hashes.MD5)
# Workload certificates live a day and are renewed at about half their life; past this share
# of its lifetime a proxy's certificate has missed its renewal.
RENEWAL_MISSED_AFTER = 0.75


def load(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode())


def name(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string() or f"serial {certificate.serial_number:x}"


def days_left(certificate: x509.Certificate, now: dt.datetime) -> float:
    return (certificate.not_valid_after_utc - now).total_seconds() / 86400


def algorithm(certificate: x509.Certificate) -> str:
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    return type(key).__name__


def algorithm_problem(certificate: x509.Certificate) -> str | None:
    """Why the certificate's key or signature algorithm is not supported, or None."""
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in SUPPORTED_CURVES:
            return f"{name(certificate)} uses the curve {key.curve.name}; use P-256 or P-384"
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return f"{name(certificate)} has a {key.key_size}-bit RSA key; use at least " \
                   f"{MIN_RSA_BITS} bits"
    else:
        return f"{name(certificate)} has a {type(key).__name__} key; use ECDSA P-256/P-384 " \
               f"or RSA"
    digest = certificate.signature_hash_algorithm
    if digest is not None and isinstance(digest, WEAK_HASHES):
        return f"{name(certificate)} is signed with {digest.name}, which is broken; use SHA-256"
    return None


def validity_problem(certificate: x509.Certificate, now: dt.datetime) -> str | None:
    """Why the certificate is not valid at ``now``, or None."""
    if now < certificate.not_valid_before_utc:
        return f"{name(certificate)} is not valid before " \
               f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    if now > certificate.not_valid_after_utc:
        return f"{name(certificate)} expired on {certificate.not_valid_after_utc:%Y-%m-%d}"
    return None


def ca_problem(certificate: x509.Certificate) -> str | None:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return f"{name(certificate)} has no basic constraints, so it is not a CA"
    if not constraints.value.ca:
        return f"{name(certificate)} is not a CA certificate (basic constraints CA:false)"
    return None


def signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """Whether ``parent``'s key signed ``child`` (and the names line up)."""
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def signer_among(child: x509.Certificate, parents: Iterable[x509.Certificate]
                 ) -> x509.Certificate | None:
    return next((p for p in parents if signed_by(child, p)), None)


def expiry_warning(certificate: x509.Certificate, now: dt.datetime, min_days: float
                   ) -> str | None:
    left = days_left(certificate, now)
    if left < min_days:
        return f"{name(certificate)} expires in {max(left, 0):.0f} days " \
               f"({certificate.not_valid_after_utc:%Y-%m-%d}), less than {min_days:g}"
    return None


def leaf_problems(chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate],
                  now: dt.datetime) -> tuple[list[str], list[str]]:
    """A workload's serving chain (leaf first): (failures, warnings).

    Fails when the leaf is not valid now or does not chain (leaf -> issuer in the chain ->
    anchor, or leaf -> anchor) to ``anchors``; warns when it has used up more than
    RENEWAL_MISSED_AFTER of its lifetime.
    """
    if not chain:
        return ["no serving certificate"], []
    leaf = chain[0]
    failures = [p for p in (validity_problem(leaf, now),) if p]
    direct = signer_among(leaf, anchors)
    if direct is None:
        issuer = signer_among(leaf, chain[1:])
        if issuer is None:
            failures.append("its issuer is not in its chain")
        elif validity_problem(issuer, now):
            failures.append(f"its issuer: {validity_problem(issuer, now)}")
        elif signer_among(issuer, anchors) is None:
            failures.append(f"its issuer {name(issuer)} is not signed by a current trust "
                            f"anchor")
    warnings = []
    lifetime = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds()
    used = (now - leaf.not_valid_before_utc).total_seconds()
    if not failures and lifetime > 0 and used / lifetime > RENEWAL_MISSED_AFTER:
        hours = (leaf.not_valid_after_utc - now).total_seconds() / 3600
        warnings.append(f"it has used {used / lifetime:.0%} of its lifetime and expires in "
                        f"{hours:.1f} h: it missed its renewal")
    return failures, warnings


# -- reading a proxy's live secrets (config_dump) ----------------------------------------------

def serving_chain_pem(dump: Any) -> str | None:
    """The certificate chain of the first TLS certificate secret in a ``config_dump`` of
    secrets. Only the certificate chain is read; a private key field is never touched."""
    for secret in _secrets(dump):
        chain = secret.get("tls_certificate", {}).get("certificate_chain", {})
        text = _inline(chain)
        if text:
            return text
    return None


def _secrets(dump: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(dump, dict):
        return
    for config in dump.get("configs", ()):
        entries = config.get("dynamic_active_secrets", []) + config.get("static_secrets", []) \
            if "dynamic_active_secrets" in config or "static_secrets" in config else [config]
        for entry in entries:
            secret = entry.get("secret") if isinstance(entry, dict) else None
            if isinstance(secret, dict):
                yield secret


def _inline(source: dict[str, Any]) -> str | None:
    if isinstance(source.get("inline_string"), str):
        return str(source["inline_string"])
    if isinstance(source.get("inline_bytes"), str):
        try:
            return base64.b64decode(source["inline_bytes"]).decode()
        except (ValueError, UnicodeDecodeError):
            return None
    return None
