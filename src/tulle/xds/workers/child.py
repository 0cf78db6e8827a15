"""One xDS worker process: it serves the ADS streams the kernel hands it on the port every
worker listens on, and nothing else.

The control plane decides everything a stream depends on: it admits each stream (credential,
certificate, one stream per node across all workers) and ships the configs (``ship.py``).
The worker runs the stream state machines and gRPC, the per-proxy work, and reports each
stream's progress back, so that the control plane answers `proxy-status` and waits for ACKs
as if it served the streams itself. It exits when the control plane's end of the channel
closes; its health check says NOT_SERVING while the control plane is silent (frozen).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import socket
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.data.accesslog.v3 import accesslog_pb2

from tulle.xds.admission import StreamEvent, StreamEventLog
from tulle.xds.config import ProxyConfig
from tulle.xds.hub import Refusal
from tulle.xds.proxy import ProxyInfo
from tulle.xds.server import Opening, XdsHub, build_server
from tulle.xds.stream import XdsStream
from tulle.xds.sync import Nack
from tulle.xds.tracker import NackLog, ResponseLog, facts_of
from tulle.xds.workers.channel import Channel
from tulle.xds.workers.ship import Table

log = logging.getLogger("tulle.xds.worker")

# The control plane says something at least this often (a heartbeat when idle).
HEARTBEAT_S = 0.5
# Silent this long, it is frozen or gone: the health check answers NOT_SERVING (with other
# replicas, new streams go there). A busy worker reads its channel late: not much less.
QUIET_AFTER_S = 3.0
# Silent this long, the streams close too: a proxy that stays would get nothing more. It is
# about when Envoy gives up a frozen peer that holds its connection without answering its
# HTTP/2 pings (every 15 s, 5 s to answer), which is what a single process frozen is.
FROZEN_AFTER_S = 15.0
WATCH_S = 0.5


@dataclass(frozen=True)
class WorkerInit:
    index: int
    address: str  # host:port, shared by every worker
    tls: tuple[bytes, bytes] | None  # the control plane's key and chain, PEM
    roots: bytes | None  # the trust bundle client certificates must chain to
    first_request_timeout_s: float


class _Nacks(NackLog):
    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self._channel = channel

    def record(self, nack: Nack) -> None:
        self._channel.send("record", nack)  # the control plane keeps the record


class _Events(StreamEventLog):
    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self._channel = channel

    def record(self, event: StreamEvent) -> None:
        self._channel.send("record", event)


class _Sent(ResponseLog):
    """Responses sent, counted here and reported with the streams' progress."""

    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self._worker = worker

    def record(self, type_url: str) -> None:
        self.by_type[type_url] += 1
        self._worker.dirty_soon()


class _NoDirectory:
    def authenticate(self, node_id: str, token: str) -> ProxyInfo | None:
        return None  # never asked: the gate admits streams


class Worker:
    def __init__(self, channel: Channel, init: WorkerInit) -> None:
        self.channel = channel
        self.init = init
        self.table = Table()
        self.tls = init.tls
        self.roots = init.roots
        self._heard = time.monotonic()
        self._asks: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._opening: Counter[str] = Counter()  # nodes with a stream being admitted
        self._openings: dict[int, Opening] = {}  # by ask: streams the control plane is asked
        self._dirty: dict[str, tuple[int, XdsStream]] = {}
        self._flush_due = False
        self.hub = XdsHub(_NoDirectory(), self, gate=self._gate, watcher=self,
                          first_request_timeout_s=init.first_request_timeout_s)
        self.hub.nacks = _Nacks(channel)
        self.hub.stream_events = _Events(channel)
        self.sent = self.hub.responses = _Sent(self)

    # -- the hub's collaborators -------------------------------------------------------------

    def config_for(self, proxy: ProxyInfo) -> ProxyConfig:
        config = self.table.config(proxy.node_id)
        if config is None:
            raise LookupError(f"no config was shipped for {proxy.node_id}")
        return config

    async def _gate(self, opening: Opening) -> ProxyInfo | Refusal:
        self._opening[opening.node_id] += 1
        ask_id = next(self._ids)
        asked = self._asks[ask_id] = asyncio.get_running_loop().create_future()
        self._openings[ask_id] = opening
        self.channel.send("open", ask_id, opening)
        try:
            # A busy control plane (thousands of proxies connecting at once) answers late:
            # wait. Refuse only once it counts as frozen (its streams are closed then too).
            while not asked.done():
                await asyncio.wait({asked}, timeout=1.0)
                if not asked.done() and self.frozen():
                    return _NOT_ANSWERING
            answer: ProxyInfo | Refusal = asked.result()
        finally:
            # Gone unanswered (refused here, or the stream ended while it waited): a late
            # admission is handed back when it comes (``_answered``).
            self._asks.pop(ask_id, None)
            self._opening[opening.node_id] -= 1
            if not self._opening[opening.node_id]:
                del self._opening[opening.node_id]
        self._openings.pop(ask_id, None)
        return answer

    def _answered(self, ask_id: int, answer: Any) -> None:
        future = self._asks.pop(ask_id, None)
        opening = self._openings.pop(ask_id, None)
        if future is not None and not future.done():
            future.set_result(answer)
        elif opening is not None and isinstance(answer, ProxyInfo):
            # Admitted after its stream gave up: the claim must not outlive the stream.
            self.channel.send("closed", opening.node_id, opening.key)

    def progressed(self, node_id: str, key: int, stream: XdsStream) -> None:
        self._dirty[node_id] = (key, stream)
        self.dirty_soon()

    def closed(self, node_id: str, key: int) -> None:
        self._flush()
        self.channel.send("closed", node_id, key)
        if not self.hub.is_connected(node_id) and node_id not in self._opening:
            self.table.forget(node_id)

    # -- the access log service: entries go to the control plane ----------------------------

    async def authenticate_access_log(self, node_id: str, token: str) -> bool:
        return bool(await self.ask("als-auth", node_id, token))

    def receive(self, node_id: str, entries: Sequence[accesslog_pb2.HTTPAccessLogEntry]
                ) -> None:
        self.channel.send("als", node_id, [e.SerializeToString() for e in entries])

    # -- the channel -------------------------------------------------------------------------

    async def ask(self, what: str, *args: Any) -> Any:
        ask_id = next(self._ids)
        future = self._asks[ask_id] = asyncio.get_running_loop().create_future()
        self.channel.send(what, ask_id, *args)
        try:
            return await future
        finally:
            self._asks.pop(ask_id, None)

    def serving(self) -> bool:
        """The control plane has spoken lately (what the health check answers)."""
        return time.monotonic() - self._heard < QUIET_AFTER_S

    def frozen(self) -> bool:
        """The control plane has been silent long enough to count as frozen or gone."""
        return time.monotonic() - self._heard >= FROZEN_AFTER_S

    async def watch_control_plane(self) -> None:
        """Close every stream once the control plane has been silent ``FROZEN_AFTER_S``.

        Silence is counted only while this worker's own loop turns: when it was too busy to
        read (a storm of first configs), the control plane's messages wait unread in the
        socket, and that is not the control plane's silence."""
        dropped = False
        ticked = time.monotonic()
        while True:
            await asyncio.sleep(WATCH_S)
            now = time.monotonic()
            if now - ticked > 3 * WATCH_S:
                self._heard = max(self._heard, now - (ticked - self._heard) - WATCH_S)
            ticked = now
            silent = now - self._heard
            if silent < FROZEN_AFTER_S:
                dropped = False
            elif not dropped:
                dropped = True
                nodes = self.hub.connected()
                log.warning("the control plane has not spoken for %.0fs: closing the %d xDS "
                            "streams of this worker, so that their proxies reconnect (to "
                            "another replica, if there is one)", silent, len(nodes))
                for node_id in nodes:
                    self.hub.disconnect(node_id)

    def dirty_soon(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        if not self._dirty and not self.sent.by_type:
            return
        statuses = [(node, key, facts_of(stream.status), _synced_at(stream))
                    for node, (key, stream) in self._dirty.items()]
        self._dirty.clear()
        sent = dict(self.sent.by_type)
        self.sent.by_type.clear()
        self.channel.send("status", statuses, sent)

    async def run(self) -> None:
        while (message := await self.channel.receive()) is not None:
            self._heard = time.monotonic()
            kind, *args = message
            if kind == "ship":
                self.hub.push_to(self.table.apply(args[0]))
            elif kind == "answer":
                self._answered(args[0], args[1])
            elif kind == "close":
                self.hub.disconnect(args[0], args[1])
            elif kind == "ended?":
                self.channel.send("answer", args[0], self.hub.stream_ended(args[1], args[2]))
            elif kind == "tls":
                self.tls, self.roots = args
            elif kind == "beat":
                self.channel.send("beat")  # the control plane tells a stuck worker by this
            await self.channel.drain()


_NOT_ANSWERING = Refusal(grpc.StatusCode.UNAVAILABLE,
                         "the control plane is not answering its xDS worker; retry")


def _synced_at(stream: XdsStream) -> int:
    """The mesh version the proxy has everything of (what ``stream.synced`` tells), or -1."""
    config = stream.config
    return config.mesh_version if config is not None and stream.synced(config.mesh_version) \
        else -1


async def serve(sock: socket.socket) -> None:
    channel = await Channel.over(sock)
    first = await channel.receive()
    if first is None or first[0] != "init":
        return
    init: WorkerInit = first[1]
    worker = Worker(channel, init)
    server, port = build_server(
        worker.hub, init.address, access_logs=worker,
        tls=(lambda: worker.tls or (b"", b"")) if init.tls is not None else None,
        client_roots=(lambda: worker.roots or b"") if init.roots is not None else None,
        serving=worker.serving)
    await server.start()
    channel.send("ready", port)
    watching = asyncio.create_task(worker.watch_control_plane())
    try:
        await worker.run()
    finally:
        watching.cancel()
        await server.stop(0)


def main(fd: int) -> None:
    # The control plane stops its workers (closing the channel): a terminal's Ctrl-C is its.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    asyncio.run(serve(socket.socket(fileno=fd)))
