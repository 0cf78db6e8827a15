"""SqliteStore: revisions, history, all-or-nothing batches, workloads, durability."""

from __future__ import annotations

import json
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tulle.errors import NotFoundError, StateError
from tulle.model.meta import ResourceKey
from tulle.store.base import ApplyResult
from tulle.store.sqlite import SqliteStore

A = ResourceKey("Service", "default", "a")
B = ResourceKey("Service", "default", "b")
R = ResourceKey("HTTPRoute", "shop", "r")


def manifest(key: ResourceKey, **spec: Any) -> dict[str, Any]:
    return {"kind": key.kind, "metadata": {"name": key.name, "namespace": key.namespace},
            "spec": spec}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "store.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    db_path.parent.mkdir()
    instance = SqliteStore(db_path)
    yield instance
    instance.close()


def actions(results: list[ApplyResult]) -> list[tuple[str, str, int]]:
    return [(r.key.name, r.action, r.revision) for r in results]


def test_apply_creates_configures_and_leaves_unchanged(store: SqliteStore) -> None:
    assert store.revision() == 0
    assert actions(store.apply([(A, manifest(A)), (B, manifest(B))])) == [
        ("a", "created", 1), ("b", "created", 1)]  # one revision for the whole batch
    assert actions(store.apply([(A, manifest(A, protocol="tcp")), (B, manifest(B))])) == [
        ("a", "configured", 2), ("b", "unchanged", 1)]  # unchanged keeps its last revision
    assert actions(store.apply([(A, manifest(A, protocol="tcp"))])) == [("a", "unchanged", 2)]
    assert store.revision() == 2, "a batch that changes nothing takes no revision"
    assert store.apply([]) == []
    assert store.revision() == 2


def test_key_order_in_a_manifest_does_not_count_as_a_change(store: SqliteStore) -> None:
    store.apply([(A, {"kind": "Service", "spec": {"x": 1, "y": 2}})])
    assert actions(store.apply([(A, {"spec": {"y": 2, "x": 1}, "kind": "Service"})])) == [
        ("a", "unchanged", 1)]


def test_resources_hold_the_latest_manifest_and_timestamps(store: SqliteStore) -> None:
    store.apply([(R, manifest(R)), (A, manifest(A))])
    store.apply([(A, manifest(A, protocol="tcp"))])
    r, a = store.resources()  # ordered by kind, namespace, name
    assert (r.key, a.key) == (R, A)
    assert a.manifest == manifest(A, protocol="tcp")
    assert (a.revision, r.revision) == (2, 1)
    assert a.created_at <= a.updated_at
    assert r.created_at == r.updated_at


def test_history_has_before_and_after_newest_first(store: SqliteStore) -> None:
    store.apply([(A, manifest(A))])
    store.apply([(B, manifest(B))])
    store.apply([(A, manifest(A, protocol="tcp"))])
    store.delete(A)
    changes = [(c.revision, c.key.name, c.action, c.before, c.after) for c in store.history()]
    assert changes == [
        (4, "a", "deleted", manifest(A, protocol="tcp"), None),
        (3, "a", "configured", manifest(A), manifest(A, protocol="tcp")),
        (2, "b", "created", None, manifest(B)),
        (1, "a", "created", None, manifest(A)),
    ]
    assert [c.revision for c in store.history(A)] == [4, 3, 1]
    assert [c.revision for c in store.history(B)] == [2]
    assert store.history(R) == []
    assert [c.revision for c in store.history(limit=2)] == [4, 3]
    times = [c.at for c in store.history()]
    assert times == sorted(times, reverse=True)


def test_trimming_keeps_the_newest_revisions_changes(store: SqliteStore) -> None:
    """Compaction: the history of every revision but the newest N goes; the resources, the
    revision counter and the kept history stay, and a later write numbers on."""
    store.apply([(A, manifest(A)), (B, manifest(B))])  # revision 1: two entries
    for port in range(2, 6):
        store.apply([(A, manifest(A, port=port))])  # revisions 2..5
    assert store.trim_history(keep=2) == 4  # revisions 1..3: 2 + 1 + 1 entries
    assert [c.revision for c in store.history()] == [5, 4]
    assert [c.revision for c in store.history(B)] == []
    assert [c.revision for c in store.history(A)] == [5, 4]
    assert store.oldest_revision() == 4 and store.revision() == 5
    assert [c.revision for c in store.changes_after(0)] == [4, 5]
    assert {s.key: s.manifest for s in store.resources()} == {
        A: manifest(A, port=5), B: manifest(B)}
    assert store.trim_history(keep=2) == 0  # nothing more to do
    assert store.apply([(B, manifest(B, port=1))])[0].revision == 6
    assert store.trim_history(keep=0) == 2  # the newest revision always stays
    assert [c.revision for c in store.history()] == [6]


def test_delete_takes_a_revision_and_missing_is_not_found(store: SqliteStore) -> None:
    store.apply([(A, manifest(A)), (B, manifest(B))])
    result = store.delete(A)
    assert (result.key, result.action, result.revision) == (A, "deleted", 2)
    assert [s.key for s in store.resources()] == [B]
    with pytest.raises(NotFoundError) as caught:
        store.delete(A)
    assert str(caught.value) == "Service default/a not found"
    assert caught.value.hint == "list what exists with `tulle get service --namespace default`"
    assert store.revision() == 2, "a failed delete takes no revision"
    assert actions(store.apply([(A, manifest(A))])) == [("a", "created", 3)]


def test_a_batch_that_fails_midway_writes_nothing(store: SqliteStore) -> None:
    store.apply([(A, manifest(A))])
    unserialisable = manifest(B, when=object())
    with pytest.raises(TypeError):
        store.apply([(A, manifest(A, protocol="tcp")), (R, manifest(R)), (B, unserialisable)])
    assert store.revision() == 1
    assert [(s.key, s.manifest) for s in store.resources()] == [(A, manifest(A))]
    assert [c.revision for c in store.history()] == [1]
    # The store is still usable after the rollback.
    assert actions(store.apply([(B, manifest(B))])) == [("b", "created", 2)]


def test_a_database_error_midway_writes_nothing(store: SqliteStore,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real_dump = json.dumps

    def failing_dumps(value: Any, **kwargs: Any) -> str:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return real_dump(value, **kwargs)

    monkeypatch.setattr("tulle.store.sqlite.json.dumps", failing_dumps)
    with pytest.raises(sqlite3.OperationalError):
        store.apply([(A, manifest(A)), (B, manifest(B))])
    monkeypatch.undo()
    assert store.resources() == []
    assert store.history() == []
    assert store.revision() == 0


def test_workloads_are_saved_replaced_listed_and_deleted(store: SqliteStore) -> None:
    store.save_workload("web-1.default", {"name": "web-1", "state": "starting"})
    store.save_workload("books-1.default", {"name": "books-1", "labels": {"v": "1"}})
    store.save_workload("web-1.default", {"name": "web-1", "state": "ready"})
    assert store.workloads() == [{"name": "books-1", "labels": {"v": "1"}},
                                 {"name": "web-1", "state": "ready"}]
    store.delete_workload("books-1.default")
    store.delete_workload("missing.default")  # deleting what is gone is not an error
    assert store.workloads() == [{"name": "web-1", "state": "ready"}]
    assert store.revision() == 0, "workloads are not resources: no revision"


def test_reopening_keeps_everything(db_path: Path) -> None:
    db_path.parent.mkdir()
    first = SqliteStore(db_path)
    first.apply([(A, manifest(A)), (R, manifest(R))])
    first.delete(R)
    first.save_workload("web-1.default", {"name": "web-1"})
    first.close()
    again = SqliteStore(db_path)
    try:
        assert [(s.key, s.manifest) for s in again.resources()] == [(A, manifest(A))]
        assert again.revision() == 2
        assert [(c.revision, c.action) for c in again.history()] == [
            (2, "deleted"), (1, "created"), (1, "created")]
        assert again.workloads() == [{"name": "web-1"}]
        assert actions(again.apply([(R, manifest(R))])) == [("r", "created", 3)]
    finally:
        again.close()


def test_database_files_are_private(store: SqliteStore, db_path: Path) -> None:
    store.apply([(A, manifest(A))])
    files = [p for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)]
    assert {p.name for p in files} == {"store.db", "store.db-wal", "store.db-shm"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_unusable_database_is_a_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot open the store"):
        SqliteStore(tmp_path / "missing-dir" / "store.db")
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError) as caught:
        SqliteStore(corrupt)
    assert caught.value.hint is not None
    assert "restore it from a backup" in caught.value.hint
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
