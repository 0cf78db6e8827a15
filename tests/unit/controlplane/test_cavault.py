"""The CA's files sealed in a shared store: round trip, the wrong key refused, a sealed file
that cannot stand in for another, and the key's sources and shapes."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.etcd import etcd_server
from tulle.controlplane.cavault import ENV_KEY, SealedFiles, encryption_key
from tulle.errors import StateError, UsageError
from tulle.identity.ca import CertificateAuthority
from tulle.store.etcd import EtcdStore
from tulle.store.etcdclient import EtcdClient

KEY, OTHER = secrets.token_bytes(32), secrets.token_bytes(32)


@pytest.fixture(scope="module")
def etcd_url() -> Iterator[str]:
    with etcd_server() as url:
        yield url


def test_a_ca_in_the_shared_store_is_sealed_and_opens_with_the_key(etcd_url: str) -> None:
    store = EtcdStore(EtcdClient([etcd_url]), prefix="/vault/")
    made = CertificateAuthority.open(SealedFiles(store, KEY), "example.org")
    issuer_key = made.issuer.id + ".key"
    raw = store.read_file("ca", issuer_key)
    assert raw is not None and b"PRIVATE KEY" not in raw
    # Another replica with the same key opens the same CA; one with another key cannot.
    again = CertificateAuthority.open(SealedFiles(store, KEY), "example.org")
    assert again.bundle_pem() == made.bundle_pem() and again.issuer.id == made.issuer.id
    with pytest.raises(StateError, match="not the one it was sealed with"):
        CertificateAuthority.open(SealedFiles(store, OTHER), "example.org")


def test_a_sealed_file_cannot_stand_in_for_another(etcd_url: str) -> None:
    store = EtcdStore(EtcdClient([etcd_url]), prefix="/swap/")
    files = SealedFiles(store, KEY)
    files.write("a.key", b"secret a")
    sealed = store.read_file("ca", "a.key")
    assert sealed is not None
    store.write_file("ca", "b.key", sealed)  # someone with etcd access moves it
    assert files.read("a.key") == b"secret a"
    with pytest.raises(StateError):
        files.read("b.key")


def test_two_replicas_starting_at_once_make_one_ca(etcd_url: str) -> None:
    store = EtcdStore(EtcdClient([etcd_url]), prefix="/race/")
    first = SealedFiles(store, KEY)
    assert first.create("state.json", b"{}") is True
    assert first.create("state.json", b"{other}") is False
    assert first.read("state.json") == b"{}"


def test_a_sealed_file_is_swapped_only_over_what_the_writer_read(etcd_url: str) -> None:
    store = EtcdStore(EtcdClient([etcd_url]), prefix="/cas/")
    a, b = SealedFiles(store, KEY), SealedFiles(store, KEY)
    assert a.swap("state.json", None, b"one") is True
    assert b.swap("state.json", b"one", b"two by b") is True
    assert a.swap("state.json", b"one", b"two by a") is False, "a read one; b wrote since"
    assert a.read("state.json") == b"two by b"
    assert a.swap("state.json", b"two by b", b"three") is True


def test_the_key_comes_from_a_file_or_the_environment(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "k"
    path.write_text(base64.b64encode(KEY).decode() + "\n")
    assert encryption_key(str(path)) == KEY
    monkeypatch.setenv(ENV_KEY, base64.b64encode(OTHER).decode())
    assert encryption_key(None) == OTHER
    monkeypatch.delenv(ENV_KEY)
    with pytest.raises(UsageError, match="needs a key"):
        encryption_key(None)


@pytest.mark.parametrize(("text", "says"), [
    ("not base64!", "not base64"),
    (base64.b64encode(b"short").decode(), "5 bytes, not 32"),
])
def test_a_malformed_key_is_a_usage_error(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "k"
    path.write_text(text)
    with pytest.raises(UsageError, match=says) as caught:
        encryption_key(str(path))
    assert caught.value.hint and "openssl rand -base64 32" in caught.value.hint
