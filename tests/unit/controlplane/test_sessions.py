"""Agent sessions: the greeting, control messages and heartbeats, draining that waits for the
other proxies, and registrations kept when the control plane itself stops."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.fakes import FakeProxies, FakePush
from tests.unit.controlplane.support import CREDS, registry
from tests.unit.model.workloads import workload
from tulle.controlplane.services.sessions import AgentChannels, SessionService
from tulle.errors import IdentityError, UsageError
from tulle.model.workload import Workload, WorkloadCertificate, WorkloadState
from tulle.registry.registry import WorkloadRegistry


def service(reg: WorkloadRegistry, proxies: FakeProxies, push: FakePush
            ) -> tuple[SessionService, AgentChannels]:
    channels = AgentChannels()

    def bootstrap(w: Workload, token: str) -> dict[str, str]:
        return {"node": w.node_id, "token": token}

    return SessionService(reg, channels, enrol=lambda w: {"spiffeId": w.account},
                          bootstrap=bootstrap, push=push, wait_synced=proxies.wait_synced,
                          connected=proxies.connected), channels


def test_a_session_greets_then_relays_control_messages_and_heartbeats(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    sessions, channels = service(reg, FakeProxies(), FakePush())

    async def body() -> list[object]:
        session = sessions.open(workload("books-1", "books"), CREDS)
        channels.broadcast({"renew": True})
        return [session.greeting["bootstrap"], await session.next_message(),
                await session.next_message(heartbeat_s=0.01)]

    bootstrap, control, heartbeat = asyncio.run(body())
    assert bootstrap == {"node": "books-1.default", "token": CREDS.xds_token}
    assert control == {"renew": True}
    assert isinstance(heartbeat, dict) and "heartbeat" in heartbeat
    assert reg.is_connected("books-1.default")


def test_a_closed_connection_ends_the_registration(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    sessions, _ = service(reg, FakeProxies(), FakePush())

    async def body() -> None:
        sessions.open(workload("books-1", "books"), CREDS).ended()

    asyncio.run(body())
    assert reg.get("books-1.default") is None


def test_stopping_ends_sessions_and_keeps_registrations(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    sessions, _ = service(reg, FakeProxies(), FakePush())

    async def body() -> object:
        session = sessions.open(workload("books-1", "books"), CREDS)
        sessions.stop()
        message = await session.next_message()
        session.ended()  # the connection closes because we stop
        return message

    assert asyncio.run(body()) is None
    assert reg.get("books-1.default") is not None


def test_draining_pushes_and_waits_for_every_other_proxy(tmp_path: Path) -> None:
    reg = registry(tmp_path, "books-1", "web-1")
    proxies = FakeProxies(["books-1.default", "web-1.default"])
    push = FakePush(version=7)
    sessions, _ = service(reg, proxies, push)

    change = asyncio.run(sessions.set_state("books-1.default", "draining"))
    assert (change.state, change.synced, change.mesh_version) == (WorkloadState.DRAINING,
                                                                  True, 8)
    assert proxies.waits == [(8, 5.0, ("web-1.default",))]
    assert reg.get("books-1.default").state is WorkloadState.DRAINING  # type: ignore[union-attr]


def test_other_states_do_not_wait(tmp_path: Path) -> None:
    reg = registry(tmp_path, "books-1")
    proxies = FakeProxies(["books-1.default"])
    push = FakePush()
    sessions, _ = service(reg, proxies, push)
    change = asyncio.run(sessions.set_state("books-1.default", "ready"))
    assert change.synced is None and push.pushes == 0 and not proxies.waits


def test_an_unknown_state_is_a_usage_error_naming_the_valid_ones(tmp_path: Path) -> None:
    sessions, _ = service(registry(tmp_path, "books-1"), FakeProxies(), FakePush())
    with pytest.raises(UsageError) as caught:
        asyncio.run(sessions.set_state("books-1.default", "sleepy"))
    assert "ready" in (caught.value.hint or "")


def test_the_greeting_and_later_snapshots_say_which_readiness_probe_to_run(
        tmp_path: Path) -> None:
    from tests.unit.xds.meshes import mesh
    from tests.unit.xds.meshes import service as service_manifest

    reg = registry(tmp_path)
    channels = AgentChannels()
    current = [mesh(1)]  # no Service resource: http, the port accepting is enough
    sessions = SessionService(reg, channels, enrol=lambda w: {}, bootstrap=lambda w, t: {},
                              push=FakePush(), wait_synced=FakeProxies().wait_synced,
                              connected=FakeProxies().connected, mesh=lambda: current[0])

    async def body() -> list[object]:
        session = sessions.open(workload("greeter-1", "greeter"), CREDS)
        sessions.published(current[0])  # unchanged: nothing to say
        current[0] = mesh(2, manifests=[service_manifest("greeter", "grpc")])
        sessions.published(current[0])
        sessions.published(current[0])  # said once
        return [session.greeting["probe"], await session.next_message(),
                await session.next_message(heartbeat_s=0.01)]

    greeting, told, then = asyncio.run(body())
    assert greeting == "connect"
    assert told == {"probe": "grpc"}
    assert isinstance(then, dict) and "heartbeat" in then


def test_a_certificate_that_does_not_vouch_for_the_node_registers_nothing(
        tmp_path: Path) -> None:
    """An agent on another host that opens its session again by certificate: the certificate
    is judged before the workload is registered, and adopted after."""
    reg = registry(tmp_path)
    adopted: list[tuple[str, object]] = []

    def vouch(node: str, der: bytes) -> WorkloadCertificate:
        if der != b"books-1's":
            raise IdentityError(f"the client certificate is not {node}'s")
        return HELD

    sessions = SessionService(reg, AgentChannels(), enrol=lambda w: {}, bootstrap=lambda w, t: {},
                              push=FakePush(), wait_synced=FakeProxies().wait_synced,
                              connected=FakeProxies().connected, vouch=vouch,
                              adopt=lambda node, held: adopted.append((node, held)))

    async def body() -> None:
        with pytest.raises(IdentityError):
            sessions.open(workload("books-1", "books"), CREDS, b"books-2's")
        assert reg.get("books-1.default") is None and adopted == []
        sessions.open(workload("books-1", "books"), CREDS, b"books-1's")

    asyncio.run(body())
    assert reg.is_connected("books-1.default")
    assert adopted == [("books-1.default", HELD)]


HELD = WorkloadCertificate(spiffe_id="spiffe://mesh.local/ns/default/sa/books", serial="11",
                           not_before=0.0, not_after=1.0, issuer_id="i", chain_pem="",
                           key_path="/k", issued_at=0.0)
