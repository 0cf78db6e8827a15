"""The control plane's side of the xDS worker processes: a ``ProxyHub`` whose streams live in
workers.

Every worker listens on the xDS port (the kernel spreads connections over them; only
processes of the control plane's user may share the port). The control plane keeps what must
be seen whole, and the workers the per-proxy work:
- admission: one stream per node across every worker, its credential and its certificate
  (``_decide``, the same rules and records as ``XdsHub``);
- configs: compiled here once per push, shipped to the worker of each proxy (``ship.py``);
- sync state: each worker reports its streams' progress, so `proxy-status`, `wait_synced` and
  /metrics answer from here.

A worker that dies loses its streams; their Envoys reconnect (to the other workers, or to its
replacement, started at once) and converge like any reconnecting proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.data.accesslog.v3 import accesslog_pb2

from tulle.xds.admission import (
    FIRST_REQUEST_TIMEOUT_S,
    HANDOVER_GRACE_S,
    StreamEvent,
    StreamEventKind,
    StreamEventLog,
)
from tulle.xds.als import AccessLogReceiver
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
from tulle.xds.proxy import ProxyInfo
from tulle.xds.server import ConfigSource, Opening, PeerCheck, ProxyDirectory, ServerKeyPair
from tulle.xds.sync import DEFAULT_STALE_AFTER_S, Nack, ProxySync, view_of, with_disconnected
from tulle.xds.tracker import NackLog, ProxyStatus, ResponseLog, StatusFacts, status_of
from tulle.xds.workers.channel import Channel
from tulle.xds.workers.child import HEARTBEAT_S, WorkerInit
from tulle.xds.workers.ship import Ledger, Parcels

log = logging.getLogger("tulle.xds.workers")

START_TIMEOUT_S = 30.0
ASK_TIMEOUT_S = 1.0
# A worker that answers no heartbeat this long is stuck (frozen, or its loop blocked): it is
# killed and replaced, so that its proxies reconnect instead of waiting on it.
STUCK_AFTER_S = 10.0
# Nor may pushes pile up for a worker that does not read them.
BACKLOG_LIMIT = 512 * 2**20
# Admissions run at most this long per turn of the loop: thousands of proxies connecting at
# once must not hold up heartbeats, status reports and the API for seconds.
SLICE_S = 0.02
# Configs per shipment: small enough that a worker starts pushing early, large enough that
# the channel's per-message cost stays small.
SHIP_EVERY = 100


def default_workers() -> int:
    """One worker per core the control plane may run on but one, which its own loop keeps
    (it compiles every push and answers the API), and at least one; at most 8. On 2 cores,
    1 worker measured better than 2 (docs/performance.md)."""
    return max(1, min(8, len(os.sched_getaffinity(0)) - 1))


@dataclass(eq=False)
class _Worker:
    index: int
    process: asyncio.subprocess.Process
    channel: Channel
    ledger: Ledger = field(default_factory=Ledger)
    ready: asyncio.Future[int] | None = None
    asks: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    next_ask: int = 0
    lost: bool = False
    heard: float = field(default_factory=time.monotonic)  # its last message


@dataclass(eq=False)
class _Claim:
    """A node's stream, in the worker that serves it."""

    worker: _Worker
    key: int
    proxy: ProxyInfo
    credential: str
    facts: StatusFacts  # its stream's status, as the worker last reported it
    synced_at: int = -1  # the mesh version the proxy has all of, or -1

    @property
    def status(self) -> ProxyStatus:
        return status_of(self.proxy.node_id, self.facts)


class WorkerPool:
    def __init__(self, directory: ProxyDirectory, source: ConfigSource, count: int, *,
                 stale_after_s: float = DEFAULT_STALE_AFTER_S,
                 first_request_timeout_s: float = FIRST_REQUEST_TIMEOUT_S,
                 handover_grace_s: float = HANDOVER_GRACE_S,
                 peer_check: PeerCheck | None = None,
                 access_logs: AccessLogReceiver | None = None,
                 tls: Callable[[], ServerKeyPair] | None = None,
                 client_roots: Callable[[], bytes] | None = None) -> None:
        self._directory = directory
        self._source = source
        self.count = count
        self.stale_after_s = stale_after_s
        self.first_request_timeout_s = first_request_timeout_s
        self.handover_grace_s = handover_grace_s
        self._peer_check = peer_check
        self._access_logs = access_logs
        self._tls = tls
        self._client_roots = client_roots
        self._tls_sent: tuple[Any, Any] | None = None
        self._claims: dict[str, _Claim] = {}
        self._freed = asyncio.Condition()
        self._sync_waits = SyncWaits()
        self._workers: dict[int, _Worker] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._address = ""
        self._reserved: socket.socket | None = None
        self._stopping = False
        self._slice_start: float | None = None
        self._slice_reset_due = False
        self.restarts = 0
        self.nacks = NackLog()
        self.responses = ResponseLog()
        self.stream_events = StreamEventLog()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, address: str) -> int:
        """Start the workers on ``address`` (host:port, port 0 for any); the port bound."""
        self._reserved, port = _reserve(address)
        host = address.rpartition(":")[0]
        self._address = f"{host}:{port}"
        started = [await self._spawn(index) for index in range(self.count)]
        await asyncio.gather(*(self._until_ready(w) for w in started))
        self._spawn_task(self._keep_talking())
        return port

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        for worker in list(self._workers.values()):
            worker.channel.close()
        for worker in list(self._workers.values()):
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                async with asyncio.timeout(3):
                    await worker.process.wait()
            if worker.process.returncode is None:
                worker.process.kill()
                await worker.process.wait()
        if self._reserved is not None:
            self._reserved.close()

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers.values()]

    async def _spawn(self, index: int) -> _Worker:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tulle.xds.workers", str(theirs.fileno()),
                pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL)
        finally:
            theirs.close()
        worker = _Worker(index, process, await Channel.over(ours))
        worker.ready = asyncio.get_running_loop().create_future()
        # The material as it is now; if it changed since the others got theirs, the next
        # heartbeat sends it to every worker (this one too, harmlessly).
        tls, roots = self._tls_material()
        if self._tls_sent is None:
            self._tls_sent = (tls, roots)
        worker.channel.send("init", WorkerInit(index, self._address, tls, roots,
                                               self.first_request_timeout_s))
        self._workers[index] = worker
        self._spawn_task(self._listen(worker))
        self._spawn_task(self._watch(worker))
        return worker

    async def _until_ready(self, worker: _Worker) -> None:
        assert worker.ready is not None
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await worker.ready
        except TimeoutError:
            raise OSError(f"xDS worker {worker.index} did not start within "
                          f"{START_TIMEOUT_S:g}s (see the control plane's log)") from None

    def _spawn_task(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, worker: _Worker) -> None:
        code = await worker.process.wait()
        self._lost(worker, f"exited with code {code}")

    def _lost(self, worker: _Worker, why: str) -> None:
        if worker.lost:
            return
        worker.lost = True
        worker.channel.close()
        if worker.ready is not None and not worker.ready.done():
            worker.ready.set_exception(OSError(f"xDS worker {worker.index} {why}"))
        dropped = [n for n, c in self._claims.items() if c.worker is worker]
        for node_id in dropped:
            del self._claims[node_id]
            self._sync_waits.progressed(node_id, None)
        for future in worker.asks.values():
            if not future.done():
                future.set_result(None)
        self._spawn_task(self._notify())
        if self._stopping or self._workers.get(worker.index) is not worker:
            return
        log.warning("xDS worker %d (pid %d) %s: its %d proxies reconnect to the other workers "
                    "and to its replacement", worker.index, worker.process.pid, why,
                    len(dropped))
        self.restarts += 1
        self._spawn_task(self._replace(worker.index))

    async def _replace(self, index: int) -> None:
        await asyncio.sleep(min(5.0, 0.2 * self.restarts))
        if self._stopping:
            return
        try:
            await self._until_ready(await self._spawn(index))
        except OSError as exc:
            log.error("%s", exc)

    async def _keep_talking(self) -> None:
        """Heartbeats (a worker's health check tells a frozen control plane by their absence),
        and the TLS material when it changed (a renewed certificate, a rotated root)."""
        ticked = time.monotonic()
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if time.monotonic() - ticked > 3 * HEARTBEAT_S:
                # This loop was frozen or blocked itself: the workers' answers wait unread,
                # so their silence says nothing yet.
                for worker in self._workers.values():
                    worker.heard = time.monotonic()
            ticked = time.monotonic()
            tls, roots = self._tls_material()
            changed = (tls, roots) != self._tls_sent
            self._tls_sent = (tls, roots)
            now = time.monotonic()
            for worker in list(self._workers.values()):
                if worker.lost or worker.ready is None or not worker.ready.done():
                    continue
                if now - worker.heard > STUCK_AFTER_S or \
                        worker.channel.backlog() > BACKLOG_LIMIT:
                    self._kill(worker, f"answered nothing for {now - worker.heard:.0f}s "
                                       f"({worker.channel.backlog()} bytes waiting for it)")
                    continue
                if changed:
                    worker.channel.send("tls", tls, roots)
                worker.channel.send("beat")

    def _tls_material(self) -> tuple[ServerKeyPair | None, bytes | None]:
        """The key and chain workers serve with, and the roots clients must chain to."""
        tls = self._tls() if self._tls is not None else None
        return tls, self._client_roots() if self._client_roots is not None and tls else None

    def _kill(self, worker: _Worker, why: str) -> None:
        log.warning("xDS worker %d (pid %d) %s: killing it", worker.index, worker.process.pid,
                    why)
        with contextlib.suppress(ProcessLookupError):
            worker.process.kill()
        self._lost(worker, f"was stuck: it {why}")

    # -- the control plane's questions (ProxyHub) --------------------------------------------

    def push_all(self) -> None:
        """Compile every claimed proxy's config and ship it to its worker, ``SHIP_EVERY`` at
        a time: a worker starts pushing to the first proxies while the control plane still
        compiles for the others (the shipments go out at once, in order, on the channel)."""
        batches: dict[_Worker, list[tuple[str, ProxyConfig]]] = {}
        parcels = Parcels()
        for node_id, claim in list(self._claims.items()):
            try:
                config = self._source.config_for(claim.proxy)
            except Exception:
                log.exception("cannot compile the config of %s; it keeps its last one", node_id)
                continue
            batch = batches.setdefault(claim.worker, [])
            batch.append((node_id, config))
            if len(batch) >= SHIP_EVERY:
                claim.worker.channel.send("ship", claim.worker.ledger.ship(batch, parcels))
                batch.clear()
        for worker, batch in batches.items():
            if batch:
                worker.channel.send("ship", worker.ledger.ship(batch, parcels))

    def disconnect(self, node_id: str) -> None:
        claim = self._claims.get(node_id)
        if claim is not None:
            claim.worker.channel.send("close", node_id, claim.key)

    def connected(self) -> list[str]:
        return sorted(self._claims)

    def is_connected(self, node_id: str) -> bool:
        return node_id in self._claims

    def proxy_of(self, node_id: str) -> ProxyInfo | None:
        claim = self._claims.get(node_id)
        return None if claim is None else claim.proxy

    def sync_views(self, now: float | None = None, registered: Iterable[str] = ()
                   ) -> tuple[ProxySync, ...]:
        at = time.time() if now is None else now
        connected = [view_of(c.status, at, self.stale_after_s) for c in self._claims.values()]
        return with_disconnected(connected, registered, self.stale_after_s)

    async def wait_synced(self, mesh_version: int, timeout: float,
                          nodes: Iterable[str] | None = None) -> bool:
        claims = self._claims
        return await self._sync_waits.wait(
            mesh_version, timeout, nodes, list(claims),
            lambda node, version: claims[node].synced_at >= version)

    # -- what the workers say ----------------------------------------------------------------

    async def _listen(self, worker: _Worker) -> None:
        while (message := await worker.channel.receive()) is not None:
            worker.heard = time.monotonic()
            kind, *args = message
            if kind == "status":
                self._statuses(worker, *args)
            elif kind == "open":
                self._spawn_task(self._open(worker, *args))
            elif kind == "closed":
                self._closed(worker, *args)
            elif kind == "answer":
                future = worker.asks.pop(args[0], None)
                if future is not None and not future.done():
                    future.set_result(args[1])
            elif kind == "record":
                item = args[0]
                if isinstance(item, Nack):
                    self.nacks.record(item)
                elif isinstance(item, StreamEvent):
                    self.stream_events.record(item)
            elif kind == "als-auth":
                known = (self._access_logs is not None
                         and self._access_logs.authenticate_access_log(args[1], args[2]))
                worker.channel.send("answer", args[0], bool(known))
            elif kind == "als" and self._access_logs is not None:
                self._access_logs.receive(args[0], [accesslog_pb2.HTTPAccessLogEntry.FromString(b)
                                                    for b in args[1]])
            elif kind == "ready" and worker.ready is not None and not worker.ready.done():
                worker.ready.set_result(int(args[0]))
        self._lost(worker, "closed its channel")

    def _statuses(self, worker: _Worker, statuses: list[tuple[str, int, StatusFacts, int]],
                  sent: dict[str, int]) -> None:
        self.responses.by_type.update(sent)
        for node_id, key, facts, synced_at in statuses:
            claim = self._claims.get(node_id)
            if claim is None or claim.worker is not worker or claim.key != key:
                continue  # a stream since replaced
            claim.facts, claim.synced_at = facts, synced_at
            if self._sync_waits:
                self._sync_waits.progressed(node_id, _at_least(synced_at))

    def _closed(self, worker: _Worker, node_id: str, key: int) -> None:
        worker.ledger.forget(node_id)
        claim = self._claims.get(node_id)
        if claim is not None and claim.worker is worker and claim.key == key:
            del self._claims[node_id]
            self._sync_waits.progressed(node_id, None)
            self._spawn_task(self._notify())

    async def _notify(self) -> None:
        async with self._freed:
            self._freed.notify_all()

    async def _ask(self, worker: _Worker, what: str, *args: Any) -> Any:
        worker.next_ask += 1
        ask_id = worker.next_ask
        future = worker.asks[ask_id] = asyncio.get_running_loop().create_future()
        worker.channel.send(what, ask_id, *args)
        try:
            async with asyncio.timeout(ASK_TIMEOUT_S):
                return await future
        except TimeoutError:
            return None  # no answer: the worker is stuck, its streams are as good as gone
        finally:
            worker.asks.pop(ask_id, None)

    # -- admission ---------------------------------------------------------------------------

    async def _open(self, worker: _Worker, ask_id: int, opening: Opening) -> None:
        await self._turn()
        answer = await self._decide(worker, opening)
        if isinstance(answer, ProxyInfo):
            try:
                config = self._source.config_for(answer)
            except Exception:
                log.exception("cannot compile the config of %s", opening.node_id)
                self._claims.pop(opening.node_id, None)
                answer = Refusal(grpc.StatusCode.INTERNAL,
                                 f"the control plane cannot compile {opening.node_id}'s "
                                 "config: see its log")
            else:
                worker.channel.send("ship", worker.ledger.ship([(opening.node_id, config)],
                                                               Parcels()))
        worker.channel.send("answer", ask_id, answer)

    async def _turn(self) -> None:
        """Wait until this turn of the loop has admission time left (``SLICE_S``)."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if self._slice_start is None:
                self._slice_start = now
            if now - self._slice_start <= SLICE_S:
                return
            if not self._slice_reset_due:
                self._slice_reset_due = True
                loop.call_soon(self._new_slice)  # runs first in the next turn
            await asyncio.sleep(0)

    def _new_slice(self) -> None:
        self._slice_start, self._slice_reset_due = None, False

    async def _decide(self, worker: _Worker, opening: Opening) -> ProxyInfo | Refusal:
        """Whether the stream may be its node's: the same rules as ``XdsHub._open`` and
        ``_admit``, over every worker's streams."""
        node_id, peer = opening.node_id, opening.peer
        proxy = self._directory.authenticate(node_id, opening.token) if node_id else None
        if proxy is None:
            record(self.stream_events, StreamEventKind.UNAUTHENTICATED, node_id, peer,
                   "unknown node or wrong credential")
            return unauthenticated(node_id)
        if self._peer_check is not None:
            refused = self._peer_check(node_id, opening.certificate)
            if refused is not None:
                record(self.stream_events, StreamEventKind.UNAUTHENTICATED, node_id, peer,
                       refused)
                return not_its_peer(node_id, refused)
        holder = self._claims.get(node_id)
        if holder is not None:
            if self._directory.authenticate(node_id, holder.credential) is None:
                self._release(holder)
                record(self.stream_events, StreamEventKind.SUPERSEDED, node_id,
                       holder.status.peer, superseded_reason(peer))
            elif await self._ask(holder.worker, "ended?", node_id, holder.key) is not False:
                # Over, or its worker no longer holds it, or does not answer (stuck: it is
                # killed soon; meanwhile its proxy must not be refused as a duplicate).
                self._release(holder)

            def free() -> bool:
                return node_id not in self._claims

            async with self._freed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._freed.wait_for(free), self.handover_grace_s)
            holder = self._claims.get(node_id)
            if holder is not None:
                record(self.stream_events, StreamEventKind.DUPLICATE, node_id, peer,
                       DUPLICATE_REASON, holder_peer=holder.status.peer,
                       holder_since=holder.status.connected_at)
                return duplicate(node_id)
        if worker.lost:
            return Refusal(grpc.StatusCode.UNAVAILABLE, "the worker serving this stream stopped")
        self._claims[node_id] = _Claim(worker, opening.key, proxy, opening.token,
                                       ("", time.time(), peer, ()))
        return proxy  # (the worker logs the connection)

    def _release(self, holder: _Claim) -> None:
        node_id = holder.proxy.node_id
        holder.worker.channel.send("close", node_id, holder.key)
        if self._claims.get(node_id) is holder:
            del self._claims[node_id]
            self._sync_waits.progressed(node_id, None)


def _reserve(address: str) -> tuple[socket.socket, int]:
    """Bind (not listen) the xDS address with SO_REUSEPORT, so that the workers can share it
    and nobody else takes it while one restarts; the port bound."""
    host, _, port = address.rpartition(":")
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        host.strip("[]"), int(port), type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {address}: {exc}") from exc
    return sock, int(sock.getsockname()[1])


def _at_least(synced_at: int) -> Callable[[int], bool]:
    return lambda version: synced_at >= version
