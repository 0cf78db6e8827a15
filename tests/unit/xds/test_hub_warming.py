"""Through ``XdsHub.serve``: routes held for a new cluster go out once the proxy has its
endpoints, or at the limit when it never asks for them (the stream's timer, not a request,
releases them)."""

from __future__ import annotations

import asyncio
import time

import pytest
from envoy.service.discovery.v3 import discovery_pb2

from tests.unit.xds.sample_configs import ROUTES, sample
from tests.unit.xds.test_hub_admission import Client, Directory, run, until
from tulle.xds import types, warming
from tulle.xds.config import ProxyConfig
from tulle.xds.proxy import ProxyInfo
from tulle.xds.server import XdsHub

LIMIT_S = 0.4


class Source:
    def __init__(self) -> None:
        self.config = sample()

    def config_for(self, proxy: ProxyInfo) -> ProxyConfig:
        return self.config


def _responses(client: Client) -> list[discovery_pb2.DiscoveryResponse]:
    return [discovery_pb2.DiscoveryResponse.FromString(m) for m in client.received]


def _ask(client: Client, type_url: str, names: tuple[str, ...] = (),
         answering: discovery_pb2.DiscoveryResponse | None = None) -> None:
    client.requests.put_nowait(discovery_pb2.DiscoveryRequest(
        type_url=type_url, resource_names=names,
        version_info=answering.version_info if answering else "",
        response_nonce=answering.nonce if answering else ""))


def _last(client: Client, type_url: str) -> discovery_pb2.DiscoveryResponse:
    return [r for r in _responses(client) if r.type_url == type_url][-1]


async def _started(hub: XdsHub) -> Client:
    """A SotW proxy that subscribed to everything of ``sample()`` and ACKed it."""
    client = Client("books-token", "ipv4:127.0.0.1:3000").open(hub)
    client.send_first()
    for type_url, names in ((types.ENDPOINT, ("a", "b")), (types.LISTENER, ()),
                            (types.ROUTE, (ROUTES,))):
        _ask(client, type_url, names)
    await until(lambda: len(client.received) == 4)
    for type_url, names in ((types.CLUSTER, ()), (types.ENDPOINT, ("a", "b")),
                            (types.LISTENER, ()), (types.ROUTE, (ROUTES,))):
        _ask(client, type_url, names, _last(client, type_url))
    return client


@pytest.fixture(autouse=True)
def short_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warming, "LIMIT", LIMIT_S)


def test_routes_to_a_new_cluster_go_once_its_endpoints_are_acked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warming, "LIMIT", 600.0)  # only the ACK can release them here

    async def body() -> None:
        source = Source()
        hub = XdsHub(Directory(), source)
        client = await _started(hub)
        source.config = sample(2, timeouts={"a": 1, "b": 1, "c": 1})
        hub.push_all()
        await until(lambda: len(client.received) == 5)
        assert _last(client, types.CLUSTER).nonce == _responses(client)[-1].nonce
        _ask(client, types.CLUSTER, (), _last(client, types.CLUSTER))
        _ask(client, types.ENDPOINT, ("a", "b", "c"), _last(client, types.ENDPOINT))
        await until(lambda: len(client.received) == 6)
        assert _responses(client)[-1].type_url == types.ENDPOINT
        await asyncio.sleep(0.05)
        assert len(client.received) == 6  # the routes still wait for c's endpoints' ACK
        _ask(client, types.ENDPOINT, ("a", "b", "c"), _last(client, types.ENDPOINT))
        await until(lambda: len(client.received) == 7)
        assert _responses(client)[-1].type_url == types.ROUTE
        client.hang_up()

    run(body)


def test_routes_go_at_the_limit_when_the_proxy_never_asks_for_the_endpoints() -> None:
    async def body() -> None:
        source = Source()
        hub = XdsHub(Directory(), source)
        client = await _started(hub)
        source.config = sample(2, timeouts={"a": 1, "b": 1, "c": 1})
        pushed = time.time()  # the streams' clock
        hub.push_all()
        await until(lambda: len(client.received) == 5)
        _ask(client, types.CLUSTER, (), _last(client, types.CLUSTER))
        await until(lambda: len(client.received) == 6)
        # Not before the limit (a busy machine only makes it later): the timer released it.
        assert time.time() - pushed >= LIMIT_S
        assert _responses(client)[-1].type_url == types.ROUTE
        client.hang_up()

    run(body)
