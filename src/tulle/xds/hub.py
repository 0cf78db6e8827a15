"""What the control plane asks of its connected proxies, whoever serves their streams.

Two implementations: ``server.XdsHub`` serves every ADS stream on the control plane's own event
loop; ``workers.pool.WorkerPool`` fans them out over worker processes and keeps the same
answers from what the workers report. The control plane only sees ``ProxyHub``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import grpc

from tulle.xds.admission import StreamEvent, StreamEventKind, StreamEventLog
from tulle.xds.proxy import ProxyInfo
from tulle.xds.sync import ProxySync
from tulle.xds.tracker import NackLog, ResponseLog


class ProxyHub(Protocol):
    nacks: NackLog
    responses: ResponseLog
    stream_events: StreamEventLog
    stale_after_s: float

    def push_all(self) -> None:
        """Offer every connected proxy its current config."""

    def disconnect(self, node_id: str) -> None:
        """Close ``node_id``'s stream (its workload was removed)."""

    def connected(self) -> list[str]: ...

    def is_connected(self, node_id: str) -> bool: ...

    def sync_views(self, now: float | None = None, registered: Iterable[str] = ()
                   ) -> tuple[ProxySync, ...]: ...

    def proxy_of(self, node_id: str) -> ProxyInfo | None: ...

    async def wait_synced(self, mesh_version: int, timeout: float,
                          nodes: Iterable[str] | None = None) -> bool: ...


@dataclass(frozen=True)
class Refusal:
    """Why a stream is turned away, as the gRPC status the proxy gets."""

    code: grpc.StatusCode
    message: str


_MAX_NODE_SHOWN = 256  # a refused stream's node id is the caller's: keep records bounded
log = logging.getLogger("tulle.xds")


def unauthenticated(node_id: str) -> Refusal:
    return Refusal(grpc.StatusCode.UNAUTHENTICATED,
                   f"node {node_id!r} is not a registered workload or its credential is wrong")


def not_its_peer(node_id: str, why: str) -> Refusal:
    return Refusal(grpc.StatusCode.PERMISSION_DENIED, f"node {node_id!r}: {why}")


def duplicate(node_id: str) -> Refusal:
    return Refusal(grpc.StatusCode.ALREADY_EXISTS,
                   f"node {node_id!r} already has a live xDS stream, and a proxy has only one: "
                   "this stream is refused (an Envoy that restarted is accepted once its old "
                   "stream has ended)")


DUPLICATE_REASON = "the node already has a live stream: another client presented its xDS " \
                   "credential"


def superseded_reason(peer: str) -> str:
    return f"closed for a stream from {peer}: the workload registered again with a new credential"


def record(events: StreamEventLog, kind: StreamEventKind, node_id: str, peer: str, reason: str,
           *, holder_peer: str = "", holder_since: float | None = None) -> None:
    """Keep a refused or closed stream on record, and say it in the log."""
    node = node_id[:_MAX_NODE_SHOWN]
    events.record(StreamEvent(kind, node, peer, time.time(), reason, holder_peer, holder_since))
    if kind is StreamEventKind.DUPLICATE:
        log.warning("refused a second xDS stream for %s from %s: its stream from %s is "
                    "live. Someone else holds its xDS credential (or its Envoy restarted "
                    "and the old stream lingers)", node, peer, holder_peer)
    elif kind is StreamEventKind.SUPERSEDED:
        log.info("closed %s's xDS stream from %s: %s", node, peer, reason)
    else:
        log.warning("refused an xDS stream from %s (node %r): %s", peer, node, reason)


@dataclass
class _SyncWait:
    """One caller of wait_synced: the proxies that have not ACKed ``version`` yet."""

    version: int
    wanted: set[str] | None
    pending: set[str]
    done: asyncio.Future[None]


class SyncWaits:
    """The callers waiting for proxies to ACK a mesh version.

    The proxies still to ACK are kept in a set per caller; each stream event looks up only its
    own node in it (not every connection per ACK: that was quadratic in the proxies), and a
    proxy that connects meanwhile joins it."""

    def __init__(self) -> None:
        self._waits: list[_SyncWait] = []

    async def wait(self, mesh_version: int, timeout: float, nodes: Iterable[str] | None,
                   connected: Iterable[str], synced: Callable[[str, int], bool]) -> bool:
        """``connected``: the nodes with a stream now; ``synced(node, version)``: whether
        that node's proxy has ACKed everything of ``version`` or later."""
        wanted = None if nodes is None else set(nodes)
        pending = {n for n in connected
                   if (wanted is None or n in wanted) and not synced(n, mesh_version)}
        if not pending:
            return True
        wait = _SyncWait(mesh_version, wanted, pending, asyncio.get_running_loop().create_future())
        self._waits.append(wait)
        try:
            await asyncio.wait_for(wait.done, timeout)
        except TimeoutError:
            return False
        finally:
            self._waits.remove(wait)
        return True

    def progressed(self, node_id: str, synced: Callable[[int], bool] | None) -> None:
        """A stream event for ``node_id``: ``synced(version)`` tells how far it is, None when
        it has no stream any more (it no longer holds anyone up)."""
        for wait in self._waits:
            if wait.wanted is not None and node_id not in wait.wanted:
                continue
            if synced is None or synced(wait.version):
                wait.pending.discard(node_id)
                if not wait.pending and not wait.done.done():
                    wait.done.set_result(None)
            else:
                wait.pending.add(node_id)

    def __bool__(self) -> bool:
        return bool(self._waits)
