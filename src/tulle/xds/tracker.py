"""ACK/NACK tracking, per proxy and per xDS type: the facts `tulle proxy-status` shows."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

# The state of these facts (SYNCED, PENDING, ...) is classified in one place: tulle.xds.sync.
from tulle.xds.sync import Nack


@dataclass
class TypeStatus:
    """What was sent of one type to one proxy, and what the proxy answered (mutable: the
    stream updates it; readers get a ``sync.TypeSync``)."""

    sent_version: str = ""
    sent_nonce: str = ""
    sent_at: float | None = None
    sent_mesh_version: int = 0
    answered_nonce: str = ""  # the last nonce the proxy ACKed or NACKed
    acked_version: str = ""
    acked_at: float | None = None
    acked_mesh_version: int = 0
    last_nack: Nack | None = None

    @property
    def pending(self) -> bool:
        return bool(self.sent_nonce) and self.answered_nonce != self.sent_nonce


@dataclass
class ProxyStatus:
    node_id: str
    protocol: str
    connected_at: float
    peer: str = ""
    types: dict[str, TypeStatus] = field(default_factory=dict)  # by type URL

    def of(self, type_url: str) -> TypeStatus:
        return self.types.setdefault(type_url, TypeStatus())


# A ProxyStatus as plain tuples (protocol, connected_at, peer, ((type URL, *TypeStatus),...)):
# what a worker process reports, many times per push, pickled far faster than the dataclasses.
StatusFacts = tuple[str, float, str, tuple[tuple[object, ...], ...]]


def facts_of(status: ProxyStatus) -> StatusFacts:
    return (status.protocol, status.connected_at, status.peer, tuple(
        (url, t.sent_version, t.sent_nonce, t.sent_at, t.sent_mesh_version, t.answered_nonce,
         t.acked_version, t.acked_at, t.acked_mesh_version, t.last_nack)
        for url, t in status.types.items()))


def status_of(node_id: str, facts: StatusFacts) -> ProxyStatus:
    protocol, connected_at, peer, types = facts
    return ProxyStatus(node_id, protocol, connected_at, peer,
                       {str(t[0]): TypeStatus(*t[1:]) for t in types})  # type: ignore[arg-type]


class NackLog:
    """Every NACK this control plane received, newest last (bounded), and a running total."""

    def __init__(self, capacity: int = 1000) -> None:
        self._entries: deque[Nack] = deque(maxlen=capacity)
        self.total = 0
        self.by_type: Counter[str] = Counter()  # type URL -> NACKs, never reset

    def record(self, nack: Nack) -> None:
        self._entries.append(nack)
        self.total += 1
        self.by_type[nack.type_url] += 1

    def entries(self) -> list[Nack]:
        return list(self._entries)


class ResponseLog:
    """How many responses (pushes) of each type this control plane sent, since it started.
    Per-stream status goes with its stream; these counts never go down (Prometheus counters).
    """

    def __init__(self) -> None:
        self.by_type: Counter[str] = Counter()

    def record(self, type_url: str) -> None:
        self.by_type[type_url] += 1
