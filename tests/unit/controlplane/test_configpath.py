"""The config path: one rebuild per burst of changes, one shared rebuild for a burst of pushes,
waits that never force a rebuild, and nothing after close."""

from __future__ import annotations

import asyncio
from types import MappingProxyType

from tests.unit.model.workloads import workload
from tulle.controlplane.configpath import ConfigPath, MeshInputs
from tulle.model.mesh import MeshIdentity, MeshSnapshot

IDENTITY = MeshIdentity("", "", MappingProxyType({}))


def path(published: list[MeshSnapshot], debounce_s: float = 0.05) -> ConfigPath:
    workloads = [workload("books-1", "books")]
    return ConfigPath(MeshInputs(lambda: (), lambda: workloads, lambda: IDENTITY),
                      published.append, debounce_s=debounce_s)


def test_a_burst_of_changes_is_one_rebuild() -> None:
    async def body() -> list[MeshSnapshot]:
        published: list[MeshSnapshot] = []
        config = path(published)
        for _ in range(20):
            config.changed()
        assert config.pending and not published
        await asyncio.sleep(0.15)
        assert not config.pending
        return published

    published = asyncio.run(body())
    assert [m.version for m in published] == [1]
    assert "books-1.default" in published[0].workloads


def test_push_soon_shares_one_rebuild_among_its_callers() -> None:
    async def body() -> tuple[list[int], int]:
        published: list[MeshSnapshot] = []
        config = path(published)
        versions = await asyncio.gather(*(config.push_soon() for _ in range(10)))
        return list(versions), len(published)

    versions, pushes = asyncio.run(body())
    assert versions == [1] * 10 and pushes == 1


def test_settled_waits_for_the_due_rebuild_and_never_forces_one() -> None:
    async def body() -> tuple[int, bool, int, int]:
        published: list[MeshSnapshot] = []
        config = path(published, debounce_s=3600.0)  # the rebuild is due, but far off
        idle = await config.settled()  # nothing pending: the current snapshot at once
        config.changed()
        waiter = asyncio.create_task(config.settled())
        await asyncio.sleep(0.05)
        waited = not waiter.done() and not published
        config.push()  # what the debounce timer would do
        mesh = await asyncio.wait_for(waiter, 1.0)
        return idle.version, waited, mesh.version, len(published)

    idle, waited, settled, pushes = asyncio.run(body())
    assert idle == 0
    assert waited, "settled() forced a rebuild instead of waiting for the due one"
    assert (settled, pushes) == (1, 1)


def test_push_cancels_the_pending_debounce() -> None:
    async def body() -> list[int]:
        published: list[MeshSnapshot] = []
        config = path(published, debounce_s=0.05)
        config.changed()
        config.push()
        await asyncio.sleep(0.1)
        return [m.version for m in published]

    assert asyncio.run(body()) == [1]


def test_after_close_changes_build_nothing_and_waiters_wake() -> None:
    async def body() -> tuple[int, int]:
        published: list[MeshSnapshot] = []
        config = path(published, debounce_s=0.05)
        config.changed()
        waiter = asyncio.create_task(config.settled())
        await asyncio.sleep(0)
        config.close()
        mesh = await asyncio.wait_for(waiter, 1.0)
        config.changed()
        await asyncio.sleep(0.1)
        return mesh.version, len(published)

    assert asyncio.run(body()) == (0, 0)
