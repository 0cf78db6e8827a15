"""Is the application ready? The agent's probe of its port, as the control plane asks for it.

- ``connect``: ready when the port accepts a TCP connection.
- ``grpc`` (the workload's service speaks gRPC): the standard ``grpc.health.v1.Health/Check``
  for the server as a whole (service ""), as Kubernetes' gRPC probe asks by default. SERVING
  is ready; any other answer is not, with the status as the reason; a server that does not
  implement the health service (UNIMPLEMENTED) is ready when its port accepts.

grpcio is imported only by the agents of gRPC services (it costs ~10 MiB; see
``tests/unit/test_agent_footprint.py``). The request and response are encoded by hand (one
string field, one enum field) so that protobuf is not loaded at all.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from tulle.settings import LOOPBACK

ProbeKind = Literal["connect", "grpc"]
PROBE_KINDS: tuple[ProbeKind, ...] = ("connect", "grpc")
CHECK_TIMEOUT_S = 1.0
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
# grpc.health.v1.HealthCheckResponse.ServingStatus
SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str = ""  # why it is not ready; empty when ready


async def probe(kind: ProbeKind, port: int) -> Readiness:
    if not await accepts(port):
        return Readiness(False, f"the application does not accept connections on port {port}")
    if kind == "grpc":
        return await grpc_health(port)
    return Readiness(True)


async def accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port),
                                           CHECK_TIMEOUT_S)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def encode_request(service: str = "") -> bytes:
    """HealthCheckRequest{service}: field 1, length-delimited (empty: no bytes at all)."""
    data = service.encode()
    return b"\x0a" + _varint(len(data)) + data if data else b""


def decode_status(message: bytes) -> int:
    """HealthCheckResponse.status (field 1, varint); 0 (UNKNOWN) when absent."""
    index = 0
    while index < len(message):
        key, index = _read_varint(message, index)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, index = _read_varint(message, index)
            if field == 1:
                return value
        elif wire == 2:
            length, index = _read_varint(message, index)
            index += length
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return 0


def judge(status: int) -> Readiness:
    name = SERVING_STATUS.get(status, str(status))
    if status == 1:
        return Readiness(True)
    return Readiness(False, f"the gRPC health check (grpc.health.v1) says {name}")


async def grpc_health(port: int) -> Readiness:
    import grpc
    import grpc.aio

    # A channel per check, as kubelet does: no reconnect backoff carried between checks. The
    # user's http_proxy must not apply to a loopback call to our own application.
    async with grpc.aio.insecure_channel(f"{LOOPBACK}:{port}",
                                         options=[("grpc.enable_http_proxy", 0)]) as channel:
        check = channel.unary_unary(HEALTH_CHECK, request_serializer=None,
                                    response_deserializer=None)
        try:
            answer = await check(encode_request(), timeout=CHECK_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return Readiness(True)  # no health service: the port accepting is enough
            return Readiness(False, f"the gRPC health check (grpc.health.v1) failed: "
                                    f"{error.code().name} {error.details() or ''}".strip())
    try:
        return judge(decode_status(answer))
    except (ValueError, IndexError):
        return Readiness(False, "the gRPC health check (grpc.health.v1) answered a message "
                                "that is not a HealthCheckResponse")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, index: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[index]
        index += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, index
        shift += 7
