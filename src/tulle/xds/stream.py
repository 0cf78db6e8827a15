"""Per-stream ADS state machines, for State-of-the-World and Delta. No I/O.

A stream takes requests from its proxy (``handle_request``) and new configs from the control
plane (``offer``), and returns the encoded responses to send, in order. The gRPC server does the
I/O; tests drive these classes directly.

Rules both variants follow:
- pushes go clusters, endpoints, listeners, routes; clusters that disappear are removed only
  after listeners and routes stopped pointing at them (make-before-break);
- a changed cluster is always followed by its endpoints, even unchanged: Envoy keeps a changed
  EDS cluster warming until a new assignment arrives (or for 15 s);
- NACKs are detected by ``error_detail``, never by comparing versions, and are not retried: the
  proxy keeps its last good config and the NACK is recorded for `tulle proxy-status`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tulle.xds import types
from tulle.xds.compiler import ProxyConfig
from tulle.xds.sync import Nack
from tulle.xds.tracker import ProxyStatus
from tulle.xds.wire import (
    EncodedResource,
    delta_body,
    set_version,
    sotw_body,
    versions_of,
    with_nonce,
)

NackSink = Callable[[Nack], None]
SentSink = Callable[[str], None]  # the type URL of each response sent
Clock = Callable[[], float]


class XdsStream:
    protocol = "base"

    def __init__(self, node_id: str, on_nack: NackSink, *, peer: str = "",
                 clock: Clock = time.time, on_sent: SentSink | None = None) -> None:
        self.node_id = node_id
        self._clock = clock
        self._on_nack = on_nack
        self._on_sent = on_sent
        self.status = ProxyStatus(node_id, self.protocol, clock(), peer)
        self.config: ProxyConfig | None = None
        self._subs: dict[str, frozenset[str] | None] = {}  # None: wildcard
        self._nonces = 0

    # -- public contract -------------------------------------------------------------------

    def handle_request(self, request: Any) -> list[bytes]:
        raise NotImplementedError

    def offer(self, config: ProxyConfig) -> list[bytes]:
        raise NotImplementedError

    def synced(self, mesh_version: int) -> bool:
        """True once the proxy has answered everything sent for ``mesh_version`` or later, and
        has subscribed to every type its config uses."""
        config = self.config
        if config is None or config.mesh_version < mesh_version:
            return False
        for type_url in types.PUSH_ORDER:
            if config.of_type(type_url) and type_url not in self._subs:
                return False
            if self.status.of(type_url).pending:
                return False
        return True

    # -- shared mechanics ------------------------------------------------------------------

    def _next_nonce(self) -> str:
        self._nonces += 1
        return str(self._nonces)

    def _answered(self, type_url: str, nonce: str, error: Any, kept_version: str) -> bool:
        """Record an ACK or NACK. False when the nonce is stale and the request is ignored."""
        status = self.status.of(type_url)
        if nonce != status.sent_nonce:
            return False
        status.answered_nonce = nonce
        now = self._clock()
        if error is not None:
            nack = Nack(self.node_id, type_url, nonce, status.sent_version, kept_version,
                        str(error.message), now)
            status.last_nack = nack
            self._on_nack(nack)
        else:
            status.acked_version = status.sent_version
            status.acked_at = now
            status.acked_mesh_version = status.sent_mesh_version
        return True

    def _sent(self, type_url: str, body: bytes, version: str) -> bytes:
        nonce = self._next_nonce()
        status = self.status.of(type_url)
        status.sent_nonce = nonce
        status.sent_version = version
        status.sent_at = self._clock()
        status.sent_mesh_version = self.config.mesh_version if self.config else 0
        if self._on_sent is not None:
            self._on_sent(type_url)
        return with_nonce(body, nonce)

    def _wanted(self, type_url: str) -> dict[str, EncodedResource]:
        """What the proxy should have of ``type_url``, given its subscription."""
        assert self.config is not None
        available = self.config.of_type(type_url)
        subscribed = self._subs.get(type_url)
        if subscribed is None:
            return dict(available)
        return {name: available[name] for name in subscribed if name in available}


def _same_versions(a: Mapping[str, EncodedResource], b: Mapping[str, EncodedResource]) -> bool:
    """Whether two sets hold the same resources at the same versions (what comparing their
    set versions tells, without sorting and hashing both)."""
    return a.keys() == b.keys() and all(b[name].version == r.version for name, r in a.items())


def _error_of(request: Any) -> Any:
    return request.error_detail if request.HasField("error_detail") else None


class SotwStream(XdsStream):
    """State of the World: listeners and clusters always go as the complete set."""

    protocol = "sotw"

    def __init__(self, node_id: str, on_nack: NackSink, **kwargs: Any) -> None:
        super().__init__(node_id, on_nack, **kwargs)
        self._has: dict[str, dict[str, EncodedResource]] = {}  # what we sent, per type

    def handle_request(self, request: Any) -> list[bytes]:
        type_url = request.type_url
        if request.response_nonce and not self._answered(
                type_url, request.response_nonce, _error_of(request), request.version_info):
            return []  # stale: superseded by a response the proxy has not seen yet
        names = frozenset(request.resource_names)
        if type_url in types.WILDCARD_TYPES and (not names or "*" in names):
            subscription: frozenset[str] | None = None
        else:
            subscription = names
        first = type_url not in self._subs
        previous = self._subs.get(type_url)
        self._subs[type_url] = subscription
        if self.config is None:
            return []
        if first:
            return self._respond(type_url, self._wanted(type_url))
        if subscription is not None and previous is not None:
            # Names the proxy no longer asks for (a removed cluster's endpoints) leave the set
            # too: later versions must cover only what it subscribes to, as Envoy's do.
            has = self._has.get(type_url, {})
            for name in previous - subscription:
                has.pop(name, None)
            added = subscription - previous
            if added:
                wanted = self._wanted(type_url)
                return self._respond(type_url, {n: wanted[n] for n in added if n in wanted})
        return []

    def offer(self, config: ProxyConfig) -> list[bytes]:
        self.config = config
        out: list[bytes] = []
        old_clusters = self._has.get(types.CLUSTER, {})
        new_clusters = config.of_type(types.CLUSTER)
        changed_clusters = {n for n, r in new_clusters.items()
                            if n in old_clusters and old_clusters[n].version != r.version}
        removed = {n: r for n, r in old_clusters.items() if n not in new_clusters}
        for type_url in types.PUSH_ORDER:
            if type_url not in self._subs:
                continue
            wanted = self._wanted(type_url)
            has = self._has.get(type_url, {})
            if type_url in types.WILDCARD_TYPES:
                if type_url == types.CLUSTER and removed:
                    wanted = {**removed, **wanted}  # keep removed clusters until the end
                unanswered = not self.status.of(type_url).sent_nonce
                if unanswered or not _same_versions(wanted, has):
                    out += self._respond(type_url, wanted)
            else:
                delta = {n: r for n, r in wanted.items()
                         if n not in has or has[n].version != r.version
                         or (type_url == types.ENDPOINT and n in changed_clusters)}
                if delta:
                    out += self._respond(type_url, delta)
        if removed and types.CLUSTER in self._subs:
            out += self._respond(types.CLUSTER, self._wanted(types.CLUSTER))
        return out

    def _respond(self, type_url: str, resources: Mapping[str, EncodedResource]) -> list[bytes]:
        has = self._has.setdefault(type_url, {})
        if type_url in types.WILDCARD_TYPES:
            has.clear()
        has.update(resources)
        if not resources and type_url not in types.WILDCARD_TYPES:
            return []
        # version_info covers the whole subscribed set, not just the part in this response.
        version = set_version(versions_of(has.values()))
        body = sotw_body(type_url, version, resources.values())
        return [self._sent(type_url, body, version)]


class DeltaStream(XdsStream):
    """Incremental: only changed resources travel, and removals are named."""

    protocol = "delta"

    def __init__(self, node_id: str, on_nack: NackSink, **kwargs: Any) -> None:
        super().__init__(node_id, on_nack, **kwargs)
        self._known: dict[str, dict[str, str]] = {}  # the proxy's versions, per type
        # What the proxy held when it subscribed (a reconnect), per type: the version it keeps
        # running if it NACKs before ACKing anything on this stream.
        self._held_at_start: dict[str, str] = {}
        # Clusters sent changed whose endpoints must follow, even unchanged. Tracked apart from
        # ``offer`` because a reconnecting proxy may hold an older version of a cluster.
        self._endpoints_owed: set[str] = set()

    def handle_request(self, request: Any) -> list[bytes]:
        type_url = request.type_url
        if request.response_nonce:
            # ``_known`` already holds what was just sent: the proxy still runs what it ACKed.
            kept = self.status.of(type_url).acked_version or self._held_at_start.get(type_url, "")
            self._answered(type_url, request.response_nonce, _error_of(request), kept)
        first = type_url not in self._subs
        subscribe = set(request.resource_names_subscribe)
        unsubscribe = set(request.resource_names_unsubscribe)
        if first:
            self._known[type_url] = dict(request.initial_resource_versions)
            if request.initial_resource_versions:
                self._held_at_start[type_url] = set_version(self._known[type_url].items())
            wildcard = type_url in types.WILDCARD_TYPES and (not subscribe or "*" in subscribe)
            self._subs[type_url] = None if wildcard else frozenset(subscribe)
        else:
            current = self._subs[type_url]
            if current is not None:
                self._subs[type_url] = (current | subscribe) - unsubscribe
            for name in unsubscribe:
                self._known[type_url].pop(name, None)
        if self.config is None or not (first or subscribe):
            return []
        # A first subscription is always answered, even when the proxy already holds it all
        # (a reconnect): its ACK is what shows the type as SYNCED rather than NOT SENT.
        return self._push(type_url, only=None if first else subscribe, include_removed=first,
                          answer_empty=first)

    def offer(self, config: ProxyConfig) -> list[bytes]:
        self.config = config
        out: list[bytes] = []
        for type_url in types.PUSH_ORDER:
            if type_url in self._subs:
                out += self._push(type_url, include_removed=type_url != types.CLUSTER)
        if types.CLUSTER in self._subs:
            out += self._push(types.CLUSTER, include_removed=True)
        return out

    def _push(self, type_url: str, *, only: Iterable[str] | None = None,
              include_removed: bool, answer_empty: bool = False) -> list[bytes]:
        assert self.config is not None
        known = self._known.setdefault(type_url, {})
        wanted = self._wanted(type_url)
        candidates = wanted if only is None else {n: wanted[n] for n in only if n in wanted}
        forced = self._endpoints_owed if type_url == types.ENDPOINT else set()
        updates = [r for n, r in candidates.items() if known.get(n) != r.version or n in forced]
        removed: list[str] = []
        if include_removed:
            subscribed = self._subs.get(type_url)
            removed = [n for n in known if n not in wanted
                       and (subscribed is None or n in subscribed)]
        # A wildcard subscription gets an answer even when empty: Envoy's start-up waits for it.
        never_answered = answer_empty or (self._subs.get(type_url) is None
                                          and not self.status.of(type_url).sent_nonce)
        if not updates and not removed and not never_answered:
            return []
        if type_url == types.CLUSTER:
            assignments = self.config.of_type(types.ENDPOINT)
            self._endpoints_owed.update(r.name for r in updates
                                        if r.name in known and r.name in assignments)
        elif type_url == types.ENDPOINT:
            self._endpoints_owed.difference_update(r.name for r in updates)
        for resource in updates:
            known[resource.name] = resource.version
        for name in removed:
            del known[name]
        version = set_version(known.items())
        body = delta_body(type_url, version, updates, sorted(removed))
        return [self._sent(type_url, body, version)]

