"""This control plane among the other replicas of a shared etcd store: one object that the
control plane wires in when its store is etcd, and that holds everything replicas need of each
other (see docs/replicas.md):

- where every replica listens (announced under this replica's lease, refreshed with it), for
  agents to fail over to and for the sidecars' bootstraps;
- the workloads registered with the others, from a watch, for endpoints and listings;
- the resources any replica applies, from a watch, folded into this replica's view;
- registrations written behind, off the event loop;
- the others' telemetry, asked for when a question comes, and their health for `check`;
- the store's revision as last read, for status and /metrics while etcd may not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from tulle.controlplane import peers
from tulle.controlplane.cavault import CA_AREA
from tulle.controlplane.lease import RENEW_S, LeaseKeeper
from tulle.controlplane.lostreplicas import LostReplicas
from tulle.controlplane.peerchannel import PeerChannel
from tulle.controlplane.peers import PeerAnswers
from tulle.controlplane.replicahealth import replica_health
from tulle.controlplane.replication import LEASE_TTL_S, RemoteWorkloads, Watch, WriteBehind
from tulle.controlplane.rotationpeers import ReplicaRotationPeers
from tulle.controlplane.services.resources import ResourceService
from tulle.errors import TulleError
from tulle.model.workload import Workload
from tulle.store.etcd import EtcdStore

log = logging.getLogger("tulle.controlplane")

REFRESH_WAIT_S = 0.5  # then the replicas as last read: check waits 4 s for the whole answer
# The event loop beats every BEAT_S; STUCK_S without a beat, the lease is left to lapse (a
# large compile holds the loop for about a second at 1,000 services).
BEAT_S, STUCK_S = 0.5, 5.0


class ReplicaSet:
    """``where``: this replica's own address record (host and ports, once bound)."""

    def __init__(self, store: EtcdStore, channel: PeerChannel,
                 where: Callable[[], dict[str, Any]], changed: Callable[[], None]) -> None:
        self.store = store
        self._channel = channel
        self._where = where
        self._changed = changed
        self.remote = RemoteWorkloads(store, changed)
        self.writes = WriteBehind()
        self._replicas: dict[str, Mapping[str, Any]] = {}  # replica id -> where it listens
        self.lost = LostReplicas()
        self._revision_seen = 0
        self._watches: list[Watch[Any]] = []
        self._keeper: LeaseKeeper | None = None
        self._last_beat = time.monotonic()
        self._tasks: list[asyncio.Task[Any]] = []
        self.rotation = ReplicaRotationPeers(store, channel)

    # -- what the rest of the control plane asks -------------------------------------------

    def workloads(self, local: list[Workload]) -> list[Workload]:
        """``local`` and the other replicas' (a workload that moved here counts as ours)."""
        mine = {w.node_id for w in local}
        return local + [w for w in self.remote.workloads() if w.node_id not in mine]

    def others(self) -> list[Mapping[str, Any]]:
        return [r for ident, r in sorted(self._replicas.items()) if ident != self.store.replica]

    def holder_of(self, node_id: str) -> str | None:
        """Which other replica holds ``node_id``'s registration, and where its API is."""
        for replica, workload in self.remote.by_replica():
            if workload.node_id == node_id:
                where = self._replicas.get(replica)
                return (f"replica {replica} (API {where['host']}:{where['apiPort']})"
                        if where else f"replica {replica}")
        return None

    def other_xds(self) -> tuple[tuple[str, int], ...]:
        return tuple((str(r.get("agentHost") or r["host"]), int(r["xdsPort"]))
                     for r in self.others())

    def control_planes(self) -> list[dict[str, Any]]:
        """Where an agent may register, this replica first; empty when there is no other."""
        others = self.others()
        return [self._where(), *map(dict, others)] if others else []

    def revision(self) -> int:
        """The store's revision as last read (at most a few seconds old)."""
        return self._revision_seen

    async def ask_peers(self, seconds: float, timeline_s: float) -> PeerAnswers:
        others = {r: where for r, where in self._replicas.items() if r != self.store.replica}
        answers = await peers.fetch(others, self._channel, seconds, timeline_s)
        for row in self.lost.rows():  # gone from etcd: what they held is not in the answers
            answers.missing.setdefault(row["replica"], (
                f"lost from etcd since {time.strftime('%H:%M:%S', time.localtime(row['lastSeen']))}"
                f" (its lease ran out: host {row['host']} cut off, or the replica died)"))
        return answers

    async def health(self, local: Iterable[str]) -> dict[str, Any]:
        """``local``: the node ids registered with this replica (a lost replica's workloads
        that registered here or with another since are not out of the mesh)."""
        # The replicas as last read when etcd does not answer now (its quorum lost): the
        # answer must come within check's wait, and say what it can.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.refresh()), REFRESH_WAIT_S)
        return {**await replica_health(self.store, self._replicas, self._channel),
                "lost": self.lost.rows_against(local, self.remote.registrations())}

    # -- lifecycle ---------------------------------------------------------------------------

    async def restore(self, persist_all: Callable[[], None]) -> None:
        """At start, before serving: registrations restored from the last run are written
        again under this run's lease (the last run's lapses on its own)."""
        await asyncio.to_thread(self.store.hold_lease, LEASE_TTL_S)
        persist_all()
        await asyncio.to_thread(self.remote.load)

    async def start(self, after: int, resources: ResourceService,
                    persist_all: Callable[[], None], ca_changed: Callable[[], None]) -> None:
        """Once this replica listens: announce it, and follow the others from etcd revision
        ``after`` (read before the resources were loaded). ``ca_changed``: the CA's files
        were written (by any replica, this one included)."""
        await self.refresh()
        loop = asyncio.get_running_loop()

        def absorb(changes: list[Any]) -> None:
            if resources.absorb(changes):
                self._changed()
            self._spawn(self._read_revision())

        def reload() -> None:
            resources.load()
            self._changed()

        self._watches = [
            Watch("resources", self.store, loop, self.store.resource_changes, absorb, reload),
            Watch("workloads", self.store, loop, self.store.workload_changes,
                  self.remote.apply, self.remote.resync),
            Watch("ca", self.store, loop, lambda at: self.store.file_changes(CA_AREA, at),
                  lambda names: ca_changed(), ca_changed)]
        for watch in self._watches:
            watch.start(after)
        def lapsed() -> None:  # from the keeper's thread
            loop.call_soon_threadsafe(persist_all)

        self._keeper = LeaseKeeper(self.store, LEASE_TTL_S, lapsed, self._beating)
        self._keeper.start()
        self._spawn(self._refresh_every(RENEW_S))
        self._spawn(self._beat())

    async def stop(self) -> None:
        for watch in self._watches:
            watch.stop()
        if self._keeper is not None:
            self._keeper.stop()
        for task in self._tasks:
            task.cancel()
        self.writes.close()
        with contextlib.suppress(TulleError):
            await asyncio.to_thread(self.store.withdraw)

    async def refresh(self) -> None:
        """Announce this replica, and read where the others are and the store's revision."""
        await self._read_revision()
        # What each replica holds is read before the replicas are: the watch may apply a lost
        # lease's deletions while the read is awaited, and a replica still announced with its
        # registrations already gone would be remembered as holding nothing.
        held: dict[str, list[str]] = {}
        for replica, workload in self.remote.by_replica():
            held.setdefault(replica, []).append(workload.node_id)
        try:
            await asyncio.to_thread(self.store.announce, self._where())
            self._replicas = await asyncio.to_thread(self.store.replicas)
            others = {r: w for r, w in self._replicas.items() if r != self.store.replica}
            departed = (await asyncio.to_thread(self.store.departed)
                        if self.lost.vanished(others) else set())
            self.lost.seen(others, held, departed)
        except TulleError as exc:
            log.warning("cannot read the other replicas from etcd: %s", exc.message)

    async def _beat(self) -> None:
        while True:
            self._last_beat = time.monotonic()
            await asyncio.sleep(BEAT_S)

    def _beating(self) -> bool:
        """Whether the event loop ran lately (the lease keeper's thread asks)."""
        return time.monotonic() - self._last_beat < STUCK_S

    async def _refresh_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self.refresh()

    async def _read_revision(self) -> None:
        with contextlib.suppress(TulleError):
            self._revision_seen = await asyncio.to_thread(self.store.revision)

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks = [t for t in self._tasks if not t.done()] + [task]
