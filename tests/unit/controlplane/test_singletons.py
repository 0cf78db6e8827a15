"""Singleton work under an election: the job runs only while this replica holds it, and
stops at once when the lease may have lapsed or another replica holds the election."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tulle.controlplane import singletons
from tulle.controlplane.singletons import Fence, Singleton
from tulle.errors import StateError


class Store:
    """What a Singleton asks of its EtcdStore, settable by the test."""

    replica = "a"

    def __init__(self) -> None:
        self.lease = 10.0
        self.holder: str | None = None
        self.reachable = True

    def lease_left(self) -> float:
        return self.lease

    def campaign(self, name: str) -> int:
        if not self.reachable:
            raise StateError("no etcd endpoint answered")
        if self.holder is None:
            self.holder = self.replica
        return 7 if self.holder == self.replica else 0

    def leader(self, name: str) -> str | None:
        return self.holder


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(singletons, "ELECTION_CHECK_S", 0.01)


def recorder() -> tuple[list[Any], Any]:
    runs: list[Any] = []

    async def job(fence: Fence | None) -> None:
        runs.append(fence)
        await asyncio.sleep(3600)

    return runs, job


async def until(condition: Any, timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("timed out")


def test_without_a_shared_store_the_job_just_runs() -> None:
    runs, job = recorder()

    async def body() -> None:
        singleton = Singleton("compaction", job, None)
        task = asyncio.create_task(singleton.run())
        await until(lambda: runs == [None])
        assert singleton.holding is False and singleton.held_since is not None
        task.cancel()

    asyncio.run(body())


def test_the_job_runs_while_held_and_stops_when_the_lease_may_lapse() -> None:
    runs, job = recorder()
    store = Store()

    async def body() -> None:
        singleton = Singleton("compaction", job, store)  # type: ignore[arg-type]
        task = asyncio.create_task(singleton.run())
        # Held, and the job's task has started (it is created as the election is won).
        await until(lambda: singleton.holding and runs)
        assert runs == [Fence("compaction", 7)]
        store.lease = 0.5  # etcd has not confirmed a renewal for a while
        await until(lambda: not singleton.holding)
        assert singleton.held_since is None
        await asyncio.sleep(0.05)
        assert len(runs) == 1, "no campaign while the lease is in doubt"
        store.lease = 10.0  # renewed: it campaigns again, and the key is still its own
        await until(lambda: singleton.holding and len(runs) == 2)
        task.cancel()

    asyncio.run(body())


def test_another_replica_holding_the_election_stops_the_job_and_wins_nothing_here() -> None:
    runs, job = recorder()
    store = Store()

    async def body() -> None:
        singleton = Singleton("compaction", job, store)  # type: ignore[arg-type]
        task = asyncio.create_task(singleton.run())
        await until(lambda: singleton.holding and runs)
        store.holder = "b"  # our lease lapsed and b won meanwhile
        await until(lambda: not singleton.holding)
        await asyncio.sleep(0.05)
        assert len(runs) == 1 and not singleton.holding
        store.reachable = False
        store.holder = None
        await asyncio.sleep(0.05)
        assert not singleton.holding, "etcd did not answer: nothing won"
        task.cancel()

    asyncio.run(body())


def test_a_job_that_fails_is_run_again_by_the_next_campaign() -> None:
    runs: list[Any] = []

    async def job(fence: Fence | None) -> None:
        runs.append(fence)
        if len(runs) == 1:
            raise StateError("etcd went away mid-compaction")
        await asyncio.sleep(3600)

    async def body() -> None:
        singleton = Singleton("compaction", job, Store())  # type: ignore[arg-type]
        task = asyncio.create_task(singleton.run())
        await until(lambda: len(runs) == 2)
        assert singleton.holding
        task.cancel()

    asyncio.run(body())


def test_the_compaction_job_keeps_the_newest_revisions(tmp_path: Any) -> None:
    from tests.unit.store.test_sqlite import A, manifest
    from tulle.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "store.db")
    for port in range(6):
        store.apply([(A, manifest(A, port=port))])

    async def body() -> None:
        task = asyncio.create_task(singletons.compaction_job(store, 2, 0.01)(None))
        await until(lambda: store.oldest_revision() == 5)
        store.apply([(A, manifest(A, port=99))])
        await until(lambda: store.oldest_revision() == 6)
        task.cancel()

    asyncio.run(body())
    assert [c.revision for c in store.history()] == [7, 6]
