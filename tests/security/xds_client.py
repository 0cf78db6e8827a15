"""A raw ADS client for the probes: what someone holding a copied xDS credential, or nothing at
all, can do against the xDS port.

The control plane cannot tell local users apart on a loopback TCP connection: what it judges
is what the stream presents (the credential, the node). So these probes run in the test
process with grpc (the neighbour's own Python would need a gRPC library, not a privilege),
and present exactly what a neighbour's client would.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from tests.support.mesh import Mesh
from tulle.xds import types

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
ACCESS_LOGS = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs"


@dataclass(frozen=True)
class Outcome:
    """How a probe's stream went: the status it ended with, and the types of any config it
    was sent."""

    code: grpc.StatusCode | None  # None: still open when the probe gave up
    details: str
    received: tuple[str, ...]  # type URLs of the responses, in order
    seconds: float


def xds_credential(mesh: Mesh, name: str, namespace: str = "default") -> str:
    """The credential in a workload's bootstrap, as someone who copied the file has it."""
    bootstrap = json.loads((mesh.paths.workload_dir(namespace, name) / "bootstrap.json")
                           .read_text())
    [service] = bootstrap["dynamic_resources"]["ads_config"]["grpc_services"]
    [header] = service["initial_metadata"]
    return str(header["value"]).removeprefix("Bearer ")


async def _stream(port: int, token: str, node: str | None, delta: bool,
                  give_up_s: float, *, host: str = "127.0.0.1",
                  tls: grpc.ChannelCredentials | None = None) -> Outcome:
    loop = asyncio.get_running_loop()
    started = loop.time()
    method, request_type, response_type = (
        ("DeltaAggregatedResources", discovery_pb2.DeltaDiscoveryRequest,
         discovery_pb2.DeltaDiscoveryResponse) if delta else
        ("StreamAggregatedResources", discovery_pb2.DiscoveryRequest,
         discovery_pb2.DiscoveryResponse))
    async with (grpc.aio.insecure_channel(f"{host}:{port}") if tls is None else
                # The control plane's certificate names localhost besides its SPIFFE ID.
                grpc.aio.secure_channel(f"{host}:{port}", tls, options=[
                    ("grpc.ssl_target_name_override", "localhost")])) as channel:
        call: Any = channel.stream_stream(
            ADS + method, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString)(
            metadata=(("authorization", f"Bearer {token}"),), timeout=give_up_s)
        received: list[str] = []
        try:
            if node is not None:
                await call.write(request_type(node=base_pb2.Node(id=node),
                                              type_url=types.CLUSTER))
            async for response in call:
                received.append(response.type_url)
                break  # config was served: that is all a probe needs to know
        except grpc.aio.AioRpcError:
            pass
        if received:
            call.cancel()
            return Outcome(None, "served config", tuple(received), loop.time() - started)
        code = await call.code()
        details = await call.details()
        return Outcome(code, details or "", (), loop.time() - started)


def open_stream(mesh: Mesh, token: str, node: str, *, delta: bool = False,
                give_up_s: float = 15.0) -> Outcome:
    """Open an ADS stream with ``token``, send the first request for ``node``, and see how it
    ends."""
    return asyncio.run(_stream(mesh.endpoint.xds_port, token, node, delta, give_up_s))


def open_tls_stream(address: str, token: str, node: str, *, roots: bytes,
                    key: bytes | None = None, chain: bytes | None = None,
                    give_up_s: float = 15.0) -> Outcome:
    """The same over TLS (xDS beyond loopback), presenting ``chain`` and ``key`` if given."""
    host, port = address.rsplit(":", 1)
    credentials = grpc.ssl_channel_credentials(roots, key, chain)
    return asyncio.run(_stream(int(port), token, node, False, give_up_s, host=host,
                               tls=credentials))


async def _silent_access_log_stream(port: int, give_up_s: float) -> Outcome:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call: Any = channel.stream_unary(
            ACCESS_LOGS, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=lambda b: b)(timeout=give_up_s)
        code = await call.code()
        return Outcome(code, await call.details() or "", (), loop.time() - started)


def silent_streams(mesh: Mesh, count: int, give_up_s: float, *, access_logs: int = 0
                   ) -> list[Outcome]:
    """Open ``count`` ADS streams and ``access_logs`` access-log streams at once, all on the
    xDS port, that never send anything; how each ended."""
    port = mesh.endpoint.xds_port

    async def all_of() -> list[Outcome]:
        return list(await asyncio.gather(
            *(_stream(port, "", None, False, give_up_s) for _ in range(count)),
            *(_silent_access_log_stream(port, give_up_s) for _ in range(access_logs))))

    return asyncio.run(all_of())
