"""Importing a root and an issuer, and the plan `tulle certs rotate --dry-run` shows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.support.fakes import FakeProxies, FakePush
from tests.unit.identity.certs import (
    BOOKS_ID,
    ca_certificate,
    csr,
    key_pem,
    now,
    open_ca,
    p256,
    pem,
    rsa_key,
    uri,
)
from tulle.controlplane.services.rotation import Rotator, load_import
from tulle.errors import ConflictError, IdentityError, UsageError
from tulle.identity.ca import CertificateAuthority, Rotation

PKI = tuple[bytes, bytes, bytes]  # root PEM, issuer PEM, issuer key PEM


def pki() -> PKI:
    root_key, issuer_key = p256(), p256()
    root = ca_certificate("corp root", root_key)
    issuer = ca_certificate("corp issuer", issuer_key, (root, root_key))
    return pem(root), pem(issuer), key_pem(issuer_key)


def test_an_imported_pki_is_stored_without_the_root_key(tmp_path: Path) -> None:
    ca = open_ca(tmp_path)
    root_pem, issuer_pem, issuer_key = pki()
    root, issuer = load_import(ca, root_pem, issuer_pem, issuer_key)
    assert root.key is None and issuer.key is not None
    assert root.pem.encode() == root_pem and issuer.pem.encode() == issuer_pem
    directory = tmp_path / "ca"
    assert (directory / f"{root.id}.crt").exists()
    assert not (directory / f"{root.id}.key").exists()
    assert (directory / f"{issuer.id}.key").read_bytes() == issuer_key
    assert ca.authority(issuer.id) is issuer


def _without_basic_constraints() -> PKI:
    root_pem, _, _ = pki()
    key = p256()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "v1 issuer")])
    bare = (x509.CertificateBuilder().subject_name(name)
            .issuer_name(x509.load_pem_x509_certificate(root_pem).subject)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now()).not_valid_after(now())
            .sign(key, hashes.SHA256()))
    return root_pem, pem(bare), key_pem(key)


def _issuer_of_another_root() -> PKI:
    root_pem, _, _ = pki()
    _, issuer_pem, issuer_key = pki()
    return root_pem, issuer_pem, issuer_key


def _leaf_as_issuer() -> PKI:
    root_key, key = p256(), p256()
    root = ca_certificate("corp root", root_key)
    return pem(root), pem(ca_certificate("leaf", key, (root, root_key), is_ca=False)), key_pem(key)


def _leaf_as_root() -> PKI:
    root_key, key = p256(), p256()
    root = ca_certificate("corp root", root_key, is_ca=False)
    return pem(root), pem(ca_certificate("issuer", key, (root, root_key))), key_pem(key)


def _encrypted_key() -> PKI:
    root_key, key = p256(), p256()
    root = ca_certificate("corp root", root_key)
    locked = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.BestAvailableEncryption(b"secret"))
    return pem(root), pem(ca_certificate("issuer", key, (root, root_key))), locked


def _replace(index: int, make: Callable[[], bytes]) -> Callable[[], PKI]:
    """A valid import with one of its three files replaced by what ``make`` returns."""
    def build() -> PKI:
        parts = list(pki())
        parts[index] = make()
        return cast(PKI, tuple(parts))
    return build


# (case, a builder of the imported files, text the refusal contains)
REFUSED: list[tuple[str, Callable[[], PKI], str]] = [
    ("root not PEM", _replace(0, lambda: b"root"), "cannot read"),
    ("issuer not PEM", _replace(1, lambda: b"issuer"), "cannot read"),
    ("key not PEM", _replace(2, lambda: b"key"), "cannot read"),
    ("key of another certificate", _replace(2, lambda: key_pem(p256())), "does not belong"),
    ("RSA key", _replace(2, lambda: key_pem(rsa_key())), "ECDSA"),
    ("issuer not signed by the root", _issuer_of_another_root, "not signed by the root"),
    ("issuer not a CA", _leaf_as_issuer, "issuer certificate is not a CA"),
    ("root not a CA", _leaf_as_root, "root certificate is not a CA"),
    ("issuer without basic constraints", _without_basic_constraints, "not a CA"),
    ("encrypted key", _encrypted_key, "cannot read"),
]


@pytest.mark.parametrize(("build", "message"), [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_a_bad_import_is_refused_and_nothing_is_stored(tmp_path: Path,
                                                       build: Callable[[], PKI],
                                                       message: str) -> None:
    ca = open_ca(tmp_path)
    before = sorted((tmp_path / "ca").iterdir())
    with pytest.raises(IdentityError) as caught:
        load_import(ca, *build())
    assert message in caught.value.message
    assert sorted((tmp_path / "ca").iterdir()) == before
    assert ca.sign(csr([uri(BOOKS_ID)]), BOOKS_ID, 60).issuer_id == ca.issuer.id


# -- the dry-run plan ----------------------------------------------------------------------------

def rotator(ca: CertificateAuthority, proxies: int = 3, live: int = 2) -> Rotator:
    """A Rotator over the few control-plane parts ``plan`` reads; one workload is offline."""
    workloads = [SimpleNamespace(node_id=f"w{i}.default") for i in range(live + 1)]
    registry = SimpleNamespace(workloads=lambda: workloads,
                               is_connected=lambda node: node != f"w{live}.default")
    fake = FakeProxies([f"p{i}" for i in range(proxies)])
    return Rotator(ca, cast(Any, registry), push=FakePush(), wait_synced=fake.wait_synced,
                   connected=fake.connected, broadcast=lambda message: None,
                   refresh_server_identity=lambda: None)


def test_a_root_rotation_plan_has_three_stages(tmp_path: Path) -> None:
    ca = open_ca(tmp_path)
    state = ca.state
    plan = rotator(ca).plan("root")
    assert [line[:2] for line in plan] == ["1.", "2.", "3."]
    assert "old + new root" in plan[0] and "3 proxies" in plan[0]
    assert "2 workloads" in plan[1]
    assert "drop the old root" in plan[2] and "3 proxies" in plan[2]
    assert ca.state == state, "a dry run changes nothing"


def test_an_issuer_rotation_keeps_the_bundle(tmp_path: Path) -> None:
    plan = rotator(open_ca(tmp_path), proxies=0, live=0).plan("issuer")
    assert "unchanged (same root)" in plan[0] and "0 proxies" in plan[0]
    assert "unchanged (same root)" in plan[2]
    assert "0 workloads" in plan[1]


def test_an_interrupted_rotation_resumes_where_it_stopped(tmp_path: Path) -> None:
    ca = open_ca(tmp_path)
    ca.commit(ca.with_rotation(Rotation("root", 3, ca.state.anchors, ca.issuer.id, "i2", "r2")))
    plan = rotator(ca).plan("root")
    assert plan[0] == "resume the interrupted root rotation at stage 3"
    assert [line[:2] for line in plan[1:]] == ["3."]


@pytest.mark.parametrize(("kind", "error"), [("issuer", ConflictError), ("leaf", UsageError)])
def test_plans_that_cannot_run(tmp_path: Path, kind: str, error: type[Exception]) -> None:
    ca = open_ca(tmp_path)
    ca.commit(ca.with_rotation(Rotation("root", 2, ca.state.anchors, ca.issuer.id, "i2", "r2")))
    with pytest.raises(error):
        rotator(ca).plan(kind)
