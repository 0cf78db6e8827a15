"""ACK/NACK tracking, per proxy and per xDS type: what `tulle proxy-status` reads."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tulle.xds.types import short_name

# A push may stay un-ACKed this long before its proxy counts as STALE (`tulle up --stale-after`).
DEFAULT_STALE_AFTER_S = 10.0


def stale_after(status: Mapping[str, Any]) -> float:
    """The STALE threshold a proxy status (from ``XdsHub.statuses``) was judged by."""
    return float(status.get("staleAfterSeconds") or DEFAULT_STALE_AFTER_S)


@dataclass(frozen=True)
class Nack:
    node_id: str
    type_url: str
    nonce: str
    rejected_version: str  # the version we sent and the proxy refused
    kept_version: str  # the version the proxy still runs
    message: str  # Envoy's full error text: a dump of the resource, then the reason
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node_id, "type": short_name(self.type_url), "nonce": self.nonce,
                "rejectedVersion": self.rejected_version, "keptVersion": self.kept_version,
                "message": self.message, "at": self.at}


@dataclass
class TypeStatus:
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

    def to_dict(self) -> dict[str, Any]:
        if self.last_nack is not None and self.last_nack.nonce == self.sent_nonce:
            state = "NACKED"
        elif self.pending:
            state = "PENDING"
        elif self.sent_nonce:
            state = "SYNCED"
        else:
            state = "NOT_SENT"
        return {
            "state": state,
            "sentVersion": self.sent_version,
            "sentAt": self.sent_at,
            "sentMeshVersion": self.sent_mesh_version,
            "ackedVersion": self.acked_version,
            "ackedAt": self.acked_at,
            "ackedMeshVersion": self.acked_mesh_version,
            "nack": self.last_nack.to_dict() if self.last_nack else None,
        }


@dataclass
class ProxyStatus:
    node_id: str
    protocol: str
    connected_at: float
    peer: str = ""
    types: dict[str, TypeStatus] = field(default_factory=dict)

    def of(self, type_url: str) -> TypeStatus:
        return self.types.setdefault(type_url, TypeStatus())

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "protocol": self.protocol,
            "connectedAt": self.connected_at,
            "peer": self.peer,
            "types": {short_name(t): s.to_dict() for t, s in sorted(self.types.items())},
        }


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
