"""SqliteStore.replace, changes_after and oldest_revision: what rollback is built on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tulle.errors import NotFoundError
from tulle.model.meta import ResourceKey
from tulle.store.sqlite import SqliteStore

A = ResourceKey("Service", "default", "a")
B = ResourceKey("Service", "default", "b")
C = ResourceKey("HTTPRoute", "shop", "c")


def manifest(key: ResourceKey, **spec: Any) -> dict[str, Any]:
    return {"kind": key.kind, "metadata": {"name": key.name, "namespace": key.namespace},
            "spec": spec}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    instance = SqliteStore(tmp_path / "store.db")
    yield instance
    instance.close()


def test_replace_writes_and_deletes_in_one_revision(store: SqliteStore) -> None:
    store.apply([(A, manifest(A)), (B, manifest(B))])
    results = store.replace([(A, manifest(A, protocol="tcp")), (C, manifest(C))], [B])
    assert [(r.key, r.action, r.revision) for r in results] == [
        (B, "deleted", 2), (A, "configured", 2), (C, "created", 2)]
    assert store.revision() == 2
    assert {s.key: s.manifest for s in store.resources()} == {
        A: manifest(A, protocol="tcp"), C: manifest(C)}
    assert [(c.key, c.action) for c in store.history() if c.revision == 2] == [
        (C, "created"), (A, "configured"), (B, "deleted")]


def test_replace_with_a_missing_delete_changes_nothing(store: SqliteStore) -> None:
    store.apply([(A, manifest(A))])
    with pytest.raises(NotFoundError):
        store.replace([(A, manifest(A, protocol="tcp"))], [B])
    assert store.revision() == 1
    assert [s.manifest for s in store.resources()] == [manifest(A)]


def test_replace_with_nothing_new_takes_no_revision(store: SqliteStore) -> None:
    store.apply([(A, manifest(A))])
    assert [r.action for r in store.replace([(A, manifest(A))], [])] == ["unchanged"]
    assert store.revision() == 1


def test_changes_after_is_oldest_first_and_oldest_revision(store: SqliteStore) -> None:
    assert store.oldest_revision() == 0
    store.apply([(A, manifest(A))])
    store.apply([(A, manifest(A, protocol="tcp")), (B, manifest(B))])
    store.delete(A)
    assert [(c.revision, c.key, c.action) for c in store.changes_after(1)] == [
        (2, A, "configured"), (2, B, "created"), (3, A, "deleted")]
    assert store.changes_after(3) == []
    assert len(store.changes_after(0)) == 4
    assert store.oldest_revision() == 1
