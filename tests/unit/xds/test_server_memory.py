"""The xDS server keeps no stream's sent response: a quiet stream holds what it knows of its
proxy, not the bytes of its last push (grpc.aio kept a generator handler's last message
until the next, which on a quiet stream is its whole first config)."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from dataclasses import dataclass

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from tests.unit.xds.envoy_side import config
from tests.unit.xds.sample_configs import assignment, cluster, listener, route_table
from tulle.xds import types
from tulle.xds.config import ProxyConfig
from tulle.xds.proxy import ProxyInfo
from tulle.xds.server import XdsHub, build_server

STREAMS = 20
CLUSTERS = 100
ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


@dataclass
class Directory:
    def authenticate(self, node_id: str, token: str) -> ProxyInfo | None:
        if token != f"{node_id}-token":
            return None
        return ProxyInfo(node_id, "default", "web", "127.0.0.1", None, None, 15001, ())


@dataclass
class Source:
    config: ProxyConfig

    def config_for(self, proxy: ProxyInfo) -> ProxyConfig:
        return self.config  # one config shared by every proxy: only the streams' own count


async def _first_clusters(port: int, node: str, got: list[int], hold: asyncio.Event) -> None:
    """A proxy that takes its clusters (their size goes to ``got``), then stays connected
    and quiet until ``hold``."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(
            ADS, request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=lambda data: data)(
            metadata=(("authorization", f"Bearer {node}-token"),))
        await call.write(discovery_pb2.DiscoveryRequest(
            node=base_pb2.Node(id=node), type_url=types.CLUSTER))
        got.append(len(await call.read()))
        await hold.wait()
        call.cancel()


def test_a_quiet_stream_keeps_nothing_of_what_it_sent() -> None:
    async def body() -> tuple[int, int]:
        names = [f"svc-{i:04d}" for i in range(CLUSTERS)]
        clusters = [cluster(name) for name in names]
        for made in clusters:  # large clusters, few of them: the response is large, the
            made.alt_stat_name = "x" * 2000  # stream's record of what it sent is small
        hub = XdsHub(Directory(), Source(config(
            1, *clusters, *(assignment(name, (8080,)) for name in names), listener(15001),
            route_table(names))))
        server, port = build_server(hub, "127.0.0.1:0")
        await server.start()
        hold = asyncio.Event()
        try:
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            got: list[int] = []
            clients = [asyncio.create_task(
                _first_clusters(port, f"web-{k}.default", got, hold)) for k in range(STREAMS)]
            while len(got) < STREAMS:  # a readiness wait: every proxy has its clusters
                await asyncio.sleep(0.05)
            gc.collect()
            kept = tracemalloc.get_traced_memory()[0] - before
            hold.set()
            await asyncio.gather(*clients)
            return kept, min(got)
        finally:
            hold.set()
            await server.stop(None)

    tracemalloc.start()
    try:
        kept, response = asyncio.run(body())
    finally:
        tracemalloc.stop()
    # Each stream's first response is its whole clusters; kept, they would be STREAMS times.
    assert response > 200_000
    print(f"measured: {STREAMS} quiet streams keep {kept} bytes; one response is {response}")
    assert kept < STREAMS * response / 2, (
        f"{STREAMS} quiet streams keep {kept} bytes; one response is {response}")
