"""The store, on SQLite: transactional, so a batch is applied whole or not at all.

Revisions number every change to resources. ``history`` keeps the before and after manifest of
each change, which `tulle history` and `tulle rollback` read.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tulle.errors import NotFoundError, StateError
from tulle.model.meta import ResourceKey
from tulle.store.base import Action, ApplyResult, Change, StoredResource

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    manifest TEXT NOT NULL, revision INTEGER NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS revisions (
    revision INTEGER PRIMARY KEY, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    revision INTEGER NOT NULL REFERENCES revisions(revision),
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    action TEXT NOT NULL, before TEXT, after TEXT
);
CREATE INDEX IF NOT EXISTS history_by_key ON history (kind, namespace, name, revision);
CREATE TABLE IF NOT EXISTS workloads (
    node_id TEXT PRIMARY KEY, record TEXT NOT NULL
);
"""


@contextmanager
def _private_files() -> Iterator[None]:
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def _change(row: Sequence[Any]) -> Change:
    revision, at, kind, namespace, name, action, before, after = row
    return Change(revision, at, ResourceKey(kind, namespace, name), action,
                  json.loads(before) if before else None, json.loads(after) if after else None)


def _dump(manifest: Mapping[str, Any]) -> str:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"))


class SqliteStore:
    def __init__(self, path: Path) -> None:
        # Private from the first byte (umask, not chmod after the fact): the store holds
        # workloads' credentials. Covers the -wal and -shm files SQLite creates too.
        try:
            with _private_files():
                self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                try:
                    self._db.execute("PRAGMA journal_mode=WAL")
                    self._db.execute("PRAGMA synchronous=NORMAL")
                    self._db.execute("PRAGMA foreign_keys=ON")
                    self._db.executescript(_SCHEMA)
                except sqlite3.DatabaseError:
                    self._db.close()
                    raise
            for suffix in ("", "-wal", "-shm"):  # files made by an older version
                candidate = Path(f"{path}{suffix}")
                if candidate.exists():
                    candidate.chmod(0o600)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"cannot open the store {path}: {exc}",
                             hint="check the file's permissions; restore it from a backup "
                                  "if it is corrupt") from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def revision(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(revision), 0) FROM revisions").fetchone()
        return int(row[0])

    def resources(self) -> list[StoredResource]:
        rows = self._db.execute(
            "SELECT kind, namespace, name, manifest, revision, created_at, updated_at "
            "FROM resources ORDER BY kind, namespace, name")
        return [StoredResource(ResourceKey(k, ns, n), json.loads(m), rev, created, updated)
                for k, ns, n, m, rev, created, updated in rows]

    def resource(self, key: ResourceKey) -> StoredResource | None:
        row = self._db.execute(
            "SELECT manifest, revision, created_at, updated_at FROM resources "
            "WHERE kind=? AND namespace=? AND name=?",
            (key.kind, key.namespace, key.name)).fetchone()
        if row is None:
            return None
        manifest, revision, created, updated = row
        return StoredResource(key, json.loads(manifest), revision, created, updated)

    def apply(self, manifests: Sequence[tuple[ResourceKey, Mapping[str, Any]]]
              ) -> list[ApplyResult]:
        return self.replace(manifests, ())

    def replace(self, manifests: Sequence[tuple[ResourceKey, Mapping[str, Any]]],
                deletes: Sequence[ResourceKey]) -> list[ApplyResult]:
        now = time.time()
        results: list[ApplyResult] = []
        with self._transaction() as db:
            revision: int | None = None
            for key in deletes:
                row = db.execute(
                    "SELECT manifest FROM resources WHERE kind=? AND namespace=? AND name=?",
                    (key.kind, key.namespace, key.name)).fetchone()
                if row is None:
                    raise NotFoundError(f"{key} not found", hint="nothing was changed")
                if revision is None:
                    revision = self._new_revision(db, now)
                db.execute("DELETE FROM resources WHERE kind=? AND namespace=? AND name=?",
                           (key.kind, key.namespace, key.name))
                db.execute("INSERT INTO history VALUES (?,?,?,?,?,?,?)",
                           (revision, key.kind, key.namespace, key.name, "deleted", row[0], None))
                results.append(ApplyResult(key, "deleted", revision))
            for key, manifest in manifests:
                after = _dump(manifest)
                row = db.execute(
                    "SELECT manifest FROM resources WHERE kind=? AND namespace=? AND name=?",
                    (key.kind, key.namespace, key.name)).fetchone()
                before = row[0] if row else None
                if before == after:
                    results.append(ApplyResult(key, "unchanged", self._current(db, key)))
                    continue
                if revision is None:
                    revision = self._new_revision(db, now)
                action: Action = "configured" if before else "created"
                db.execute(
                    "INSERT INTO resources VALUES (?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET "
                    "manifest=excluded.manifest, revision=excluded.revision, "
                    "updated_at=excluded.updated_at",
                    (key.kind, key.namespace, key.name, after, revision, now, now))
                db.execute("INSERT INTO history VALUES (?,?,?,?,?,?,?)",
                           (revision, key.kind, key.namespace, key.name, action, before, after))
                results.append(ApplyResult(key, action, revision))
        return results

    def delete(self, key: ResourceKey) -> ApplyResult:
        with self._transaction() as db:
            row = db.execute(
                "SELECT manifest FROM resources WHERE kind=? AND namespace=? AND name=?",
                (key.kind, key.namespace, key.name)).fetchone()
            if row is None:
                raise NotFoundError(f"{key} not found",
                                    hint=f"list what exists with `tulle get {key.kind.lower()} "
                                         f"--namespace {key.namespace}`")
            revision = self._new_revision(db, time.time())
            db.execute("DELETE FROM resources WHERE kind=? AND namespace=? AND name=?",
                       (key.kind, key.namespace, key.name))
            db.execute("INSERT INTO history VALUES (?,?,?,?,?,?,?)",
                       (revision, key.kind, key.namespace, key.name, "deleted", row[0], None))
        return ApplyResult(key, "deleted", revision)

    def history(self, key: ResourceKey | None = None, limit: int = 100) -> list[Change]:
        query = ("SELECT h.revision, r.at, h.kind, h.namespace, h.name, h.action, h.before, "
                 "h.after FROM history h JOIN revisions r USING (revision)")
        params: tuple[Any, ...] = ()
        if key is not None:
            query += " WHERE h.kind=? AND h.namespace=? AND h.name=?"
            params = (key.kind, key.namespace, key.name)
        query += " ORDER BY h.revision DESC, h.rowid DESC LIMIT ?"
        return [_change(row) for row in self._db.execute(query, (*params, limit))]

    def changes_after(self, revision: int) -> list[Change]:
        rows = self._db.execute(
            "SELECT h.revision, r.at, h.kind, h.namespace, h.name, h.action, h.before, h.after "
            "FROM history h JOIN revisions r USING (revision) WHERE h.revision > ? "
            "ORDER BY h.revision, h.rowid", (revision,))
        return [_change(row) for row in rows]

    def oldest_revision(self) -> int:
        row = self._db.execute("SELECT COALESCE(MIN(revision), 0) FROM revisions").fetchone()
        return int(row[0])

    def trim_history(self, keep: int, fence: tuple[str, int] | None = None) -> int:
        """Drop the history of every revision but the newest ``keep`` (at least one: the
        newest revision numbers the next); how many entries went. ``fence`` is for shared
        stores: one control plane owns this file."""
        cutoff = self.revision() - max(1, keep)
        if cutoff < 1:
            return 0
        with self._transaction() as db:
            removed = db.execute("DELETE FROM history WHERE revision <= ?", (cutoff,)).rowcount
            db.execute("DELETE FROM revisions WHERE revision <= ?", (cutoff,))
        return int(removed)

    def workloads(self) -> list[Mapping[str, Any]]:
        rows = self._db.execute("SELECT record FROM workloads ORDER BY node_id")
        return [json.loads(record) for (record,) in rows]

    def save_workload(self, node_id: str, record: Mapping[str, Any]) -> None:
        self._db.execute("INSERT INTO workloads VALUES (?, ?) ON CONFLICT DO UPDATE SET "
                         "record=excluded.record", (node_id, json.dumps(record)))

    def delete_workload(self, node_id: str) -> None:
        self._db.execute("DELETE FROM workloads WHERE node_id=?", (node_id,))

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def _new_revision(db: sqlite3.Connection, at: float) -> int:
        cursor = db.execute("INSERT INTO revisions (at) VALUES (?)", (at,))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    @staticmethod
    def _current(db: sqlite3.Connection, key: ResourceKey) -> int:
        row = db.execute("SELECT revision FROM resources WHERE kind=? AND namespace=? AND name=?",
                         (key.kind, key.namespace, key.name)).fetchone()
        return int(row[0])
