"""The store check behind GET /v1/health/store, on real SQLite files: healthy, damaged,
missing, not a database."""

from __future__ import annotations

from pathlib import Path

from tulle.controlplane.services.health import inspect_store
from tulle.model.meta import ResourceKey
from tulle.store.sqlite import SqliteStore


def _store(path: Path, changes: int) -> None:
    store = SqliteStore(path)
    for i in range(changes):
        store.apply([(ResourceKey("Service", "default", f"s{i}"), {"kind": "Service",
                                                                    "padding": "x" * 3000})])
    store.close()


def test_a_healthy_store(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    _store(path, 3)
    report = inspect_store(path)
    assert report["opens"] and report["integrity"] == ["ok"] and report["errors"] == []
    assert (report["revision"], report["historyEntries"]) == (3, 3)


def test_a_missing_store_does_not_open(tmp_path: Path) -> None:
    report = inspect_store(tmp_path / "nope.db")
    assert not report["opens"] and "cannot open" in report["errors"][0]


def test_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"this is not a database" * 100)
    report = inspect_store(path)
    assert not report["opens"] and "not a readable SQLite database" in report["errors"][0]


def test_damaged_pages_fail_the_integrity_check(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    _store(path, 40)
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data) - page, 3 * page):  # scribble on table pages
        data[offset + 8: offset + 200] = b"\xff" * 192
    path.write_bytes(bytes(data))
    report = inspect_store(path)
    assert report["errors"], report
    assert report["integrity"] != ["ok"] or not report["opens"]
