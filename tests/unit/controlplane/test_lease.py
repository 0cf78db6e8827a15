"""The replica's lease keeper: an etcd that does not answer for a while (an election, a lost
member) costs no lapse while the lease lasts; a lapse is taken back at once."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from tests.support.mesh import wait_for
from tulle.controlplane.lease import LeaseKeeper
from tulle.errors import StateError


class Etcd:
    """A lease that etcd drops unless it is renewed within ``ttl`` seconds; the first
    ``failures`` renewals get no answer (etcd between leaders)."""

    def __init__(self, ttl: int, failures: int = 0, lapse: bool = False) -> None:
        self.ttl, self.failures, self.lapse = ttl, failures, lapse
        self.until = time.monotonic() + ttl
        self.renewed = self.held = 0
        self.dropped = False  # etcd dropped the lease (and the registrations under it)
        self._lock = threading.Lock()

    def lease_left(self) -> float:
        return max(0.0, self.until - time.monotonic())

    def keep_lease(self, *, timeout_s: float | None = None, within_s: float | None = None
                   ) -> bool:
        with self._lock:
            if self.failures:
                self.failures -= 1
                raise StateError("no etcd endpoint answered: 503 etcdserver: leader changed")
            now = time.monotonic()
            if now > self.until or self.lapse:
                self.dropped, self.lapse = True, False
                return False
            self.until = now + self.ttl
            self.renewed += 1
            return True

    def hold_lease(self, ttl_s: int) -> None:
        with self._lock:
            self.held += 1
            self.until = time.monotonic() + ttl_s


@contextlib.contextmanager
def keeping(etcd: Etcd, lapsed: list[bool], alive: Callable[[], bool] = lambda: True, *,
            renew_s: float, retry_s: float) -> Iterator[None]:
    """A keeper of ``etcd``'s lease (its TTL), for the body: each lapse taken back appends
    to ``lapsed``."""
    keeper = LeaseKeeper(etcd, etcd.ttl, lambda: lapsed.append(True), alive,
                         renew_s=renew_s, try_s=0.1, retry_s=retry_s)
    keeper.start()
    try:
        yield
    finally:
        keeper.stop()


def test_renewals_that_fail_are_tried_again_until_the_lease_runs_out() -> None:
    """Six renewals in a row go unanswered: tried again at once, the lease never lapses.
    (Tried again only at the next renewal, the failures would outlast its 2 s.)"""
    etcd, lapsed = Etcd(ttl=2, failures=6), list[bool]()
    with keeping(etcd, lapsed, renew_s=0.4, retry_s=0.02):
        wait_for("two renewals after the failures", lambda: etcd.renewed >= 2, 20)
    assert (etcd.dropped, etcd.held, lapsed) == (False, 0, [])


def test_a_lapsed_lease_is_held_again_and_every_registration_written_again() -> None:
    etcd, lapsed = Etcd(ttl=5, lapse=True), list[bool]()
    with keeping(etcd, lapsed, renew_s=0.05, retry_s=0.02):
        wait_for("the new lease renewed", lambda: etcd.renewed >= 1, 20)
    assert (etcd.dropped, etcd.held, lapsed) == (True, 1, [True])


def test_while_etcd_answers_nothing_the_keeper_keeps_asking() -> None:
    """Quorum lost for longer than the lease: once etcd answers, the lapse is seen and the
    registrations are written again."""
    etcd, lapsed = Etcd(ttl=1, failures=150), list[bool]()
    with keeping(etcd, lapsed, renew_s=0.02, retry_s=0.01):
        wait_for("the lapse to be taken back", lambda: bool(lapsed) and etcd.renewed >= 1, 30)
    assert (etcd.failures, etcd.dropped, etcd.held) == (0, True, 1)


def test_a_replica_whose_loop_is_stuck_lets_its_lease_lapse() -> None:
    """Its thread could renew, but the replica serves nobody: other replicas must take its
    workloads and work over. (Renewed, the lease would never run out.)"""
    etcd, lapsed, alive = Etcd(ttl=1), list[bool](), [True]
    with keeping(etcd, lapsed, lambda: alive[0], renew_s=0.05, retry_s=0.02):
        wait_for("a renewal", lambda: etcd.renewed >= 1, 20)
        alive[0] = False
        wait_for("the lease to run out", lambda: etcd.lease_left() == 0, 20)
        alive[0] = True
        wait_for("the lapse to be taken back", lambda: lapsed == [True], 20)
    assert etcd.held == 1
