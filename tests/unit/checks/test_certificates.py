"""Certificate evaluators against certificates made here: algorithms, dates, CA flags, and
signatures verified with the parent's key (a forged issuer naming the right root fails)."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from tulle.checks import certificates as certs
from tulle.checks.controlplane import (
    evaluate_algorithms,
    evaluate_anchors,
    evaluate_expiry,
    evaluate_issuer_signed,
)
from tulle.checks.runner import Status

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
Key = Any


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make(subject: str, key: Key, *, signer: tuple[x509.Name, Key] | None = None,
         days: float = 365, start_days: float = -1, ca: bool = True,
         uri: str | None = None) -> x509.Certificate:
    issuer_name, issuer_key = signer or (_name(subject), key)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + dt.timedelta(days=start_days))
               .not_valid_after(NOW + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if uri:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
    if isinstance(issuer_key, ed25519.Ed25519PrivateKey):
        return builder.sign(issuer_key, None)
    return builder.sign(issuer_key, hashes.SHA256())


def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


ROOT_KEY, ISSUER_KEY = p256(), p256()
ROOT = make("root", ROOT_KEY, days=3650)
ISSUER = make("issuer", ISSUER_KEY, signer=(ROOT.subject, ROOT_KEY))


def pem(*certificates: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)


# -- algorithms --------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "problem"), [
    (ec.generate_private_key(ec.SECP256R1()), None),
    (ec.generate_private_key(ec.SECP384R1()), None),
    (ec.generate_private_key(ec.SECP521R1()), "curve secp521r1"),
    (ec.generate_private_key(ec.SECP256K1()), "curve secp256k1"),
    (rsa.generate_private_key(65537, 2048), None),
    (rsa.generate_private_key(65537, 1024), "1024-bit RSA"),
    (ed25519.Ed25519PrivateKey.generate(), "Ed25519PublicKey"),
])
def test_algorithms(key: Key, problem: str | None) -> None:
    certificate = make("ca", key)
    found = certs.algorithm_problem(certificate)
    if problem is None:
        assert found is None
        assert evaluate_algorithms([certificate]).status is Status.OK
    else:
        assert found is not None and problem in found
        assert evaluate_algorithms([ROOT, certificate]).status is Status.FAILED


# -- dates -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("start_days", "days", "problem"), [
    (-1, 30, None),
    (-10, -1, "expired on 2029-12-31"),
    (2, 30, "not valid before 2030-01-03"),
])
def test_validity(start_days: float, days: float, problem: str | None) -> None:
    certificate = make("ca", p256(), start_days=start_days, days=days)
    assert certs.validity_problem(certificate, NOW) == (
        None if problem is None else f"CN=ca {'is ' if 'valid' in problem else ''}{problem}"
        + (" 00:00 UTC" if "valid" in problem else ""))


@pytest.mark.parametrize(("days", "status"), [
    (3650, Status.OK), (61, Status.OK), (59, Status.WARNING), (1, Status.WARNING),
])
def test_days_left(days: float, status: Status) -> None:
    outcome = evaluate_expiry([ROOT, make("issuer", p256(), days=days)], NOW, 60)
    assert outcome.status is status
    if status is Status.WARNING:
        assert f"CN=issuer expires in {days} days" in outcome.message
    assert outcome.details["daysLeft"]["CN=issuer"] == pytest.approx(days)


# -- anchors and the issuer's signature ----------------------------------------------------------

def test_a_valid_self_signed_root_passes() -> None:
    assert evaluate_anchors([ROOT], NOW).status is Status.OK


@pytest.mark.parametrize(("anchor", "problem"), [
    (make("leafy", p256(), ca=False), "not a CA certificate"),
    (make("old", p256(), days=-1, start_days=-30), "expired"),
    # Claims to be self-issued, but another key signed it.
    (make("fake", p256(), signer=(_name("fake"), p256())), "not self-signed"),
])
def test_bad_anchors_fail(anchor: x509.Certificate, problem: str) -> None:
    outcome = evaluate_anchors([ROOT, anchor], NOW)
    assert outcome.status is Status.FAILED and problem in outcome.message


def test_empty_bundle_fails() -> None:
    assert evaluate_anchors([], NOW).status is Status.FAILED


def test_issuer_signed_by_the_anchor() -> None:
    outcome = evaluate_issuer_signed(ISSUER, [ROOT])
    assert outcome.status is Status.OK and outcome.details["signer"] == "CN=root"


def test_issuer_naming_the_root_but_signed_by_another_key_fails() -> None:
    forged = make("issuer", ISSUER_KEY, signer=(ROOT.subject, p256()))
    assert forged.issuer == ROOT.subject  # the names line up; only the signature tells
    assert evaluate_issuer_signed(forged, [ROOT]).status is Status.FAILED


def test_issuer_of_another_pki_fails_and_is_found_among_several_anchors() -> None:
    other_key = p256()
    other_root = make("other root", other_key)
    other_issuer = make("other issuer", p256(), signer=(other_root.subject, other_key))
    assert evaluate_issuer_signed(other_issuer, [ROOT]).status is Status.FAILED
    # During a root rotation the bundle holds both roots.
    assert evaluate_issuer_signed(other_issuer, [ROOT, other_root]).status is Status.OK


# -- workload chains -----------------------------------------------------------------------------

def leaf(*, start_days: float = -0.5, days: float = 0.5,
         signer: tuple[x509.Name, Key] = (ISSUER.subject, ISSUER_KEY)) -> x509.Certificate:
    return make("web", p256(), signer=signer, start_days=start_days, days=days, ca=False,
                uri="spiffe://tulle.local/ns/default/sa/web")


@pytest.mark.parametrize(("chain", "failure", "warning"), [
    ((leaf(), ISSUER), None, None),
    ((leaf(start_days=-0.9, days=0.1), ISSUER), None, "missed its renewal"),
    ((leaf(start_days=-1, days=-0.1), ISSUER), "expired", None),
    ((leaf(),), "its issuer is not in its chain", None),
    # Signed by an issuer of another PKI that is in the chain, not by ours.
    ((leaf(signer=(_name("rogue"), ROOT_KEY)), make("rogue", ROOT_KEY, signer=(
        _name("rogue root"), p256()))), "not signed by a current trust anchor", None),
    ((leaf(), make("issuer", ISSUER_KEY, signer=(ROOT.subject, ROOT_KEY), days=-1,
                   start_days=-5)), "its issuer: CN=issuer expired", None),
    ((), "no serving certificate", None),
])
def test_leaf_chains(chain: tuple[x509.Certificate, ...], failure: str | None,
                     warning: str | None) -> None:
    failures, warnings = certs.leaf_problems(list(chain), [ROOT], NOW)
    assert (failure is None) == (not failures), failures
    if failure:
        assert failure in " ".join(failures)
    assert (warning is None) == (not warnings), warnings
    if warning:
        assert warning in " ".join(warnings)


# -- reading config_dump -------------------------------------------------------------------------

def _dump(chain: dict[str, str]) -> dict[str, Any]:
    key = {"inline_bytes": base64.b64encode(b"[redacted]").decode()}
    return {"configs": [
        {"name": "tulle-trust-bundle", "secret": {"name": "tulle-trust-bundle",
                                                  "validation_context": {}}},
        {"name": "tulle-identity", "secret": {"name": "tulle-identity", "tls_certificate": {
            "certificate_chain": chain, "private_key": key}}}]}


def test_serving_chain_from_inline_string_and_bytes() -> None:
    text = pem(leaf(), ISSUER)
    assert certs.serving_chain_pem(_dump({"inline_string": text})) == text
    encoded = base64.b64encode(text.encode()).decode()
    assert certs.serving_chain_pem(_dump({"inline_bytes": encoded})) == text
    assert certs.serving_chain_pem({"configs": []}) is None
    assert "redacted" not in (certs.serving_chain_pem(_dump({"inline_string": text})) or "")
