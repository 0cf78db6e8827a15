"""What replicas on one shared store see of each other: the resources any of them applies, and
the workloads registered with the others.

Control-plane replicas on one etcd store each serve their own proxies. A change applied on any
replica is written to etcd; every replica watches the resources' keys (etcd pushes each change;
nothing polls), folds the change into its view and pushes to its proxies. A replica's own
writes come back on the watch too and change nothing. Likewise each replica watches the others'
registrations, so that its proxies get endpoints for workloads registered anywhere. Those
registrations live as long as their replica's etcd lease: a replica that dies takes them with
it within the lease's TTL, and every other replica drops their endpoints.

Each watch runs in a thread (the store's client is blocking) and hands each batch to the event
loop. When the stream ends (etcd restarts, a member dies, nothing happened for a while) it
watches again from the last revision it saw; when etcd has compacted that revision away, it
reads everything again.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from tulle.errors import TulleError
from tulle.model.workload import Workload, WorkloadCertificate
from tulle.store.etcd import EtcdStore
from tulle.store.etcdclient import WatchCompacted

log = logging.getLogger("tulle.controlplane")

RETRY_MIN_S, RETRY_MAX_S = 0.2, 2.0
LEASE_TTL_S = 10  # a dead replica's registrations go within this
# How long the certificates of a registration that left etcd (its replica died, or its agent
# moved) still vouch for that node's agent here: it fails over within seconds, but its old
# replica's lease may have lapsed first.
DEPARTED_KEEP_S = 120.0

T = TypeVar("T")


class Watch(Generic[T]):
    """Follows ``source`` (batches of changes after an etcd revision) in a thread; each
    non-empty batch goes to ``apply`` on the event loop; ``resync`` after a compaction."""

    def __init__(self, name: str, store: EtcdStore, loop: asyncio.AbstractEventLoop,
                 source: Callable[[int], Iterator[tuple[int, list[T]]]],
                 apply: Callable[[list[T]], None], resync: Callable[[], None]) -> None:
        self._name = name
        self._store = store
        self._loop = loop
        self._source = source
        self._apply = apply
        self._resync = resync
        self._stop = threading.Event()

    def start(self, after: int) -> None:
        """Watch for writes after etcd revision ``after`` (read before the current state was
        loaded, so that nothing written in between is missed)."""
        threading.Thread(target=self._run, args=(after,), daemon=True,
                         name=f"tulle-watch-{self._name}").start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, after: int) -> None:
        delay = RETRY_MIN_S
        while not self._stop.is_set():
            try:
                for revision, changes in self._source(after):
                    if self._stop.is_set():
                        return
                    after = max(after, revision)
                    if changes:
                        self._loop.call_soon_threadsafe(self._apply, changes)
                    delay = RETRY_MIN_S
            except WatchCompacted:
                log.warning("the watch of %s fell behind etcd's compaction: reading it all "
                            "again", self._name)
                try:
                    after = self._store.etcd_revision()
                except TulleError as exc:
                    log.warning("cannot read etcd's revision: %s", exc.message)
                    continue
                self._loop.call_soon_threadsafe(self._resync)
            except TulleError as exc:
                log.warning("the watch of %s failed: %s", self._name, exc.message)
            self._stop.wait(delay)
            delay = min(RETRY_MAX_S, delay * 2)


class RemoteWorkloads:
    """The workloads registered with other replicas, as this replica knows them now, and the
    certificates the CA issued to each of them: an agent that fails over here presents one,
    and it vouches for that node alone."""

    def __init__(self, store: EtcdStore, changed: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._changed = changed
        self._clock = clock
        self._workloads: dict[tuple[str, str], Workload] = {}  # (replica, node) -> workload
        self._certificates: dict[tuple[str, str], tuple[WorkloadCertificate, ...]] = {}
        # node -> (until when, its certificates), for registrations that left etcd
        self._departed: dict[str, tuple[float, tuple[WorkloadCertificate, ...]]] = {}

    def load(self) -> int:
        self._workloads, self._certificates = {}, {}
        for replica, record in self._store.other_workloads():
            self._put(replica, record)
        return len(self._workloads)

    def workloads(self) -> list[Workload]:
        """One per node (a workload that moved may briefly be registered with two)."""
        return sorted({w.node_id: w for w in self._workloads.values()}.values(),
                      key=lambda w: w.node_id)

    def registrations(self) -> list[tuple[str, str]]:
        """Every (replica, node id) pair the view shows: a node that moved has two."""
        return sorted(self._workloads)

    def by_replica(self) -> list[tuple[str, Workload]]:
        seen: dict[str, tuple[str, Workload]] = {}
        for (replica, node), workload in sorted(self._workloads.items()):
            seen.setdefault(node, (replica, workload))
        return sorted(seen.values(), key=lambda e: e[1].node_id)

    def certificates_of(self, node_id: str) -> tuple[WorkloadCertificate, ...]:
        """Every certificate that another replica holds for ``node_id`` (current and
        previous), or held until at most ``DEPARTED_KEEP_S`` ago."""
        now = self._clock()
        self._departed = {n: d for n, d in self._departed.items() if d[0] > now}
        held = [c for (_, node), certs in sorted(self._certificates.items()) if node == node_id
                for c in certs]
        departed = self._departed.get(node_id)
        return tuple(held) + (departed[1] if departed else ())

    def apply(self, changes: list[tuple[str, str, Mapping[str, Any] | None]]) -> None:
        differed = False
        for replica, node, record in changes:
            before = self._workloads.pop((replica, node), None)
            certificates = self._certificates.pop((replica, node), ())
            if record is not None:
                self._put(replica, record)
            elif certificates:
                self._departed[node] = (self._clock() + DEPARTED_KEEP_S, certificates)
            differed |= before != self._workloads.get((replica, node))
        if differed:
            self._changed()

    def resync(self) -> None:
        self.load()
        self._changed()

    def _put(self, replica: str, record: Mapping[str, Any]) -> None:
        workload = _workload(record)
        if workload is None:
            return
        key = (replica, workload.node_id)
        self._workloads[key] = workload
        certificates = _certificates(record)
        if certificates:
            self._certificates[key] = certificates


def _certificates(record: Mapping[str, Any]) -> tuple[WorkloadCertificate, ...]:
    try:
        return tuple(WorkloadCertificate.from_dict(record[field])
                     for field in ("certificate", "previousCertificate") if record.get(field))
    except (KeyError, TypeError, ValueError) as exc:
        log.error("a replica stored certificates this one cannot read: %s", exc)
        return ()


def _workload(record: Mapping[str, Any]) -> Workload | None:
    try:
        return Workload.from_dict(record["workload"])
    except (KeyError, TypeError, ValueError) as exc:
        log.error("a replica stored a registration this one cannot read: %s", exc)
        return None


class WriteBehind:
    """Store writes off the event loop, in the order given, by one thread: registrations
    saved and deleted while etcd answers slowly or not at all must not stall xDS. A write
    that fails is logged; the next save of the same registration, or the lease's renewal
    after a lapse, writes it again."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="tulle-store-writes")
        self._thread.start()

    def __call__(self, write: Callable[[], None]) -> None:
        self._queue.put(write)

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while (write := self._queue.get()) is not None:
            try:
                write()
            except TulleError as exc:
                log.warning("a registration could not be written to etcd: %s", exc.message)
