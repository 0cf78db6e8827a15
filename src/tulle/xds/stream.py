"""Per-stream ADS state machines, for State-of-the-World and Delta. No I/O.

A stream takes requests from its proxy (``handle_request``) and new configs from the control
plane (``offer``), and returns the encoded responses to send, in order. The gRPC server does the
I/O; tests drive these classes directly.

Rules both variants follow:
- pushes go clusters, endpoints, listeners, routes; clusters that disappear are removed only
  after listeners and routes stopped pointing at them (make-before-break);
- a changed cluster is always followed by its endpoints, even unchanged: Envoy keeps a changed
  EDS cluster warming until a new assignment arrives (or for 15 s);
- while a cluster new to the proxy waits for its endpoints, what could point at it (listeners,
  scopes, route tables) and the removal of old clusters wait too (xds.warming);
- NACKs are detected by ``error_detail``, never by comparing versions, and are not retried: the
  proxy keeps its last good config and the NACK is recorded for `tulle proxy-status`.

Work in proportion to the change: when a stream is *in step* (it has pushed everything of its
last config, and no subscription changed since) and the new config's shared part was diffed
against the one that config held, ``offer`` looks only at the names of that diff and at the
proxy's own few resources; every other name is unchanged, so the full comparison would skip it
too. Otherwise (a new stream, a skipped snapshot, a subscription change) it compares
everything. Set versions are running sums kept per type (wire.set_version), so no push sorts
and hashes every name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from tulle.xds import types
from tulle.xds.config import ProxyConfig
from tulle.xds.held import Held, NamePool, default_pool, stub
from tulle.xds.sync import Nack
from tulle.xds.tracker import ProxyStatus
from tulle.xds.warming import ROUTING, Warming, new_clusters
from tulle.xds.wire import (
    EncodedResource,
    delta_parts,
    joined_with_nonce,
    same_versions,
    set_version,
    sotw_parts,
    sum_of,
    version_of_sum,
)

NackSink = Callable[[Nack], None]
SentSink = Callable[[str], None]  # the type URL of each response sent
Clock = Callable[[], float]


class XdsStream:
    protocol = "base"

    def __init__(self, node_id: str, on_nack: NackSink, *, peer: str = "",
                 clock: Clock = time.time, on_sent: SentSink | None = None,
                 pool: NamePool | None = None) -> None:
        self.node_id = node_id
        self._pool = pool or default_pool()
        self._clock = clock
        self._on_nack = on_nack
        self._on_sent = on_sent
        self.status = ProxyStatus(node_id, self.protocol, clock(), peer)
        self.config: ProxyConfig | None = None
        self._subs: dict[str, frozenset[str] | None] = {}  # None: wildcard
        self._nonces = 0
        # Everything of ``config`` was pushed and no subscription changed since: the next
        # offer may apply the shared part's diff only.
        self._in_step = False
        self._warming = Warming()

    # -- public contract -------------------------------------------------------------------

    def handle_request(self, request: Any) -> list[bytes]:
        out = self._handle(request)
        config = self.config
        if self._warming and config is not None and self._settle_warming(config):
            out += self.offer(config)  # what waited for the clusters
        return out

    def offer(self, config: ProxyConfig) -> list[bytes]:
        raise NotImplementedError

    def warming_deadline(self) -> float | None:
        """When ``stop_waiting`` must be called if no request comes first (clock time)."""
        return self._warming.deadline()

    def stop_waiting(self) -> list[bytes]:
        """Past the deadline: push what waited for warming clusters, whatever the proxy did."""
        config = self.config
        if config is None or not self._warming.expire(self._clock()):
            return []
        return self.offer(config)

    def synced(self, mesh_version: int) -> bool:
        """True once the proxy has answered everything sent for ``mesh_version`` or later, and
        has subscribed to every type its config uses."""
        config = self.config
        if config is None or config.mesh_version < mesh_version or self._warming:
            return False
        for type_url in types.PUSH_ORDER:
            if config.holds(type_url) and type_url not in self._subs:
                return False
            if self.status.of(type_url).pending:
                return False
        return True

    # -- shared mechanics ------------------------------------------------------------------

    def _handle(self, request: Any) -> list[bytes]:
        raise NotImplementedError

    def _held_of(self, type_url: str) -> Held | None:
        raise NotImplementedError

    def _endpoints_sent(self, name: str) -> bool:
        held = self._held_of(types.ENDPOINT)
        return held is not None and held.get(name) is not None

    def _settle_warming(self, config: ProxyConfig) -> bool:
        """Drop the clusters that are warm or no longer wait for endpoints in ``config``;
        True when that ended the wait."""
        return self._warming.settle(self.status, self._endpoints_sent,
                                    lambda name: _takes_endpoints(config, name))

    def _hold_for_warming(self, changes: dict[str, set[str]] | None) -> bool:
        """Before a push of ``self.config``: note the clusters it sends new, and whether what
        points at clusters must wait for them."""
        config = self.config
        held = self._held_of(types.CLUSTER)
        if config is None or held is None or types.CLUSTER not in self._subs:
            return bool(self._warming)
        if self._warming:
            self._settle_warming(config)
        names = (config.of_type(types.CLUSTER).keys() if changes is None
                 else changes[types.CLUSTER])
        fresh = new_clusters(held, names, lambda name: _takes_endpoints(config, name))
        if fresh:
            self._warming.add(fresh, self._clock())
        return bool(self._warming)

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

    def _sent(self, type_url: str, body: list[bytes], version: str) -> bytes:
        nonce = self._next_nonce()
        status = self.status.of(type_url)
        status.sent_nonce = nonce
        status.sent_version = version
        status.sent_at = self._clock()
        status.sent_mesh_version = self.config.mesh_version if self.config else 0
        if self._on_sent is not None:
            self._on_sent(type_url)
        return joined_with_nonce(body, nonce)

    def _wanted(self, type_url: str) -> dict[str, EncodedResource]:
        """What the proxy should have of ``type_url``, given its subscription."""
        assert self.config is not None
        available = self.config.of_type(type_url)
        subscribed = self._subs.get(type_url)
        if subscribed is None:
            return dict(available)
        return {name: available[name] for name in subscribed if name in available}

    def _wanted_one(self, type_url: str, name: str) -> EncodedResource | None:
        """``_wanted(type_url).get(name)``, without building the whole set."""
        assert self.config is not None
        subscribed = self._subs.get(type_url)
        if subscribed is not None and name not in subscribed:
            return None
        return self.config.get(type_url, name)

    def _rebase(self, held: Mapping[str, Held], config: ProxyConfig) -> None:
        """Measure what the proxy holds against ``config``'s shared part: at the cost of the
        shared part's diff when the last base was the one it is from."""
        shared = config.shared
        for type_url, of_type in held.items():
            if of_type.serial == shared.serial:
                continue
            names = (shared.changed_names(type_url)
                     if of_type.serial >= 0 and shared.base == of_type.serial else None)
            of_type.rebase(shared.resources.get(type_url, _NOTHING), shared.serial, names)

    def _settle(self, type_url: str, held: Held) -> None:
        """After a push: a stream that keeps many differences from the shared part (the first
        push, made before any base) measures them against it once more, so that it keeps only
        the proxy's own."""
        if held.loose() and self.config is not None:
            shared = self.config.shared
            held.rebase(shared.resources.get(type_url, _NOTHING), shared.serial, None)

    def _changes(self, config: ProxyConfig) -> dict[str, set[str]] | None:
        """Per type, the only names that can differ between what the stream pushed of its
        last config and what ``config`` wants; None when every name must be compared."""
        last = self.config
        if not self._in_step or last is None:
            return None
        shared = config.shared
        if shared is last.shared:
            changes: dict[str, set[str]] = {t: set() for t in types.PUSH_ORDER}
        elif shared.base is not None and shared.base == last.shared.serial:
            changes = {t: set(shared.changed_names(t)) for t in types.PUSH_ORDER}
        else:
            return None  # a skipped snapshot: the diff is not from what the proxy has
        for type_url, names in changes.items():
            names.update(last.own_names(type_url))
            names.update(config.own_names(type_url))
        return changes


_NOTHING: Mapping[str, EncodedResource] = MappingProxyType({})


def _takes_endpoints(config: ProxyConfig, cluster: str) -> bool:
    """A cluster of ``config`` whose endpoints come by EDS (one Envoy warms until they do)."""
    return (config.get(types.CLUSTER, cluster) is not None
            and config.get(types.ENDPOINT, cluster) is not None)


def _error_of(request: Any) -> Any:
    return request.error_detail if request.HasField("error_detail") else None


class SotwStream(XdsStream):
    """State of the World: listeners and clusters always go as the complete set."""

    protocol = "sotw"

    def __init__(self, node_id: str, on_nack: NackSink, **kwargs: Any) -> None:
        super().__init__(node_id, on_nack, **kwargs)
        self._has: dict[str, Held] = {}  # what we sent, per type
        self._has_sum: dict[str, int] = {}  # per type: set_version's running sum of ``_has``

    def _held_of(self, type_url: str) -> Held | None:
        return self._has.get(type_url)

    def _handle(self, request: Any) -> list[bytes]:
        type_url = request.type_url
        if request.response_nonce and not self._answered(
                type_url, request.response_nonce, _error_of(request), request.version_info):
            return []  # stale: superseded by a response the proxy has not seen yet
        names = frozenset(request.resource_names)
        first = type_url not in self._subs
        previous = self._subs.get(type_url)
        if type_url in types.WILDCARD_TYPES and (not names or "*" in names):
            subscription: frozenset[str] | None = None
        else:
            # Every SotW ACK repeats the whole subscription: pooled only when it changed.
            subscription = previous if names == previous else self._pool.names(names)
        self._subs[type_url] = subscription
        if first or subscription != previous:
            self._in_step = False
        if self.config is None:
            return []
        if first:
            return self._respond(type_url, self._wanted(type_url))
        if subscription is not None and previous is not None:
            # Names the proxy no longer asks for (a removed cluster's endpoints) leave the set
            # too: later versions must cover only what it subscribes to, as Envoy's do.
            has = self._held(type_url)
            for name in previous - subscription:
                gone = has.pop(name)
                if gone is not None:
                    self._has_sum[type_url] -= gone.member_hash
            added = subscription - previous
            if added:
                found = ((n, self._wanted_one(type_url, n)) for n in added)
                return self._respond(type_url, {n: r for n, r in found if r is not None})
        return []

    def offer(self, config: ProxyConfig) -> list[bytes]:
        changes = self._changes(config)
        self.config = config
        self._rebase(self._has, config)
        out: list[bytes] = []
        holding = self._hold_for_warming(changes)
        changed_clusters, removed = self._cluster_changes(
            None if changes is None else changes[types.CLUSTER])
        for type_url in types.PUSH_ORDER:
            if type_url not in self._subs or (holding and type_url in ROUTING):
                continue
            names = None if changes is None else changes[type_url]
            if type_url in types.WILDCARD_TYPES:
                # Removed clusters stay until the end (make-before-break).
                keep = removed if type_url == types.CLUSTER else {}
                unanswered = not self.status.of(type_url).sent_nonce
                if unanswered or self._differs(type_url, keep, names):
                    out += self._respond(type_url, {**keep, **self._wanted(type_url)})
            else:
                if names is not None and type_url == types.ENDPOINT:
                    names = names | changed_clusters
                delta = self._delta(type_url, names, changed_clusters)
                if delta:
                    out += self._respond(type_url, delta)
        if removed and types.CLUSTER in self._subs and not holding:
            out += self._respond(types.CLUSTER, self._wanted(types.CLUSTER))
        self._in_step = not holding  # what waits is compared in full once it goes
        return out

    def _cluster_changes(self, names: Iterable[str] | None
                         ) -> tuple[set[str], dict[str, EncodedResource]]:
        """The clusters sent before that change version, and those that leave."""
        assert self.config is not None
        held = self._held(types.CLUSTER)
        if names is None:
            old_clusters = held.snapshot()
            new_clusters = self.config.of_type(types.CLUSTER)
            return ({n for n, r in new_clusters.items()
                     if n in old_clusters and old_clusters[n].version != r.version},
                    {n: r for n, r in old_clusters.items() if n not in new_clusters})
        changed: set[str] = set()
        removed: dict[str, EncodedResource] = {}
        for name in names:
            old = held.get(name)
            if old is None:
                continue
            new = self.config.get(types.CLUSTER, name)
            if new is None:
                removed[name] = old
            elif new.version != old.version:
                changed.add(name)
        return changed, removed

    def _differs(self, type_url: str, keep: Mapping[str, EncodedResource],
                 names: Iterable[str] | None) -> bool:
        """Whether a wildcard type's complete set differs from what the proxy was sent."""
        has = self._held(type_url)
        if names is None:
            return not same_versions({**keep, **self._wanted(type_url)}, has.snapshot())
        return any(_version(self._wanted_one(type_url, name) or keep.get(name))
                   != _version(has.get(name)) for name in names)

    def _delta(self, type_url: str, names: Iterable[str] | None,
               changed_clusters: set[str]) -> dict[str, EncodedResource]:
        """What a by-name type must send: new or changed, and the endpoints of changed
        clusters."""
        held = self._held(type_url)
        forced = changed_clusters if type_url == types.ENDPOINT else set()
        has: Mapping[str, EncodedResource]
        if names is None:
            wanted: Iterable[tuple[str, EncodedResource | None]] = \
                self._wanted(type_url).items()
            has = held.snapshot()
        else:
            wanted = ((name, self._wanted_one(type_url, name)) for name in names)
            has = held
        return {name: r for name, r in wanted
                if r is not None and (_differ(has.get(name), r) or name in forced)}

    def _respond(self, type_url: str, resources: Mapping[str, EncodedResource]) -> list[bytes]:
        has = self._held(type_url)
        if has.empty and self.config is not None:  # a first push: one pass, at C speed
            shared = self.config.shared
            has.fill(shared.resources.get(type_url, _NOTHING), shared.serial, resources)
            self._has_sum[type_url] = sum_of(resources.values())
        elif type_url in types.WILDCARD_TYPES:
            has.replace(resources)
            self._has_sum[type_url] = sum_of(resources.values())
            self._settle(type_url, has)
        else:
            total = self._has_sum.get(type_url, 0)
            for name, resource in resources.items():
                old = has.get(name)
                if old is not None:
                    total -= old.member_hash
                total += resource.member_hash
                has.put(name, resource)
            self._has_sum[type_url] = total
        self._settle(type_url, has)
        if not resources and type_url not in types.WILDCARD_TYPES:
            return []
        # version_info covers the whole subscribed set, not just the part in this response.
        version = version_of_sum(self._has_sum[type_url])
        body = sotw_parts(type_url, version, resources.values())
        return [self._sent(type_url, body, version)]

    def _held(self, type_url: str) -> Held:
        held = self._has.get(type_url)
        if held is None:
            held = self._has[type_url] = Held()
        return held


def _differ(held: EncodedResource | None, wanted: EncodedResource) -> bool:
    return held is not wanted and (held is None or held.version != wanted.version)


def _version(resource: EncodedResource | None) -> str | None:
    return None if resource is None else resource.version


class DeltaStream(XdsStream):
    """Incremental: only changed resources travel, and removals are named."""

    protocol = "delta"

    def __init__(self, node_id: str, on_nack: NackSink, **kwargs: Any) -> None:
        super().__init__(node_id, on_nack, **kwargs)
        self._known: dict[str, Held] = {}  # what the proxy holds, per type
        self._known_sum: dict[str, int] = {}  # per type: set_version's running sum of it
        # What the proxy held when it subscribed (a reconnect), per type: the version it keeps
        # running if it NACKs before ACKing anything on this stream.
        self._held_at_start: dict[str, str] = {}
        # Clusters sent changed whose endpoints must follow, even unchanged. Tracked apart from
        # ``offer`` because a reconnecting proxy may hold an older version of a cluster.
        self._endpoints_owed: set[str] = set()

    def _held_of(self, type_url: str) -> Held | None:
        return self._known.get(type_url)

    def _handle(self, request: Any) -> list[bytes]:
        type_url = request.type_url
        if request.response_nonce:
            # ``_known`` already holds what was just sent: the proxy still runs what it ACKed.
            kept = self.status.of(type_url).acked_version or self._held_at_start.get(type_url, "")
            self._answered(type_url, request.response_nonce, _error_of(request), kept)
        first = type_url not in self._subs
        subscribe = set(request.resource_names_subscribe)
        unsubscribe = set(request.resource_names_unsubscribe)
        if first or subscribe or unsubscribe:
            self._in_step = False
        if first:
            initial = request.initial_resource_versions
            known = self._known[type_url] = Held()
            for name, version in initial.items():
                known.put(name, stub(type_url, name, version))
            self._known_sum[type_url] = sum(r.member_hash for r in known.values())
            if initial:
                self._held_at_start[type_url] = set_version(initial.items())
            wildcard = type_url in types.WILDCARD_TYPES and (not subscribe or "*" in subscribe)
            self._subs[type_url] = None if wildcard else self._pool.names(subscribe)
        else:
            current = self._subs[type_url]
            if current is not None:
                self._subs[type_url] = self._pool.names((current | subscribe) - unsubscribe)
            known = self._known[type_url]
            for name in unsubscribe:
                gone = known.pop(name)
                if gone is not None:
                    self._known_sum[type_url] -= gone.member_hash
        if self.config is None or not (first or subscribe):
            return []
        # A first subscription is always answered, even when the proxy already holds it all
        # (a reconnect): its ACK is what shows the type as SYNCED rather than NOT SENT.
        return self._push(type_url, only=None if first else subscribe, include_removed=first,
                          answer_empty=first)

    def offer(self, config: ProxyConfig) -> list[bytes]:
        changes = self._changes(config)
        self.config = config
        self._rebase(self._known, config)
        out: list[bytes] = []
        holding = self._hold_for_warming(changes)
        for type_url in types.PUSH_ORDER:
            if type_url in self._subs and not (holding and type_url in ROUTING):
                out += self._push(type_url, include_removed=type_url != types.CLUSTER,
                                  changes=None if changes is None else changes[type_url])
        if types.CLUSTER in self._subs and not holding:
            out += self._push(types.CLUSTER, include_removed=True,
                              changes=None if changes is None else changes[types.CLUSTER])
        self._in_step = not holding  # what waits is compared in full once it goes
        return out

    def _push(self, type_url: str, *, only: Iterable[str] | None = None,
              include_removed: bool, answer_empty: bool = False,
              changes: set[str] | None = None) -> list[bytes]:
        """``only``: just these names (a subscription); ``changes``: the only names that can
        differ from what the proxy was sent (an offer in step); neither: compare all."""
        assert self.config is not None
        known = self._known.get(type_url)
        if known is None:
            known = self._known[type_url] = Held()
        forced = self._endpoints_owed if type_url == types.ENDPOINT else set()
        subscribed = self._subs.get(type_url)
        removed: list[str] = []
        has: Mapping[str, EncodedResource] = known
        if only is None and changes is None:
            wanted = self._wanted(type_url)
            candidates = wanted
            has = known.snapshot()
            if include_removed:
                removed = [n for n in has if n not in wanted
                           and (subscribed is None or n in subscribed)]
        else:
            names = only if only is not None else (changes or set()) | forced
            found = ((n, self._wanted_one(type_url, n)) for n in names)
            candidates = {n: r for n, r in found if r is not None}
            if include_removed and changes is not None:
                removed = [n for n in changes if n in known and n not in candidates
                           and (subscribed is None or n in subscribed)]
        updates = [r for n, r in candidates.items()
                   if ((h := has.get(n)) is not r and (h is None or h.version != r.version))
                   or n in forced]
        # A wildcard subscription gets an answer even when empty: Envoy's start-up waits for it.
        never_answered = answer_empty or (subscribed is None
                                          and not self.status.of(type_url).sent_nonce)
        if not updates and not removed and not never_answered:
            return []
        if type_url == types.CLUSTER:
            self._endpoints_owed.update(
                r.name for r in updates
                if r.name in known and self.config.get(types.ENDPOINT, r.name) is not None)
        elif type_url == types.ENDPOINT:
            self._endpoints_owed.difference_update(r.name for r in updates)
        if known.empty and not removed:  # a first push: one pass, at C speed
            shared = self.config.shared
            known.fill(shared.resources.get(type_url, _NOTHING), shared.serial,
                       {r.name: r for r in updates})
            self._known_sum[type_url] = sum_of(updates)
            return self._sent_delta(type_url, updates, removed)
        total = self._known_sum.get(type_url, 0)
        for resource in updates:
            old = known.get(resource.name)
            if old is not None:
                total -= old.member_hash
            total += resource.member_hash
            known.put(resource.name, resource)
        for name in removed:
            gone = known.pop(name)
            assert gone is not None
            total -= gone.member_hash
        self._known_sum[type_url] = total
        self._settle(type_url, known)
        return self._sent_delta(type_url, updates, removed)

    def _sent_delta(self, type_url: str, updates: list[EncodedResource], removed: list[str]
                    ) -> list[bytes]:
        version = version_of_sum(self._known_sum[type_url])
        body = delta_parts(type_url, version, updates, sorted(removed))
        return [self._sent(type_url, body, version)]
