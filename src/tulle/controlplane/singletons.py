"""Singleton work: what one control plane at a time must do, and what it is.

With SQLite there is one control plane, and it does the work. Replicas on etcd elect one per
job: the replica that holds the key ``elections/NAME`` under its lease runs the job, and the
others campaign every ``ELECTION_CHECK_S`` in case it goes. etcd deletes the key when the
holder's lease lapses (it died, froze, or lost etcd), and the next replica to campaign takes
it over, within the lease's TTL.

The holder stops the job at once when it can no longer be sure of its lease: when the last
renewal's TTL is about to run out (``STOP_MARGIN_S`` before), when a renewal finds the lease
expired, or when the key names someone else. Its writes are fenced too: each compares the
key's revision from when it won, so a holder that was frozen past its lease and wakes up
cannot write over the new holder's work.

The jobs: history compaction (below) and driving rollouts (services/rollouts.py). CA
rotation on a shared store is still refused (services/rotation.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tulle.errors import TulleError
from tulle.store.base import Store
from tulle.store.etcd import EtcdStore

log = logging.getLogger("tulle.controlplane")

ELECTION_CHECK_S = 2.0
STOP_MARGIN_S = 1.0
COMPACTION = "compaction"
ROLLOUTS = "rollouts"  # services/rollouts.py
DEFAULT_HISTORY_KEEP = 10_000  # revisions whose changes `tulle history` and rollback keep
DEFAULT_COMPACT_EVERY_S = 300.0


@dataclass(frozen=True)
class Fence:
    """What a job's writes compare against: the election, and the revision it was won at."""

    election: str
    revision: int

    def pair(self) -> tuple[str, int]:
        return self.election, self.revision


Job = Callable[[Fence | None], Awaitable[None]]


class Singleton:
    """Runs ``job`` on this control plane while it holds election ``name`` (always, without
    a shared store)."""

    def __init__(self, name: str, job: Job, store: EtcdStore | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._job = job
        self._store = store
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.held_since: float | None = None  # time.time() it won, while it holds it

    @property
    def holding(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run(self) -> None:
        store = self._store
        if store is None:
            self.held_since = time.time()
            await self._job(None)
            return
        try:
            while True:
                if not self.holding:
                    await self._campaign(store)
                elif not await self._still_holds(store):
                    self._stop_job()
                wait = ELECTION_CHECK_S
                if self.holding:  # wake up in time to stop before the lease may lapse
                    wait = min(wait, max(0.0, store.lease_left() - STOP_MARGIN_S))
                await asyncio.sleep(wait)
                if self.holding and store.lease_left() <= STOP_MARGIN_S:
                    log.warning("%s: this replica cannot renew its etcd lease, which may have "
                                "lapsed: it stops the work now", self.name)
                    self._stop_job()
        finally:
            self._stop_job()

    async def _campaign(self, store: EtcdStore) -> None:
        if self._task is not None:  # the job ended on its own (an error): run for it again
            with contextlib.suppress(asyncio.CancelledError, Exception):
                self._task.result()
            self._task = None
        if store.lease_left() <= STOP_MARGIN_S:
            return
        try:
            revision = await asyncio.to_thread(store.campaign, self.name)
        except TulleError as exc:
            log.debug("%s: cannot campaign: %s", self.name, exc.message)
            return
        if revision:
            log.info("this replica now runs %s (elected at etcd revision %d)", self.name,
                     revision)
            self.held_since = time.time()
            self._task = asyncio.create_task(self._guarded(Fence(self.name, revision)))

    async def _still_holds(self, store: EtcdStore) -> bool:
        try:
            leader = await asyncio.to_thread(store.leader, self.name)
        except TulleError:
            return True  # unknown: the lease's deadline decides
        if leader != store.replica:
            log.warning("%s: the election is held by %s now: this replica stops the work",
                        self.name, leader or "nobody")
            return False
        return True

    async def _guarded(self, fence: Fence) -> None:
        try:
            await self._job(fence)
        except TulleError as exc:
            log.warning("%s stopped: %s", self.name, exc.message)
            raise

    def _stop_job(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None
        self.held_since = None


def compaction_job(store: Store, keep: int, every_s: float) -> Job:
    """Every ``every_s``: the history keeps the newest ``keep`` revisions' changes; on etcd,
    etcd's own record of older values is compacted too, up to the revision seen one period
    earlier (a watch less than a period behind goes on without reading everything again).
    etcd does not compact on its own unless told to (`--auto-compaction-retention`), and
    refuses every write once its database reaches its quota."""

    async def job(fence: Fence | None) -> None:
        seen: deque[tuple[float, int]] = deque()
        while True:
            removed = await asyncio.to_thread(store.trim_history, keep,
                                              fence.pair() if fence else None)
            if removed:
                log.info("compaction: %d history entries older than the newest %d "
                         "revisions removed", removed, keep)
            if isinstance(store, EtcdStore):
                now = time.monotonic()
                seen.append((now, await asyncio.to_thread(store.etcd_revision)))
                due = [revision for at, revision in seen if now - at >= every_s - 0.5]
                if due:
                    while seen and seen[0][1] <= due[-1]:
                        seen.popleft()
                    if await asyncio.to_thread(store.compact_etcd, due[-1]):
                        log.info("compaction: etcd compacted up to revision %d", due[-1])
            await asyncio.sleep(every_s)

    return job
