"""Which ADS streams the hub admits, and the record of the ones it turned away.

A proxy's xDS credential opens one stream at a time. Envoy keeps a single ADS stream, so a
second stream that presents a node's valid credential while its first one is live is not
that Envoy: someone else holds the credential (a copied bootstrap). The hub refuses it and
keeps a ``StreamEvent``; `tulle check --proxy` and `tulle diagnose` (TUL1066) report it while
the exposed credential is still the workload's (``exposed_credentials``).

The one legitimate overlap is an Envoy that restarted: its old stream's socket closed, but
the new stream may arrive before the hub has seen the old one end. The hub waits up to
``HANDOVER_GRACE_S`` for the old stream to go before it refuses; Envoy retries a refused
stream with backoff (0.1 to 1 s), so a handover converges even when it takes longer.

A stream must also name its node: one that sends no first request within
``FIRST_REQUEST_TIMEOUT_S`` is closed (Envoy sends it at once), so idle connections cannot
pile up.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tulle.errors import ApiError

# Envoy sends its first DiscoveryRequest as soon as the stream opens (70-90 ms after start,
# measured); a stream silent this long is not an Envoy.
FIRST_REQUEST_TIMEOUT_S = 5.0
# How long a second stream for a node waits for the first one to end (an Envoy restart: the
# old socket is closed, the hub may not have processed it yet) before it is refused.
HANDOVER_GRACE_S = 1.0
# Kept per kind, so that a flood of silent streams cannot push a refused duplicate out.
EVENTS_PER_KIND = 200


class StreamEventKind(enum.Enum):
    DUPLICATE = "duplicate"  # refused: the node already had a live stream
    SILENT = "silent"  # closed: no first request in time
    UNAUTHENTICATED = "unauthenticated"  # refused: unknown node or wrong credential
    SUPERSEDED = "superseded"  # closed: the workload registered again with a new credential

    @property
    def refused(self) -> bool:
        """The stream was turned away (else: an old stream was closed for a newer one)."""
        return self is not StreamEventKind.SUPERSEDED


@dataclass(frozen=True)
class StreamEvent:
    """An ADS stream the hub refused or closed: which node it named, from where, when, why."""

    kind: StreamEventKind
    node: str  # "" when the stream never named one
    peer: str  # gRPC's peer string: "ipv4:127.0.0.1:40112"
    at: float  # wall clock
    reason: str  # in words, as the log and the API say it
    holder_peer: str = ""  # DUPLICATE: the stream that kept the node
    holder_since: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "node": self.node, "peer": self.peer, "at": self.at,
                "reason": self.reason, "holderPeer": self.holder_peer,
                "holderSince": self.holder_since}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StreamEvent:
        try:
            since = data.get("holderSince")
            return cls(StreamEventKind(data["kind"]), str(data["node"]), str(data["peer"]),
                       float(data["at"]), str(data["reason"]),
                       str(data.get("holderPeer") or ""),
                       None if since is None else float(since))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ApiError(f"the control plane sent an xDS stream event this tulle cannot "
                           f"read: {type(exc).__name__} {exc}",
                           hint="are the CLI and the control plane the same tulle version? "
                                "(`tulle version`, `tulle status`)") from exc


class StreamEventLog:
    """Refused and closed streams, newest last, bounded per kind; totals never go down."""

    def __init__(self, per_kind: int = EVENTS_PER_KIND) -> None:
        self._events: dict[StreamEventKind, deque[StreamEvent]] = {
            kind: deque(maxlen=per_kind) for kind in StreamEventKind}
        self.totals: Counter[StreamEventKind] = Counter()

    def record(self, event: StreamEvent) -> None:
        self._events[event.kind].append(event)
        self.totals[event.kind] += 1

    def entries(self) -> list[StreamEvent]:
        """Every kept event, oldest first."""
        return sorted((e for kept in self._events.values() for e in kept), key=lambda e: e.at)


def exposed_credentials(events: Iterable[StreamEvent], registered_at: Mapping[str, float]
                        ) -> dict[str, tuple[StreamEvent, ...]]:
    """Refused duplicate streams whose credential is still in use, by node: the node is
    registered (``registered_at``: node -> when its current registration began) and has not
    registered again since the refusal (a new registration brings a new credential)."""
    exposed: dict[str, list[StreamEvent]] = {}
    for event in events:
        since = registered_at.get(event.node)
        if event.kind is StreamEventKind.DUPLICATE and since is not None and event.at >= since:
            exposed.setdefault(event.node, []).append(event)
    return {node: tuple(found) for node, found in sorted(exposed.items())}
