"""Replicas that vanished from etcd without saying goodbye.

A replica's announcement lives under its lease. One that stops cleanly withdraws it and
leaves a "departed" mark; one whose lease runs out (its host cut off, the process killed
or frozen) just vanishes, and with it every registration it held: those workloads drop out
of the other replicas' view of the mesh. `tulle check` must still say so, so each replica
remembers the ones it lost, since when they were last seen and what they held, until they
come back or ``LOST_KEEP_S`` passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LOST_KEEP_S = 900.0


@dataclass(frozen=True)
class Lost:
    replica: str
    where: Mapping[str, Any]  # its last announcement
    since: float  # when it was last seen
    workloads: tuple[str, ...]  # the node ids registered with it then

    def row(self, registered: Collection[str]) -> dict[str, Any]:
        """``workloads``: those not registered again since (with any replica)."""
        return {"replica": self.replica, "host": self.where.get("agentHost")
                or self.where.get("host"), "lastSeen": self.since,
                "workloads": [w for w in self.workloads if w not in registered]}


class LostReplicas:
    def __init__(self, keep_s: float = LOST_KEEP_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._keep_s = keep_s
        self._clock = clock
        self._present: dict[str, Mapping[str, Any]] = {}
        self._held: dict[str, tuple[str, ...]] = {}
        self._seen_at = 0.0
        self._lost: dict[str, Lost] = {}

    def vanished(self, present: Mapping[str, Mapping[str, Any]]) -> bool:
        """Whether a replica seen last time is not in ``present``."""
        return bool(set(self._present) - set(present))

    def seen(self, present: Mapping[str, Mapping[str, Any]],
             held: Mapping[str, Sequence[str]], departed: set[str]) -> None:
        """The other replicas announced now, and the workloads each holds now;
        ``departed``: the replicas that stopped cleanly lately."""
        now = self._clock()
        for replica in set(self._present) - set(present) - departed:
            # The view of registrations can lag etcd: what it still shows counts too.
            workloads = {*self._held.get(replica, ()), *held.get(replica, ())}
            self._lost[replica] = Lost(replica, self._present[replica], self._seen_at,
                                       tuple(sorted(workloads)))
        for replica in list(self._lost):
            if replica in present or now - self._lost[replica].since > self._keep_s:
                del self._lost[replica]
        self._present = dict(present)
        self._held = {replica: tuple(sorted(held.get(replica, ()))) for replica in present}
        self._seen_at = now

    def rows(self, registered: Collection[str] = ()) -> list[dict[str, Any]]:
        return [lost.row(registered) for _, lost in sorted(self._lost.items())]

    def rows_against(self, local: Iterable[str], remote: Iterable[tuple[str, str]]
                     ) -> list[dict[str, Any]]:
        """``rows``, a lost replica's workloads counted out of the mesh unless registered
        since with this replica (``local``) or with another that is not lost (``remote``:
        (replica, node id) pairs of the view of registrations, which can still show a lost
        replica's own while the watch lags its lease's deletions)."""
        return self.rows({*local, *(node for replica, node in remote
                                    if replica not in self._lost)})
