"""The gRPC access log service (ALS): where sidecars stream tap entries.

A sidecar opens this stream only while a tap session is attached to it (the access logger is in
its listeners only then). Each stream is authenticated like ADS: the node id in its first
message, and a per-workload bearer token in its metadata. That token is derived from the
workload's xDS credential, so the listener config (which admins can dump) never holds the xDS
credential itself, and the token opens nothing but this stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2

from tulle.xds.admission import FIRST_REQUEST_TIMEOUT_S

log = logging.getLogger("tulle.xds.als")

SERVICE = "envoy.service.accesslog.v3.AccessLogService"


class AccessLogReceiver(Protocol):
    def authenticate_access_log(self, node_id: str, token: str) -> bool | Awaitable[bool]:
        """Whether ``token`` is the access-log credential of proxy ``node_id`` (a worker
        process asks its control plane, so it may answer later)."""

    def receive(self, node_id: str, entries: Sequence[accesslog_pb2.HTTPAccessLogEntry]
                ) -> None:
        """Entries a proxy sent. Called on the event loop: must not block."""


def access_log_token(xds_token: str, node_id: str) -> str:
    """The access-log credential of a proxy, derived from its xDS credential."""
    return hmac.new(xds_token.encode(), f"tulle access log {node_id}".encode(),
                    hashlib.sha256).hexdigest()


def access_log_handler(receiver: AccessLogReceiver,
                       bearer: Callable[[Any], str]) -> grpc.GenericRpcHandler:
    """``bearer``: reads the token from a stream's metadata (shared with the ADS server)."""

    async def stream(requests: AsyncIterator[als_pb2.StreamAccessLogsMessage],
                     context: grpc.aio.ServicerContext) -> als_pb2.StreamAccessLogsResponse:
        try:
            # Envoy opens this stream to flush entries, and sends them (with its identifier)
            # at once: a stream silent this long is not an Envoy.
            async with asyncio.timeout(FIRST_REQUEST_TIMEOUT_S):
                first = await anext(requests, None)
        except TimeoutError:
            log.warning("closed an access-log stream from %s: no first message within %gs",
                        context.peer(), FIRST_REQUEST_TIMEOUT_S)
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"no first message within {FIRST_REQUEST_TIMEOUT_S:g}s")
        if first is None:
            return als_pb2.StreamAccessLogsResponse()
        node_id = first.identifier.node.id
        known = node_id and receiver.authenticate_access_log(
            node_id, bearer(context.invocation_metadata()))
        if inspect.isawaitable(known):
            known = await known
        if not known:
            log.warning("refused access-log stream from %s: unknown node %r or bad credential",
                        context.peer(), node_id)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                f"node {node_id!r} is not a registered workload or its "
                                "access-log credential is wrong")
        log.debug("access-log stream from %s", node_id)
        message: als_pb2.StreamAccessLogsMessage | None = first
        while message is not None:
            if message.HasField("http_logs"):
                receiver.receive(node_id, message.http_logs.log_entry)
            message = await anext(requests, None)
        return als_pb2.StreamAccessLogsResponse()

    return grpc.method_handlers_generic_handler(SERVICE, {
        "StreamAccessLogs": grpc.stream_unary_rpc_method_handler(
            stream, request_deserializer=als_pb2.StreamAccessLogsMessage.FromString,
            response_serializer=als_pb2.StreamAccessLogsResponse.SerializeToString),
    })
