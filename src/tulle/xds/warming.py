"""Clusters new to a proxy, still warming in its Envoy. No I/O.

Envoy keeps a new EDS cluster out of its routing until the cluster's first endpoint assignment
arrives, and it asks for that assignment only once it has taken the cluster. A route that
names the cluster and arrives meanwhile answers 503 (no cluster, flag NC) until then: an apply
that adds subset Services and a route to them did that for a moment. So a stream holds back
what points at clusters (listeners, scopes, route tables), and the removal of old clusters,
while any cluster it sent new still waits for its endpoints:

- a cluster is warm once the proxy has answered the endpoints sent for it (an ACK, or a NACK:
  the NACK is recorded and waiting longer would change nothing);
- a NACK of the clusters themselves releases every one (they will not come);
- a cluster gone from the config no longer counts;
- after ``LIMIT`` seconds the stream stops waiting whatever the proxy did, so that a proxy
  that never asks for the endpoints still gets its routes (as it would have before).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tulle.xds import types
from tulle.xds.held import Held
from tulle.xds.tracker import ProxyStatus

LIMIT = 5.0  # seconds

# What a stream holds back while clusters warm: everything that can point at a cluster.
ROUTING = frozenset({types.LISTENER, types.SCOPED_ROUTE, types.ROUTE})


class Warming:
    __slots__ = ("names", "since")

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.since = 0.0

    def __bool__(self) -> bool:
        return bool(self.names)

    def add(self, names: Iterable[str], now: float) -> None:
        if not self.names:
            self.since = now
        self.names.update(names)

    def deadline(self) -> float | None:
        """When the stream stops waiting, or None when nothing warms."""
        return self.since + LIMIT if self.names else None

    def settle(self, status: ProxyStatus, endpoints_sent: Callable[[str], bool],
               is_cluster: Callable[[str], bool]) -> bool:
        """Drop what is warm; True when nothing is left to wait for (and something was)."""
        if not self.names:
            return False
        clusters = status.of(types.CLUSTER)
        refused = (clusters.last_nack is not None and not clusters.pending
                   and clusters.last_nack.nonce == clusters.sent_nonce)
        answered = not status.of(types.ENDPOINT).pending
        self.names = set() if refused else {
            n for n in self.names if is_cluster(n) and not (answered and endpoints_sent(n))}
        return not self.names

    def expire(self, now: float) -> bool:
        """Past the deadline: stop waiting. True when something was waited for."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return False
        self.names.clear()
        return True


def new_clusters(held: Held, names: Iterable[str],
                 has_endpoints: Callable[[str], bool]) -> set[str]:
    """Of ``names`` (clusters the config wants), those the proxy does not hold and that take
    their endpoints by EDS: the ones its Envoy will warm. Nothing while the proxy holds no
    cluster at all (its first config: Envoy orders its own start)."""
    if held.empty:
        return set()
    return {n for n in names if held.get(n) is None and has_endpoints(n)}
