"""The hub admits one ADS stream per proxy: a second stream with a live proxy's credential is
refused and recorded, an Envoy that restarted is let in once its old stream ends, a stream that
never sends its first request is closed. Driven through ``XdsHub.serve`` with in-memory
streams (no gRPC)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from tests.unit.xds.sample_configs import sample
from tulle.errors import ApiError
from tulle.xds import types
from tulle.xds.admission import (
    StreamEvent,
    StreamEventKind,
    StreamEventLog,
    exposed_credentials,
)
from tulle.xds.config import ProxyConfig
from tulle.xds.proxy import ProxyInfo
from tulle.xds.server import XdsHub
from tulle.xds.stream import SotwStream

T = TypeVar("T")
BOOKS = "books-1.default"
GRACE_S = 0.3
SILENCE_S = 0.2


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


@dataclass
class Directory:
    """Registered nodes and their xDS credentials."""

    tokens: dict[str, str] = field(default_factory=lambda: {BOOKS: "books-token"})

    def authenticate(self, node_id: str, token: str) -> ProxyInfo | None:
        if self.tokens.get(node_id) != token:
            return None
        name, _, namespace = node_id.partition(".")
        return ProxyInfo(node_id, namespace, name.rsplit("-", 1)[0], "127.0.0.1", None, None,
                         15001, ())


class Source:
    def config_for(self, proxy: ProxyInfo) -> ProxyConfig:
        return sample()


@dataclass
class Client:
    """One client's side of an ADS stream: what it sends, and how its stream ended."""

    token: str
    peer: str
    requests: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    received: list[bytes] = field(default_factory=list)
    aborted: Aborted | None = None
    over: bool = False  # what gRPC's context.done() says
    task: asyncio.Task[None] | None = None

    async def _requests(self) -> AsyncIterator[Any]:
        while (request := await self.requests.get()) is not None:
            yield request

    def send_first(self, node: str = BOOKS) -> None:
        self.requests.put_nowait(discovery_pb2.DiscoveryRequest(
            node=base_pb2.Node(id=node), type_url=types.CLUSTER))

    def hang_up(self) -> None:
        self.requests.put_nowait(None)

    def open(self, hub: XdsHub) -> Client:
        async def run() -> None:
            try:
                async for message in hub.serve(self._requests(), _Context(self), SotwStream):
                    self.received.append(message)
            except Aborted as exc:
                self.aborted = exc

        self.task = asyncio.create_task(run())
        return self


class _Context:
    """The ServicerContext the hub sees."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self._client.token}"),)

    def peer(self) -> str:
        return self._client.peer

    def done(self) -> bool:
        return self._client.over

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


def hub(directory: Directory | None = None) -> XdsHub:
    return XdsHub(directory or Directory(), Source(), first_request_timeout_s=SILENCE_S,
                  handover_grace_s=GRACE_S)


def run(body: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(body())  # type: ignore[arg-type]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def connected(h: XdsHub, peer: str, token: str = "books-token") -> Client:
    client = Client(token, peer).open(h)
    client.send_first()
    await until(lambda: bool(client.received))
    return client


async def ended(client: Client) -> None:
    assert client.task is not None
    await asyncio.wait_for(client.task, 5.0)


def kinds(h: XdsHub) -> list[StreamEventKind]:
    return [e.kind for e in h.stream_events.entries()]


def test_a_second_stream_with_a_live_proxys_credential_is_refused_and_recorded() -> None:
    async def body() -> None:
        h = hub()
        envoy = await connected(h, "ipv4:127.0.0.1:1000")
        thief = Client("books-token", "ipv4:127.0.0.1:2000").open(h)
        thief.send_first()
        await ended(thief)
        assert thief.aborted is not None
        assert thief.aborted.code is grpc.StatusCode.ALREADY_EXISTS
        assert "already has a live xDS stream" in thief.aborted.details
        assert thief.received == [], "the refused stream got no config"
        # The proxy keeps its stream, and its pushes.
        assert h.connected() == [BOOKS]
        [view] = h.sync_views()
        assert view.peer == "ipv4:127.0.0.1:1000"
        [event] = h.stream_events.entries()
        assert (event.kind, event.node, event.peer, event.holder_peer) == (
            StreamEventKind.DUPLICATE, BOOKS, "ipv4:127.0.0.1:2000", "ipv4:127.0.0.1:1000")
        assert event.holder_since == view.connected_at
        assert h.stream_events.totals[StreamEventKind.DUPLICATE] == 1
        before = len(envoy.received)
        h.push_all()
        envoy.requests.put_nowait(discovery_pb2.DiscoveryRequest(type_url=types.LISTENER))
        await until(lambda: len(envoy.received) > before)
        envoy.hang_up()
        await ended(envoy)

    run(body)


def test_an_envoy_that_restarted_gets_in_when_its_old_stream_ends_within_the_grace() -> None:
    async def body() -> None:
        h = hub()
        old = await connected(h, "ipv4:127.0.0.1:1000")
        new = Client("books-token", "ipv4:127.0.0.1:1001").open(h)
        new.send_first()  # arrives before the hub has seen the old stream end
        await asyncio.sleep(GRACE_S / 3)  # the old socket's end is processed a moment later
        old.hang_up()
        await until(lambda: bool(new.received))
        assert new.aborted is None and h.connected() == [BOOKS]
        assert h.sync_views()[0].peer == "ipv4:127.0.0.1:1001"
        assert kinds(h) == []
        new.hang_up()
        await ended(new)

    run(body)


def test_a_holder_that_grpc_reports_over_is_replaced_at_once() -> None:
    async def body() -> None:
        h = hub()
        old = await connected(h, "ipv4:127.0.0.1:1000")
        old.over = True  # the socket closed; the handler has not noticed yet
        new = Client("books-token", "ipv4:127.0.0.1:1001").open(h)
        new.send_first()
        await asyncio.wait_for(until(lambda: bool(new.received)), GRACE_S / 2)
        assert h.sync_views()[0].peer == "ipv4:127.0.0.1:1001" and kinds(h) == []
        await ended(old)  # told to close
        assert h.connected() == [BOOKS], "the old stream's end does not remove the new one"
        new.hang_up()
        await ended(new)

    run(body)


def test_a_new_registration_supersedes_the_stream_of_the_old_credential() -> None:
    async def body() -> None:
        directory = Directory()
        h = hub(directory)
        old = await connected(h, "ipv4:127.0.0.1:1000")
        directory.tokens[BOOKS] = "new-token"  # the workload registered again
        new = await connected(h, "ipv4:127.0.0.1:1001", token="new-token")
        await ended(old)
        assert h.sync_views()[0].peer == "ipv4:127.0.0.1:1001"
        [event] = h.stream_events.entries()
        assert (event.kind, event.peer) == (StreamEventKind.SUPERSEDED,
                                            "ipv4:127.0.0.1:1000")
        assert not event.kind.refused
        new.hang_up()
        await ended(new)

    run(body)


def test_a_stream_without_a_first_request_is_closed() -> None:
    async def body() -> None:
        h = hub()
        silent = Client("books-token", "ipv4:127.0.0.1:3000").open(h)
        await ended(silent)
        assert silent.aborted is not None
        assert silent.aborted.code is grpc.StatusCode.DEADLINE_EXCEEDED
        assert f"no first request within {SILENCE_S:g}s" in silent.aborted.details
        [event] = h.stream_events.entries()
        assert (event.kind, event.node, event.peer) == (StreamEventKind.SILENT, "",
                                                        "ipv4:127.0.0.1:3000")
        assert h.connected() == []

    run(body)


@pytest.mark.parametrize(("node", "token"), [(BOOKS, "wrong"), ("ghost-1.default", "x"),
                                             ("", "books-token")])
def test_an_unknown_node_or_wrong_credential_is_refused(node: str, token: str) -> None:
    async def body() -> None:
        h = hub()
        client = Client(token, "ipv4:127.0.0.1:4000").open(h)
        client.send_first(node)
        await ended(client)
        assert client.aborted is not None
        assert client.aborted.code is grpc.StatusCode.UNAUTHENTICATED
        assert kinds(h) == [StreamEventKind.UNAUTHENTICATED] and h.connected() == []

    run(body)


def test_a_refused_streams_node_is_kept_bounded() -> None:
    async def body() -> None:
        h = hub()
        client = Client("t", "ipv4:127.0.0.1:4000").open(h)
        client.send_first("x" * 10_000)
        await ended(client)
        assert len(h.stream_events.entries()[0].node) == 256

    run(body)


# -- the record ---------------------------------------------------------------------------------

def event(kind: StreamEventKind, at: float, node: str = BOOKS) -> StreamEvent:
    return StreamEvent(kind, node, "ipv4:127.0.0.1:2000", at, "why", "ipv4:127.0.0.1:1000",
                       at - 60)


def test_a_flood_of_silent_streams_cannot_push_a_duplicate_out_of_the_record() -> None:
    log = StreamEventLog(per_kind=3)
    log.record(event(StreamEventKind.DUPLICATE, 10.0))
    for at in range(100):
        log.record(event(StreamEventKind.SILENT, 20.0 + at, node=""))
    entries = log.entries()
    assert [e.kind for e in entries] == [StreamEventKind.DUPLICATE] + [StreamEventKind.SILENT] * 3
    assert log.totals[StreamEventKind.SILENT] == 100


@pytest.mark.parametrize(("events", "registered", "exposed"), [
    # A refused duplicate while the workload's current registration holds: exposed.
    ([event(StreamEventKind.DUPLICATE, 100.0)], {BOOKS: 50.0}, {BOOKS: 1}),
    # The workload registered again since: a new credential, the copied one is dead.
    ([event(StreamEventKind.DUPLICATE, 100.0)], {BOOKS: 150.0}, {}),
    # The workload is gone.
    ([event(StreamEventKind.DUPLICATE, 100.0)], {}, {}),
    # Silent, unauthenticated and superseded streams expose no credential.
    ([event(k, 100.0) for k in StreamEventKind if k is not StreamEventKind.DUPLICATE],
     {BOOKS: 50.0}, {}),
    ([event(StreamEventKind.DUPLICATE, 100.0), event(StreamEventKind.DUPLICATE, 120.0)],
     {BOOKS: 50.0}, {BOOKS: 2}),
])
def test_exposed_credentials(events: list[StreamEvent], registered: dict[str, float],
                             exposed: dict[str, int]) -> None:
    found = exposed_credentials(events, registered)
    assert {node: len(refused) for node, refused in found.items()} == exposed


def test_events_travel_as_json() -> None:
    original = event(StreamEventKind.DUPLICATE, 100.0)
    assert StreamEvent.from_json(original.to_json()) == original
    silent = StreamEvent(StreamEventKind.SILENT, "", "ipv4:127.0.0.1:1", 5.0, "quiet")
    assert StreamEvent.from_json(silent.to_json()) == silent
    with pytest.raises(ApiError, match="stream event"):
        StreamEvent.from_json({"kind": "stolen"})
