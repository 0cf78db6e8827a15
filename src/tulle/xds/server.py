"""The ADS gRPC server: SotW and Delta on one port, and the hub of connected proxies.

The server only wires pieces together: authentication and proxy facts come from a
``ProxyDirectory``, configs from a ``ConfigSource``, the protocol logic from the stream
state machines in ``stream.py``, and the rules of which streams are admitted (one per proxy,
a first request in time) and the record of refused ones from ``admission.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from tulle.security import bearer
from tulle.xds.admission import (
    FIRST_REQUEST_TIMEOUT_S,
    HANDOVER_GRACE_S,
    StreamEvent,
    StreamEventKind,
    StreamEventLog,
)
from tulle.xds.als import AccessLogReceiver, access_log_handler
from tulle.xds.compiler import ProxyConfig
from tulle.xds.proxy import ProxyInfo
from tulle.xds.stream import DeltaStream, SotwStream, XdsStream
from tulle.xds.sync import DEFAULT_STALE_AFTER_S, Nack, ProxySync, view_of, with_disconnected
from tulle.xds.tracker import NackLog, ResponseLog
from tulle.xds.types import short_name

log = logging.getLogger("tulle.xds")

_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
_MAX_NODE_SHOWN = 256  # a refused stream's node id is the caller's: keep records bounded


class ProxyDirectory(Protocol):
    def authenticate(self, node_id: str, token: str) -> ProxyInfo | None:
        """The proxy ``node_id`` if ``token`` is its xDS credential, else None."""


# (node id, the PEM certificate its TLS client presented or None) -> why it is refused, or None.
PeerCheck = Callable[[str, bytes | None], str | None]


class ConfigSource(Protocol):
    def config_for(self, proxy: ProxyInfo) -> ProxyConfig:
        """The current config of ``proxy``."""


@dataclass
class _SyncWait:
    """One caller of wait_synced: the proxies that have not ACKed ``version`` yet."""

    version: int
    wanted: set[str] | None
    pending: set[str]
    done: asyncio.Future[None]


@dataclass(eq=False)
class _Connection:
    proxy: ProxyInfo
    stream: XdsStream
    credential: str  # what it presented: still the node's, or did the workload re-register?
    ended: Callable[[], bool]  # gRPC says the stream is over (its handler may not know yet)
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
                 peer_check: PeerCheck | None = None) -> None:
        """``peer_check``: when xDS runs over TLS, the stream must also come from the node's
        own certificate (its credential alone is not enough)."""
        self._directory = directory
        self._peer_check = peer_check
        self.first_request_timeout_s = first_request_timeout_s
        self.handover_grace_s = handover_grace_s
        # How long a push may stay un-ACKed before it counts as STALE. States are classified
        # here (sync_views), so the CLI, `check`, `diagnose` and /metrics judge by it.
        self.stale_after_s = stale_after_s
        self._source = source
        self._connections: dict[str, _Connection] = {}
        self._progress = asyncio.Condition()  # a stream ended (a handover waits for it)
        self._sync_waits: list[_SyncWait] = []
        self.nacks = NackLog()
        self.responses = ResponseLog()
        self.stream_events = StreamEventLog()

    # -- for the control plane ---------------------------------------------------------------

    def push_all(self) -> None:
        for connection in list(self._connections.values()):
            try:
                config = self._source.config_for(connection.proxy)
            except Exception:
                # A translation bug must not stop every other proxy's push: this one keeps its
                # last config, and the failure is in the log for `tulle diagnose`.
                log.exception("cannot compile the config of %s; it keeps its last one",
                              connection.proxy.node_id)
                continue
            connection.offer(config)

    def disconnect(self, node_id: str) -> None:
        connection = self._connections.get(node_id)
        if connection is not None:
            connection.close()

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
        wanted = None if nodes is None else set(nodes)
        pending = {n for n, c in self._connections.items()
                   if (wanted is None or n in wanted) and not c.stream.synced(mesh_version)}
        if not pending:
            return True
        wait = _SyncWait(mesh_version, wanted, pending, asyncio.get_running_loop().create_future())
        self._sync_waits.append(wait)
        try:
            await asyncio.wait_for(wait.done, timeout)
        except TimeoutError:
            return False
        finally:
            self._sync_waits.remove(wait)
        return True

    def _progressed(self, node_id: str) -> None:
        """A stream event for ``node_id`` (an ACK, a push, a connect or a disconnect)."""
        if not self._sync_waits:
            return
        connection = self._connections.get(node_id)
        for wait in self._sync_waits:
            if wait.wanted is not None and node_id not in wait.wanted:
                continue
            if connection is None or connection.stream.synced(wait.version):
                wait.pending.discard(node_id)
                if not wait.pending and not wait.done.done():
                    wait.done.set_result(None)
            else:
                wait.pending.add(node_id)

    # -- for the gRPC handlers ---------------------------------------------------------------

    async def serve(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext,
                    make_stream: Callable[..., XdsStream]) -> AsyncIterator[bytes]:
        opened = await self._open(requests, context)
        if opened is None:
            return
        first, proxy, token = opened
        node_id, peer = proxy.node_id, context.peer()
        stream = make_stream(node_id, self._record_nack, peer=peer,
                             on_sent=self.responses.record)
        connection = _Connection(proxy, stream, token, context.done)
        # No await since _admit: nothing can have claimed the node meanwhile.
        self._connections[node_id] = connection
        self._progressed(node_id)
        log.info("%s connected (%s)", node_id, stream.protocol)
        reader = asyncio.create_task(_read(requests, connection.inbox))
        try:
            for message in stream.offer(self._source.config_for(proxy)):
                yield message
            for message in stream.handle_request(first):
                yield message
            while True:
                event, payload = await connection.inbox.get()
                if event == "request":
                    out = stream.handle_request(payload)
                elif event == "config":
                    connection.signalled = False
                    assert connection.latest is not None
                    out = stream.offer(connection.latest)
                else:
                    break
                for message in out:
                    yield message
                self._progressed(node_id)
        finally:
            reader.cancel()
            if self._connections.get(node_id) is connection:
                del self._connections[node_id]
            log.info("%s disconnected", node_id)
            self._progressed(node_id)
            await self._notify()

    async def _open(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
                    ) -> tuple[Any, ProxyInfo, str] | None:
        """The first request, the proxy it authenticates as, and its credential, once the
        stream may be that proxy's; None if the stream ended first. Else aborts the stream."""
        peer = context.peer()
        try:
            async with asyncio.timeout(self.first_request_timeout_s):
                first = await anext(requests, None)
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
        proxy = self._directory.authenticate(node_id, token) if node_id else None
        if proxy is None:
            self._record(StreamEventKind.UNAUTHENTICATED, node_id, peer,
                         "unknown node or wrong credential")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                f"node {node_id!r} is not a registered workload or its "
                                "credential is wrong")
            return None
        if self._peer_check is not None:
            refused = self._peer_check(node_id, _peer_certificate(context))
            if refused is not None:
                self._record(StreamEventKind.UNAUTHENTICATED, node_id, peer, refused)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                    f"node {node_id!r}: {refused}")
                return None
        if not await self._admit(node_id, peer):
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS,
                f"node {node_id!r} already has a live xDS stream, and a proxy has only one: "
                "this stream is refused (an Envoy that restarted is accepted once its old "
                "stream has ended)")
            return None
        return first, proxy, token

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
                         f"closed for a stream from {peer}: the workload registered again "
                         "with a new credential")
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
        self._record(StreamEventKind.DUPLICATE, node_id, peer,
                     "the node already has a live stream: another client presented its xDS "
                     "credential", holder_peer=status.peer, holder_since=status.connected_at)
        return False

    def _record(self, kind: StreamEventKind, node_id: str, peer: str, reason: str, *,
                holder_peer: str = "", holder_since: float | None = None) -> None:
        node = node_id[:_MAX_NODE_SHOWN]
        self.stream_events.record(StreamEvent(kind, node, peer, time.time(), reason,
                                              holder_peer, holder_since))
        if kind is StreamEventKind.DUPLICATE:
            log.warning("refused a second xDS stream for %s from %s: its stream from %s is "
                        "live. Someone else holds its xDS credential (or its Envoy restarted "
                        "and the old stream lingers)", node, peer, holder_peer)
        elif kind is StreamEventKind.SUPERSEDED:
            log.info("closed %s's xDS stream from %s: %s", node, peer, reason)
        else:
            log.warning("refused an xDS stream from %s (node %r): %s", peer, node, reason)

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    def _record_nack(self, nack: Nack) -> None:
        self.nacks.record(nack)
        log.warning("%s NACKed %s version %s: %s", nack.node_id, short_name(nack.type_url),
                    nack.rejected_version, nack.message)


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


def _health_handler() -> grpc.GenericRpcHandler:
    """grpc.health.v1.Health/Check, SERVING while the event loop runs: the sidecars' health
    check of their xDS cluster, when there are replicas to fail over to. A frozen control
    plane still accepts connections (the kernel does) but cannot answer this."""
    async def check(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return b"\x08\x01"  # HealthCheckResponse{status: SERVING}

    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(
            check, request_deserializer=lambda data: data,
            response_serializer=lambda data: data)})


ServerKeyPair = tuple[bytes, bytes]  # the private key and the certificate chain, PEM


def build_server(hub: XdsHub, address: str,
                 access_logs: AccessLogReceiver | None = None,
                 tls: Callable[[], ServerKeyPair] | None = None,
                 client_roots: Callable[[], bytes] | None = None
                 ) -> tuple[grpc.aio.Server, int]:
    """The server, bound (not yet started), and the port it bound: ``address`` may end in
    ``:0``. ``access_logs``: where tap entries go (the access log service on the same port).
    ``tls``: serve over TLS with the control plane's current key and certificate (asked for
    again before each handshake, so a renewed certificate is used at once). ``client_roots``:
    with ``tls``, every client must present a certificate chaining to these (the mesh's
    trust bundle, asked for again before each handshake too)."""
    # grpc.aio recognises streaming handlers only when they are async generator functions.
    async def sotw(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
                   ) -> AsyncIterator[bytes]:
        async for message in hub.serve(requests, context, SotwStream):
            yield message

    async def delta(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
                    ) -> AsyncIterator[bytes]:
        async for message in hub.serve(requests, context, DeltaStream):
            yield message

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
    ])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    server.add_generic_rpc_handlers((_health_handler(),))
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
