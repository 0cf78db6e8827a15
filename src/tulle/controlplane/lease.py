"""This replica's etcd lease, kept alive by a thread of its own.

Every registration a replica writes lives as long as its lease. A lease that lapses while etcd
is up takes this replica's workloads out of every other replica's endpoints at once: callers
on other hosts get 503 (no healthy upstream) though nothing is wrong with those instances.
So the renewal waits on nothing else. It runs in its own thread, not on the event loop and
not in the executor that the other etcd calls share (calls stuck on a lost member could
hold it back there). It renews every ``RENEW_S``, waits for each etcd member at most
``TRY_S`` (a member that is cut off or frozen costs that once, then the client tries it
last), and after a failure tries again every ``RETRY_S`` until the lease has run out: an
etcd election or a lost member is over long before.

The lease also says the replica is alive: a replica whose event loop is stuck serves no
proxy and no agent, and must not hold its registrations and elections. So the keeper renews
only while ``alive()`` says the loop ran lately.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from tulle.errors import TulleError

log = logging.getLogger("tulle.controlplane")

RENEW_S = 3.0
TRY_S = 2.0
RETRY_S = 0.5


class Lease(Protocol):
    """What the keeper needs of the store (EtcdStore)."""

    def lease_left(self) -> float: ...

    def keep_lease(self, *, timeout_s: float | None = None, within_s: float | None = None
                   ) -> bool: ...

    def hold_lease(self, ttl_s: int) -> None: ...


class LeaseKeeper:
    """Renews ``store``'s lease while ``alive()``; when it lapsed (etcd unreachable for
    longer than its TTL), holds a new one of ``ttl_s`` and calls ``lapsed`` (from this
    thread) so that every registration is written again under it."""

    def __init__(self, store: Lease, ttl_s: int, lapsed: Callable[[], None],
                 alive: Callable[[], bool] = lambda: True, *,
                 renew_s: float = RENEW_S, try_s: float = TRY_S,
                 retry_s: float = RETRY_S) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._lapsed = lapsed
        self._alive = alive
        self._renew_s, self._try_s, self._retry_s = renew_s, try_s, retry_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tulle-lease")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._keep()
            except Exception:  # a bug here must not leave the lease to lapse for good
                log.exception("the lease keeper failed; it starts again")
                self._stop.wait(self._retry_s)

    def _keep(self) -> None:
        failing = stalled = False
        wait = self._renew_s
        while not self._stop.wait(wait):
            wait = self._renew_s
            if not self._alive():
                if not stalled:
                    log.warning("this replica's event loop has not run for a while: its etcd "
                                "lease is not renewed, so that other replicas take its "
                                "workloads and work over if it stays stuck")
                stalled = True
                continue
            stalled = False
            try:
                left = self._store.lease_left()
                if self._store.keep_lease(timeout_s=self._try_s,
                                          within_s=max(self._try_s, left)):
                    if failing:
                        log.info("this replica's lease on etcd is renewed again")
                    failing = False
                    continue
                log.warning("this replica's lease on etcd lapsed: registering its workloads "
                            "again under a new one")
                self._store.hold_lease(self._ttl_s)
                failing = False
                self._lapsed()
            except TulleError as exc:
                if not failing:
                    log.warning("cannot renew this replica's lease on etcd: %s; trying again "
                                "every %.1fs while it lasts (%.1fs)", exc.message,
                                self._retry_s, self._store.lease_left())
                failing = True
                if self._store.lease_left() > 0:
                    wait = self._retry_s
