"""Tap sessions attach only after their proxies ACKed the loggers and close whatever happens;
the mesh views push only on `sync`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import MappingProxyType

import pytest

from tests.support.fakes import FakeProxies, FakePush
from tests.unit.controlplane.support import registry
from tests.unit.model.workloads import workload
from tulle.controlplane.services.mesh import MeshViews
from tulle.controlplane.services.tap import TapService
from tulle.errors import NotFoundError
from tulle.model.mesh import MeshIdentity, MeshSnapshot, build_mesh
from tulle.tap.filters import TapFilter
from tulle.tap.hub import TapHub

SNAPSHOT = build_mesh(2, (), [workload("books-1", "books"), workload("web-1", "web")],
                      MeshIdentity("", "", MappingProxyType({})))


async def current() -> MeshSnapshot:
    return SNAPSHOT


def tap_service(proxies: FakeProxies, push: FakePush) -> tuple[TapService, TapHub]:
    hub = TapHub(lambda: SNAPSHOT)
    return TapService(hub, current, push.soon, push.changed, proxies.wait_synced,
                      settle_s=0.0), hub


def test_a_workload_tap_waits_for_its_proxy_then_detaches() -> None:
    proxies, push = FakeProxies(["books-1.default", "web-1.default"]), FakePush(version=2)
    taps, hub = tap_service(proxies, push)
    attached = asyncio.run(taps.attach("books-1", "default", TapFilter()))
    assert attached.proxies == ("books-1.default",) and attached.synced
    assert attached.mesh_version == 3 and proxies.waits == [(3, 10.0, ("books-1.default",))]
    assert len(hub.sessions()) == 1
    taps.detach(attached.session)
    assert not hub.sessions() and push.changes == 1, "the loggers go on the next push"


def test_a_failed_attach_leaves_no_session_behind() -> None:
    class Broken(FakeProxies):
        async def wait_synced(self, *args: object, **kwargs: object) -> bool:
            raise asyncio.CancelledError  # the client went away while we waited

    push = FakePush()
    taps, hub = tap_service(Broken(), push)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(taps.attach("service/books", "default", TapFilter()))
    assert not hub.sessions() and push.changes == 1


def test_an_unknown_target_opens_nothing() -> None:
    push = FakePush()
    taps, hub = tap_service(FakeProxies(), push)
    with pytest.raises(NotFoundError):
        asyncio.run(taps.attach("ghost-1", "default", TapFilter()))
    assert not hub.sessions() and push.pushes == 0


def test_views_read_without_pushing_and_sync_pushes_what_is_pending(tmp_path: Path) -> None:
    reg = registry(tmp_path, "books-1")
    proxies = FakeProxies(["books-1.default"])
    pending: list[int] = []
    views = MeshViews(lambda: SNAPSHOT, reg, proxies.connected, lambda: pending.append(1),
                      proxies.wait_synced)
    [books] = views.workloads(None, "books")
    assert books["agentConnected"] and books["proxyConnected"]
    assert {s["name"] for s in views.services("default")} == {"books", "web"}
    assert not pending and not proxies.waits
    result = asyncio.run(views.sync(None, 120.0))
    assert pending == [1] and (result.mesh_version, result.synced) == (2, True)
    assert proxies.waits == [(2, 60.0, None)], "a sync waits at most a minute"
