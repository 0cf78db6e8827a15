"""The ADS gRPC server: SotW and Delta on one port, and the hub of connected proxies.

The server only wires pieces together: authentication and proxy facts come from a
``ProxyDirectory``, configs from a ``ConfigSource``, the protocol logic from the stream
state machines in ``stream.py``, and the rules of which streams are admitted (one per proxy,
a first request in time) and the record of refused ones from ``admission.py``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from tulle.security import bearer
from tulle.xds import warming
from tulle.xds.admission import (
    FIRST_REQUEST_TIMEOUT_S,
    HANDOVER_GRACE_S,
    StreamEventKind,
    StreamEventLog,
)
from tulle.xds.als import AccessLogReceiver, access_log_handler
from tulle.xds.config import ProxyConfig
from tulle.xds.hub import (
    DUPLICATE_REASON,
    Refusal,
    SyncWaits,
    duplicate,
    not_its_peer,
    record,
    superseded_reason,
    unauthenticated,
)
from tulle.xds.lag import LoopLag
from tulle.xds.proxy import ProxyInfo
from tulle.xds.stream import DeltaStream, SotwStream, XdsStream
from tulle.xds.sync import DEFAULT_STALE_AFTER_S, Nack, ProxySync, view_of, with_disconnected
from tulle.xds.tracker import NackLog, ResponseLog
from tulle.xds.types import short_name

log = logging.getLogger("tulle.xds")

_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


class ProxyDirectory(Protocol):
    def authenticate(self, node_id: str, token: str) -> ProxyInfo | None:
        """The proxy ``node_id`` if ``token`` is its xDS credential, else None."""


# (node id, the PEM certificate its TLS client presented or None) -> why it is refused, or None.
PeerCheck = Callable[[str, bytes | None], str | None]


class ConfigSource(Protocol):
    def config_for(self, proxy: ProxyInfo) -> ProxyConfig:
        """The current config of ``proxy``."""


@dataclass(frozen=True)
class Opening:
    """An authenticated-to-be stream's first facts: what a ``Gate`` decides on."""

    node_id: str
    token: str  # the bearer credential it presented
    certificate: bytes | None  # the TLS client's certificate (PEM), when over TLS
    peer: str
    key: int  # this stream, among the hub's


# Decides elsewhere (the control plane, for a worker process) whether a stream may be its
# node's: the proxy's facts, or why not.
Gate = Callable[[Opening], Awaitable[ProxyInfo | Refusal]]


class StreamWatcher(Protocol):
    def progressed(self, node_id: str, key: int, stream: XdsStream) -> None:
        """The stream sent or was answered something (or just opened)."""

    def closed(self, node_id: str, key: int) -> None:
        """The stream ended."""


@dataclass(eq=False)
class _Connection:
    proxy: ProxyInfo
    stream: XdsStream
    credential: str  # what it presented: still the node's, or did the workload re-register?
    ended: Callable[[], bool]  # gRPC says the stream is over (its handler may not know yet)
    key: int = 0
    inbox: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    latest: ProxyConfig | None = None
    signalled: bool = False

    def offer(self, config: ProxyConfig) -> None:
        # At most one pending push per proxy: a newer config replaces an unsent one.
        self.latest = config
        if not self.signalled:
            self.signalled = True
            self.inbox.put_nowait(("config", None))

    def close(self) -> None:
        self.inbox.put_nowait(("close", None))


class XdsHub:
    """The proxies connected now: pushes configs to them and knows how far each is synced."""

    def __init__(self, directory: ProxyDirectory, source: ConfigSource,
                 stale_after_s: float = DEFAULT_STALE_AFTER_S, *,
                 first_request_timeout_s: float = FIRST_REQUEST_TIMEOUT_S,
                 handover_grace_s: float = HANDOVER_GRACE_S,
                 peer_check: PeerCheck | None = None, gate: Gate | None = None,
                 watcher: StreamWatcher | None = None) -> None:
        """``peer_check``: when xDS runs over TLS, the stream must also come from the node's
        own certificate (its credential alone is not enough). ``gate``: in a worker process,
        who admits streams instead of the directory, the peer check and this hub's own
        record of streams (the control plane, which sees every worker's); ``watcher``: told
        of each stream's progress (a worker reports it)."""
        self._directory = directory
        self._gate = gate
        self._watcher = watcher
        self._keys = itertools.count(1)
        self._peer_check = peer_check
        self.first_request_timeout_s = first_request_timeout_s
        self.handover_grace_s = handover_grace_s
        # How long a push may stay un-ACKed before it counts as STALE. States are classified
        # here (sync_views), so the CLI, `check`, `diagnose` and /metrics judge by it.
        self.stale_after_s = stale_after_s
        self._source = source
        self._connections: dict[str, _Connection] = {}
        self._progress = asyncio.Condition()  # a stream ended (a handover waits for it)
        self._sync_waits = SyncWaits()
        self._lag = LoopLag()
        self.nacks = NackLog()
        self.responses = ResponseLog()
        self.stream_events = StreamEventLog()

    # -- for the control plane ---------------------------------------------------------------

    def push_all(self) -> None:
        self._push(list(self._connections.values()))

    def push_to(self, nodes: Iterable[str]) -> None:
        """Offer the named proxies (those connected) their current config."""
        self._push([c for n in nodes if (c := self._connections.get(n)) is not None])

    def _push(self, connections: list[_Connection]) -> None:
        for connection in connections:
            try:
                config = self._source.config_for(connection.proxy)
            except Exception:
                # A translation bug must not stop every other proxy's push: this one keeps its
                # last config, and the failure is in the log for `tulle diagnose`.
                log.exception("cannot compile the config of %s; it keeps its last one",
                              connection.proxy.node_id)
                continue
            connection.offer(config)

    def disconnect(self, node_id: str, key: int | None = None) -> None:
        """Close ``node_id``'s stream (only if it is stream ``key``, when given)."""
        connection = self._connections.get(node_id)
        if connection is not None and (key is None or connection.key == key):
            connection.close()

    def stream_ended(self, node_id: str, key: int) -> bool | None:
        """Whether stream ``key`` of ``node_id`` is over (gRPC knows before its handler
        does); None when this hub does not hold it."""
        connection = self._connections.get(node_id)
        if connection is None or connection.key != key:
            return None
        return connection.ended()

    def connected(self) -> list[str]:
        return sorted(self._connections)

    def is_connected(self, node_id: str) -> bool:
        """Whether ``node_id``'s proxy has an ADS stream now."""
        return node_id in self._connections

    def sync_views(self, now: float | None = None, registered: Iterable[str] = ()
                   ) -> tuple[ProxySync, ...]:
        """Every connected proxy's sync state, classified at ``now`` by this hub's threshold,
        by node; with ``registered`` (node ids), also each of those without a stream, as
        DISCONNECTED."""
        at = time.time() if now is None else now
        connected = [view_of(c.stream.status, at, self.stale_after_s)
                     for c in self._connections.values()]
        return with_disconnected(connected, registered, self.stale_after_s)

    def proxy_of(self, node_id: str) -> ProxyInfo | None:
        """The facts of a connected proxy (what its config is compiled from), if connected."""
        connection = self._connections.get(node_id)
        return connection.proxy if connection else None

    async def wait_synced(self, mesh_version: int, timeout: float,
                          nodes: Iterable[str] | None = None) -> bool:
        """Wait until every (or each named) connected proxy has ACKed ``mesh_version``.

        The proxies still to ACK are kept in a set; each stream event looks up only its own
        node in it (not every connection per ACK: that was quadratic in the proxies), and a
        proxy that connects meanwhile joins it."""
        connections = self._connections
        return await self._sync_waits.wait(
            mesh_version, timeout, nodes, list(connections),
            lambda node, version: connections[node].stream.synced(version))

    def _progressed(self, node_id: str) -> None:
        """A stream event for ``node_id`` (an ACK, a push, a connect or a disconnect)."""
        connection = self._connections.get(node_id)
        if self._watcher is not None and connection is not None:
            self._watcher.progressed(node_id, connection.key, connection.stream)
        if self._sync_waits:
            self._sync_waits.progressed(
                node_id, None if connection is None else connection.stream.synced)

    # -- for the gRPC handlers ---------------------------------------------------------------

    async def serve(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext,
                    make_stream: Callable[..., XdsStream]) -> AsyncIterator[bytes]:
        opened = await self._open(requests, context)
        if opened is None:
            return
        first, proxy, token, key = opened
        del opened  # the first request goes once answered (Envoy's node lists every extension)
        node_id, peer = proxy.node_id, context.peer()
        stream = make_stream(node_id, self._record_nack, peer=peer,
                             on_sent=self.responses.record)
        connection = _Connection(proxy, stream, token, context.done, key)
        # No await since _admit: nothing can have claimed the node meanwhile.
        self._connections[node_id] = connection
        self._progressed(node_id)
        log.info("%s connected (%s)", node_id, stream.protocol)
        reader = asyncio.create_task(_read(requests, connection.inbox))
        # Nothing here keeps a message once it is yielded (no loop variable, no list): a
        # stream waits far longer than it sends, and its last response is often its whole
        # first config.
        pending: collections.deque[bytes] = collections.deque()
        try:
            pending.extend(stream.offer(self._source.config_for(proxy)))
            pending.extend(stream.handle_request(first))
            del first
            while pending:
                yield pending.popleft()
            while True:
                event, payload = await _next_event(connection.inbox, stream)
                if event == "request":
                    pending.extend(stream.handle_request(payload))
                elif event == "config":
                    connection.signalled = False
                    assert connection.latest is not None
                    pending.extend(stream.offer(connection.latest))
                elif event == "warming":
                    pending.extend(_stop_waiting(stream))
                else:
                    break
                while pending:
                    yield pending.popleft()
                self._progressed(node_id)
        finally:
            reader.cancel()
            if self._connections.get(node_id) is connection:
                del self._connections[node_id]
            if self._watcher is not None:
                self._watcher.closed(node_id, key)
            log.info("%s disconnected", node_id)
            self._progressed(node_id)
            await self._notify()

    async def _open(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
                    ) -> tuple[Any, ProxyInfo, str, int] | None:
        """The first request, the proxy it authenticates as, its credential and the stream's
        key, once the stream may be that proxy's; None if the stream ended first. Else aborts
        the stream."""
        peer = context.peer()
        try:
            # Silent this long while this process kept up: a busy loop (a storm of first
            # configs) reads requests late, and that is not the proxy's silence.
            first = await self._lag.within(anext(requests, None), self.first_request_timeout_s)
        except TimeoutError:
            why = f"no first request within {self.first_request_timeout_s:g}s"
            self._record(StreamEventKind.SILENT, "", peer, why)
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"{why}: an ADS client sends its DiscoveryRequest first")
            return None
        if first is None:
            return None
        node_id = first.node.id
        token = _bearer(context.invocation_metadata())
        key = next(self._keys)
        if self._gate is not None:
            admitted = await self._gate(Opening(node_id, token, _peer_certificate(context),
                                                peer, key))
            if isinstance(admitted, Refusal):
                await context.abort(admitted.code, admitted.message)
                return None
            return first, admitted, token, key
        proxy = self._directory.authenticate(node_id, token) if node_id else None
        if proxy is None:
            self._record(StreamEventKind.UNAUTHENTICATED, node_id, peer,
                         "unknown node or wrong credential")
            refusal = unauthenticated(node_id)
            await context.abort(refusal.code, refusal.message)
            return None
        if self._peer_check is not None:
            refused = self._peer_check(node_id, _peer_certificate(context))
            if refused is not None:
                self._record(StreamEventKind.UNAUTHENTICATED, node_id, peer, refused)
                refusal = not_its_peer(node_id, refused)
                await context.abort(refusal.code, refusal.message)
                return None
        if not await self._admit(node_id, peer):
            refusal = duplicate(node_id)
            await context.abort(refusal.code, refusal.message)
            return None
        return first, proxy, token, key

    async def _admit(self, node_id: str, peer: str) -> bool:
        """Whether a new, authenticated stream may become ``node_id``'s: yes if the node has
        none, or its stream is over, or that stream's credential is no longer the node's (the
        workload registered again: that stream is closed). Otherwise the holder is live: wait
        a moment for it to end (an Envoy restart), then refuse and record it."""
        holder = self._connections.get(node_id)
        if holder is None:
            return True
        if holder.ended():
            holder.close()
            del self._connections[node_id]
            return True
        if self._directory.authenticate(node_id, holder.credential) is None:
            holder.close()
            del self._connections[node_id]
            self._record(StreamEventKind.SUPERSEDED, node_id, holder.stream.status.peer,
                         superseded_reason(peer))
            return True

        def free() -> bool:
            return node_id not in self._connections

        async with self._progress:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait_for(free), self.handover_grace_s)
        holder = self._connections.get(node_id)
        if holder is None:
            return True
        status = holder.stream.status
        self._record(StreamEventKind.DUPLICATE, node_id, peer, DUPLICATE_REASON,
                     holder_peer=status.peer, holder_since=status.connected_at)
        return False

    def _record(self, kind: StreamEventKind, node_id: str, peer: str, reason: str, *,
                holder_peer: str = "", holder_since: float | None = None) -> None:
        record(self.stream_events, kind, node_id, peer, reason, holder_peer=holder_peer,
               holder_since=holder_since)

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    def _record_nack(self, nack: Nack) -> None:
        self.nacks.record(nack)
        log.warning("%s NACKed %s version %s: %s", nack.node_id, short_name(nack.type_url),
                    nack.rejected_version, nack.message)


def _stop_waiting(stream: XdsStream) -> list[bytes]:
    out = stream.stop_waiting()
    if out:
        log.warning("%s did not take the endpoints of its new clusters within %gs: what "
                    "points at them goes to it anyway", stream.node_id, warming.LIMIT)
    return out


async def _write_all(messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext
                     ) -> None:
    async for message in messages:
        await context.write(message)
        del message  # not kept while the stream waits for its next message


async def _next_event(inbox: asyncio.Queue[tuple[str, Any]], stream: XdsStream
                      ) -> tuple[str, Any]:
    """The next request or config, or ("warming", None) once the stream's wait for warming
    clusters is over (xds.warming) with nothing come meanwhile."""
    deadline = stream.warming_deadline()
    if deadline is None:
        return await inbox.get()
    try:
        return await asyncio.wait_for(inbox.get(), max(0.0, deadline - time.time()))
    except TimeoutError:
        return "warming", None


async def _read(requests: AsyncIterator[Any], inbox: asyncio.Queue[tuple[str, Any]]) -> None:
    try:
        async for request in requests:
            inbox.put_nowait(("request", request))
    except (asyncio.CancelledError, grpc.RpcError):
        pass
    finally:
        inbox.put_nowait(("eof", None))


def _peer_certificate(context: grpc.aio.ServicerContext) -> bytes | None:
    """The certificate the TLS client presented (PEM), or None."""
    presented = (context.auth_context() or {}).get("x509_pem_cert") or ()
    return bytes(presented[0]) if presented else None


def _bearer(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            return bearer(value)
    return ""


def _health_handler(serving: Callable[[], bool]) -> grpc.GenericRpcHandler:
    """grpc.health.v1.Health/Check, SERVING while the event loop runs: the sidecars' health
    check of their xDS cluster, when there are replicas to fail over to. A frozen control
    plane still accepts connections (the kernel does) but cannot answer this; a worker
    process answers NOT_SERVING once its control plane stops talking to it."""
    async def check(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        # HealthCheckResponse{status: SERVING (1) or NOT_SERVING (2)}
        return b"\x08\x01" if serving() else b"\x08\x02"

    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(
            check, request_deserializer=lambda data: data,
            response_serializer=lambda data: data)})


ServerKeyPair = tuple[bytes, bytes]  # the private key and the certificate chain, PEM


def build_server(hub: XdsHub, address: str,
                 access_logs: AccessLogReceiver | None = None,
                 tls: Callable[[], ServerKeyPair] | None = None,
                 client_roots: Callable[[], bytes] | None = None,
                 serving: Callable[[], bool] = lambda: True,
                 ) -> tuple[grpc.aio.Server, int]:
    """The server, bound (not yet started), and the port it bound: ``address`` may end in
    ``:0``. ``access_logs``: where tap entries go (the access log service on the same port).
    ``tls``: serve over TLS with the control plane's current key and certificate (asked for
    again before each handshake, so a renewed certificate is used at once). ``client_roots``:
    with ``tls``, every client must present a certificate chaining to these (the mesh's
    trust bundle, asked for again before each handshake too). ``serving``: what the health
    check answers."""
    # Handlers that write, not generators: grpc.aio keeps the last message a generator
    # yielded until it yields the next, which for a quiet stream is its whole first config
    # (0.6 MB per proxy at 1,000 services, measured; docs/performance.md).
    async def sotw(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
        await _write_all(hub.serve(requests, context, SotwStream), context)

    async def delta(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
        await _write_all(hub.serve(requests, context, DeltaStream), context)

    def raw(message: bytes) -> bytes:
        return message  # responses are pre-serialized (wire.py)

    handlers = {
        "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
            sotw, request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
            response_serializer=raw),
        "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
            delta, request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
            response_serializer=raw),
    }
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        # Envoy pings every 15 s (bootstrap). gRPC's default allows a client one ping per
        # 5 min and answers more with GOAWAY "too_many_pings", which would reset every
        # ADS stream about once a minute.
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
        # Every proxy keeps one stream, and they all arrive at once when the control plane
        # restarts. gRPC queues at most 1,000 streams not yet handed to the application; with
        # about 2,000 arriving together, the ones over that were stranded (open, never
        # served: measured with grpcio 1.85), so their Envoys waited for config forever.
        ("grpc.server.max_pending_requests", 16384),
        ("grpc.server.max_pending_requests_hard_limit", 32768),
        # Worker processes listen on one port together, the kernel spreading connections
        # over them (it lets only sockets of the same user share a port).
        ("grpc.so_reuseport", 1),
    ])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    server.add_generic_rpc_handlers((_health_handler(serving),))
    if access_logs is not None:
        server.add_generic_rpc_handlers((access_log_handler(access_logs, _bearer),))
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            def roots() -> bytes | None:
                return client_roots() if client_roots is not None else None

            current = [(tls(), roots())]

            def fetch() -> grpc.ServerCertificateConfiguration | None:
                latest = (tls(), roots())
                if latest == current[0]:
                    return None
                current[0] = latest
                return grpc.ssl_server_certificate_configuration([latest[0]], latest[1])

            bound = server.add_secure_port(address, grpc.dynamic_ssl_server_credentials(
                grpc.ssl_server_certificate_configuration([current[0][0]], current[0][1]),
                fetch, require_client_authentication=client_roots is not None))
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc}") from exc
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    return server, bound
