"""A proxy's xDS sync state: one classification, one vocabulary, for every reader.

The tracker (``tracker.py``) records facts per proxy and type: what was sent and when, what
the proxy answered. This module turns those facts into a ``SyncState``, once, on the control
plane, with the STALE threshold the control plane owns. ``/v1/proxies`` carries the state with
the facts (``ProxySync.to_json``) and the CLI, ``tulle check``, ``tulle diagnose`` and
``/metrics`` read the same typed view (``ProxySync.from_json`` on the client side), so a push
is called the same thing everywhere.

Roll-up: a proxy's state is the worst of its types' states, in ``ROLL_UP_ORDER``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from tulle.errors import ApiError
from tulle.xds.types import BY_SHORT_NAME, short_name

# A push may stay un-ACKed this long before it counts as STALE (`tulle up --stale-after`).
DEFAULT_STALE_AFTER_S = 10.0

TYPES: tuple[str, ...] = ("CDS", "EDS", "LDS", "SRDS", "RDS", "SDS")  # the types a proxy is shown


class SyncState(enum.Enum):
    SYNCED = "SYNCED"
    PENDING = "PENDING"
    STALE = "STALE"
    NACKED = "NACKED"
    NOT_SENT = "NOT_SENT"
    DISCONNECTED = "DISCONNECTED"

    @property
    def label(self) -> str:
        """The state in tables and messages: ``NOT SENT`` rather than ``NOT_SENT``."""
        return self.value.replace("_", " ")

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]

    @property
    def failing(self) -> bool:
        """Waiting does not fix it: `check` fails at once, `proxy-status` exits 1."""
        return self in (SyncState.NACKED, SyncState.STALE, SyncState.DISCONNECTED)


_MEANINGS = {
    SyncState.SYNCED: "the last version sent was ACKed",
    SyncState.PENDING: "sent, waiting for the ACK (for less than the STALE threshold)",
    SyncState.STALE: "sent, and not ACKed for longer than the STALE threshold",
    SyncState.NACKED: "the proxy refused the last version sent and runs the one it ACKed "
                      "before",
    SyncState.NOT_SENT: "nothing of this type was sent to the proxy",
    SyncState.DISCONNECTED: "the workload is registered but its proxy has no xDS stream",
}

# Worst first. A type never sent says nothing about the others, so NOT_SENT ranks below
# SYNCED: a proxy is NOT_SENT only when nothing at all was sent to it yet.
ROLL_UP_ORDER: tuple[SyncState, ...] = (
    SyncState.DISCONNECTED, SyncState.NACKED, SyncState.STALE, SyncState.PENDING,
    SyncState.SYNCED, SyncState.NOT_SENT)


def roll_up(states: Iterable[SyncState]) -> SyncState:
    """One state from several (a proxy's types): the worst, in ``ROLL_UP_ORDER``."""
    present = set(states)
    return next((s for s in ROLL_UP_ORDER if s in present), SyncState.NOT_SENT)


class PushFacts(Protocol):
    """What was sent of one type to one proxy and what it answered (``tracker.TypeStatus``)."""

    @property
    def sent_version(self) -> str: ...
    @property
    def sent_nonce(self) -> str: ...
    @property
    def sent_at(self) -> float | None: ...
    @property
    def sent_mesh_version(self) -> int: ...
    @property
    def answered_nonce(self) -> str: ...
    @property
    def acked_version(self) -> str: ...
    @property
    def acked_at(self) -> float | None: ...
    @property
    def acked_mesh_version(self) -> int: ...
    @property
    def last_nack(self) -> Nack | None: ...


class ProxyFacts(Protocol):
    """One connected proxy's facts (``tracker.ProxyStatus``)."""

    @property
    def node_id(self) -> str: ...
    @property
    def protocol(self) -> str: ...
    @property
    def connected_at(self) -> float: ...
    @property
    def peer(self) -> str: ...
    @property
    def types(self) -> Mapping[str, PushFacts]: ...


def classify(status: PushFacts | None, now: float, stale_after: float) -> SyncState:
    """The state of one xDS type of one connected proxy, at ``now``.

    NACKED only while the NACK answers the latest push: a later push supersedes it (the NACK
    stays on record). A push waits at most ``stale_after`` seconds as PENDING; longer, STALE.
    """
    if status is None or not status.sent_nonce:
        return SyncState.NOT_SENT
    nack = status.last_nack
    if nack is not None and nack.nonce == status.sent_nonce:
        return SyncState.NACKED
    if status.answered_nonce == status.sent_nonce:
        return SyncState.SYNCED
    sent_at = now if status.sent_at is None else status.sent_at
    return SyncState.STALE if now - sent_at > stale_after else SyncState.PENDING


# -- the typed view ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Nack:
    """A proxy refused a push."""

    node_id: str
    type_url: str
    nonce: str
    rejected_version: str  # the version we sent and the proxy refused
    kept_version: str  # the version the proxy still runs
    message: str  # Envoy's full error text: a dump of the resource, then the reason
    at: float

    @property
    def type(self) -> str:
        return short_name(self.type_url)

    @property
    def reason(self) -> str:
        """The last line of Envoy's message: the reason, after the dump of the resource."""
        lines = self.message.strip().splitlines()
        return lines[-1] if lines else ""

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node_id, "type": self.type, "nonce": self.nonce,
                "rejectedVersion": self.rejected_version, "keptVersion": self.kept_version,
                "message": self.message, "at": self.at}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Nack:
        with _decoding("a NACK"):
            kind = str(data["type"])
            return cls(str(data["node"]), BY_SHORT_NAME.get(kind, kind), str(data["nonce"]),
                       str(data["rejectedVersion"]), str(data["keptVersion"]),
                       str(data["message"]), float(data["at"]))


@dataclass(frozen=True)
class TypeSync:
    """One xDS type of one proxy: its state and the facts it was judged on."""

    type: str  # short name: "CDS"
    state: SyncState
    sent_version: str = ""
    sent_at: float | None = None
    sent_mesh_version: int = 0
    acked_version: str = ""
    acked_at: float | None = None
    acked_mesh_version: int = 0
    nack: Nack | None = None  # the last NACK of this type, also when a later push superseded it

    def waiting_s(self, now: float) -> float | None:
        """How long the push has waited for an answer (PENDING or STALE); else None."""
        if self.state not in (SyncState.PENDING, SyncState.STALE) or self.sent_at is None:
            return None
        return max(0.0, now - self.sent_at)

    def describe(self, now: float) -> str:
        """The state in words, as every command says it: ``sent, waiting for the ACK, 1.2s``."""
        waited = self.waiting_s(now)
        if self.state is SyncState.PENDING:
            return f"sent, waiting for the ACK, {waited or 0.0:.1f}s"
        if self.state is SyncState.STALE:
            return f"sent, not ACKed for {waited or 0.0:.0f}s"
        if self.state is SyncState.NACKED and self.nack is not None:
            return (f"refused version {self.nack.rejected_version}, runs "
                    f"{self.nack.kept_version or '-'}: {self.nack.reason}")
        if self.state is SyncState.SYNCED:
            return f"ACKed version {self.acked_version}"
        return self.state.meaning

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state.value, "sentVersion": self.sent_version,
                "sentAt": self.sent_at, "sentMeshVersion": self.sent_mesh_version,
                "ackedVersion": self.acked_version, "ackedAt": self.acked_at,
                "ackedMeshVersion": self.acked_mesh_version,
                "nack": self.nack.to_json() if self.nack else None}

    @classmethod
    def from_json(cls, kind: str, data: Mapping[str, Any]) -> TypeSync:
        with _decoding(f"the {kind} state"):
            nack = data.get("nack")
            return cls(kind, SyncState(data["state"]), str(data.get("sentVersion") or ""),
                       _time(data.get("sentAt")), int(data.get("sentMeshVersion") or 0),
                       str(data.get("ackedVersion") or ""), _time(data.get("ackedAt")),
                       int(data.get("ackedMeshVersion") or 0),
                       Nack.from_json(nack) if nack else None)


@dataclass(frozen=True)
class ProxySync:
    """One proxy's sync view. ``connected_at`` None: DISCONNECTED (no xDS stream)."""

    node: str
    stale_after_s: float = DEFAULT_STALE_AFTER_S  # the threshold the states were judged by
    protocol: str = ""  # "sotw" or "delta"
    connected_at: float | None = None
    peer: str = ""
    types: tuple[TypeSync, ...] = ()  # the types the tracker has a record of, by short name

    @property
    def connected(self) -> bool:
        return self.connected_at is not None

    @property
    def state(self) -> SyncState:
        if not self.connected:
            return SyncState.DISCONNECTED
        return roll_up(t.state for t in self.types)

    def of(self, kind: str) -> TypeSync:
        """The type ``kind`` ("RDS"); NOT_SENT when it was never sent."""
        return next((t for t in self.types if t.type == kind),
                    TypeSync(kind, SyncState.NOT_SENT))

    @property
    def last_push_at(self) -> float | None:
        pushes = [t.sent_at for t in self.types if t.sent_at]
        return max(pushes) if pushes else None

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "state": self.state.value, "protocol": self.protocol,
                "connectedAt": self.connected_at, "peer": self.peer,
                "staleAfterSeconds": self.stale_after_s,
                "types": {t.type: t.to_json() for t in self.types}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProxySync:
        """The one decoder of ``/v1/proxies`` entries (the CLI, `tulle check`)."""
        with _decoding("a proxy's sync state"):
            types = data.get("types") or {}
            return cls(str(data["node"]),
                       float(data.get("staleAfterSeconds") or DEFAULT_STALE_AFTER_S),
                       str(data.get("protocol") or ""), _time(data.get("connectedAt")),
                       str(data.get("peer") or ""),
                       tuple(TypeSync.from_json(str(k), v) for k, v in sorted(types.items())))


def view_of(status: ProxyFacts, now: float, stale_after: float) -> ProxySync:
    """A connected proxy's sync view from its tracker status, classified at ``now``."""
    return ProxySync(
        status.node_id, stale_after, status.protocol, status.connected_at, status.peer,
        tuple(sorted((TypeSync(short_name(url), classify(s, now, stale_after), s.sent_version,
                               s.sent_at, s.sent_mesh_version, s.acked_version, s.acked_at,
                               s.acked_mesh_version, s.last_nack)
                      for url, s in status.types.items()), key=lambda t: t.type)))


def with_disconnected(connected: Iterable[ProxySync], registered: Iterable[str],
                      stale_after: float) -> tuple[ProxySync, ...]:
    """Every proxy: the connected ones, and a DISCONNECTED view of each ``registered`` node
    without a stream. By node."""
    views = {p.node: p for p in connected}
    for node in registered:
        views.setdefault(node, ProxySync(node, stale_after))
    return tuple(views[n] for n in sorted(views))


# -- decoding helpers --------------------------------------------------------------------------

def _time(value: Any) -> float | None:
    return None if value is None else float(value)


@contextmanager
def _decoding(what: str) -> Iterator[None]:
    """Turns a malformed answer of the API into an ApiError that says what was being read."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ApiError(f"the control plane sent {what} this tulle cannot read: "
                       f"{type(exc).__name__} {exc}",
                       hint="are the CLI and the control plane the same tulle version? "
                            "(`tulle version`, `tulle status`)") from exc
