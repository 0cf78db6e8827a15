"""The CA on disk: first start, private files, reopening, refusing a corrupt or foreign state."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.unit.identity.certs import BOOKS_ID, TRUST_DOMAIN, chain_of, csr, open_ca, uri
from tulle.errors import StateError
from tulle.identity.ca import CaState, CertificateAuthority, Rotation


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_creates_a_root_and_an_issuer_it_signed(tmp_path: Path) -> None:
    ca = open_ca(tmp_path)
    [root] = ca.anchors
    assert ca.trust_domain == TRUST_DOMAIN
    assert root.is_root and not ca.issuer.is_root
    ca.issuer.certificate.verify_directly_issued_by(root.certificate)
    assert ca.bundle_pem() == root.pem, "the issuer is not a trust anchor"
    assert ca.state == CaState(TRUST_DOMAIN, (root.id,), ca.issuer.id)


def test_the_directory_and_every_file_are_private(tmp_path: Path) -> None:
    ca = open_ca(tmp_path)
    directory = tmp_path / "ca"
    assert mode(directory) == 0o700
    files = sorted(p.name for p in directory.iterdir())
    assert files == sorted(["state.json", f"{ca.anchors[0].id}.crt", f"{ca.anchors[0].id}.key",
                            f"{ca.issuer.id}.crt", f"{ca.issuer.id}.key"])
    assert {p.name: mode(p) for p in directory.iterdir()} == dict.fromkeys(files, 0o600)


def test_reopening_loads_the_same_authorities(tmp_path: Path) -> None:
    first = open_ca(tmp_path)
    issued = first.sign(csr([uri(BOOKS_ID)]), BOOKS_ID, 3600)

    again = open_ca(tmp_path)
    assert again.state == first.state
    assert again.issuer.certificate == first.issuer.certificate
    assert again.issuer.key is not None and first.issuer.key is not None
    assert again.issuer.key.private_numbers() == first.issuer.key.private_numbers()
    assert again.bundle_pem() == first.bundle_pem()
    assert again.chains_to_bundle(issued.chain_pem), "certificates from before still chain"
    assert again.sign(csr([uri(BOOKS_ID)]), BOOKS_ID, 60).issuer_id == issued.issuer_id


def test_reopening_with_another_trust_domain_is_refused(tmp_path: Path) -> None:
    open_ca(tmp_path)
    with pytest.raises(StateError) as caught:
        open_ca(tmp_path, "other.org")
    assert "example.org" in caught.value.message and "other.org" in caught.value.message
    assert caught.value.hint


CORRUPT_STATES = [
    ("not JSON", "{not json"),
    ("empty file", ""),
    ("no issuer", '{"trust_domain": "example.org", "anchors": []}'),
    ("anchors a number", '{"trust_domain": "example.org", "anchors": 5, "issuer": "x"}'),
    ("a JSON list", "[]"),
    ("JSON null", "null"),
    ("rotation missing fields",
     '{"trust_domain": "example.org", "anchors": [], "issuer": "x", "rotation": {"kind": 1}}'),
]


@pytest.mark.parametrize("text", [c[1] for c in CORRUPT_STATES],
                         ids=[c[0] for c in CORRUPT_STATES])
def test_a_corrupt_state_file_is_a_state_error(tmp_path: Path, text: str) -> None:
    open_ca(tmp_path)
    (tmp_path / "ca" / "state.json").write_text(text)
    with pytest.raises(StateError) as caught:
        open_ca(tmp_path)
    assert "state.json" in caught.value.message
    assert "backup" in (caught.value.hint or "")


@pytest.mark.parametrize(("suffix", "content"), [
    (".crt", None),
    (".crt", "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"),
    (".key", "not a key"),
], ids=["certificate missing", "certificate garbled", "key garbled"])
def test_an_unreadable_ca_file_is_a_state_error(tmp_path: Path, suffix: str,
                                                content: str | None) -> None:
    issuer_id = open_ca(tmp_path).issuer.id
    path = tmp_path / "ca" / f"{issuer_id}{suffix}"
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    with pytest.raises(StateError) as caught:
        open_ca(tmp_path)
    assert issuer_id in caught.value.message


ROTATION = Rotation(kind="root", stage=2, old_anchors=("r1", "r0"), old_issuer="i1",
                    new_issuer="i2", new_anchor="r2", started_at=1700000000.5)
STATES = [
    CaState(TRUST_DOMAIN, ("r1",), "i1"),
    CaState(TRUST_DOMAIN, ("r1", "r2"), "i1", ROTATION),
    CaState(TRUST_DOMAIN, ("r1",), "i1", Rotation("issuer", 1, ("r1",), "i1", "i2")),
]


@pytest.mark.parametrize("state", STATES, ids=["steady", "root rotation", "issuer rotation"])
def test_state_json_round_trip(state: CaState) -> None:
    text = state.to_json()
    assert CaState.from_json(text) == state
    assert CaState.from_json(text).to_json() == text


def test_a_rotation_in_progress_reloads_every_authority_it_names(tmp_path: Path) -> None:
    ca = open_ca(tmp_path)
    root = ca.new_root()
    issuer = ca.new_issuer(root)
    ca.commit(ca.with_rotation(Rotation("root", 1, ca.state.anchors, ca.issuer.id, issuer.id,
                                        root.id, 1.0)))

    again = CertificateAuthority.open(tmp_path / "ca", TRUST_DOMAIN)
    assert again.state.rotation == ca.state.rotation
    assert again.authority(root.id).certificate == root.certificate
    assert again.authority(issuer.id).key is not None
    assert [a.id for a in again.anchors] == list(ca.state.anchors), "not yet in the bundle"
    new_chain = chain_of(again.authority(issuer.id).pem + root.pem)
    new_chain[0].verify_directly_issued_by(new_chain[1])
