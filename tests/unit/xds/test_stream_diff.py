"""Diff once, share by reference: a stream in step applies only the shared part's diff, and that
gives exactly what comparing everything gives.

For random sequences of snapshots (hypothesis), two proxies of each protocol take the same
steps: one through the stream as it is, one through a stream that always compares every name.
Their replies (types, versions, nonces, resources, removals) must be identical, with
subscriptions changing, snapshots skipped and NACKs along the way. A proxy that skips snapshots,
or reconnects, ends up holding exactly what its config intends, at the config's own set
versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.xds.envoy_side import (
    CDS,
    EDS,
    LDS,
    RDS,
    SDS,
    DeltaPeer,
    FakeClock,
    Peer,
    SotwPeer,
)
from tulle.xds import types
from tulle.xds.config import ProxyConfig, SharedConfig
from tulle.xds.stream import DeltaStream, SotwStream, XdsStream
from tulle.xds.wire import EncodedResource, encode

# Which names each part may hold: the shared part and the proxy's own never share a name.
SHARED_NAMES = {CDS: ("a", "b", "c", "d"), EDS: ("a", "b", "c", "d", "e"),
                RDS: ("table",), SDS: ("bundle",), LDS: ()}
OWN_NAMES = {CDS: ("inbound",), EDS: (), RDS: ("up-a", "up-b"), SDS: ("cert",),
             LDS: ("outbound", "inbound", "up-a")}
BY_NAME = (EDS, RDS, SDS)  # subscribed by name; CDS and LDS are wildcards


def _message(type_url: str, name: str, variant: int) -> Any:
    tag = f"v{variant}"
    if type_url == CDS:
        return cluster_pb2.Cluster(name=name, alt_stat_name=tag)
    if type_url == EDS:
        return endpoint_pb2.ClusterLoadAssignment(cluster_name=name, endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(priority=variant)])
    if type_url == LDS:
        return listener_pb2.Listener(name=name, stat_prefix=tag)
    if type_url == RDS:
        return route_pb2.RouteConfiguration(name=name, virtual_hosts=[
            route_components_pb2.VirtualHost(name=tag, domains=["*"])])
    return secret_pb2.Secret(name=name, generic_secret=secret_pb2.GenericSecret(
        secret=base_pb2.DataSource(inline_string=tag)))


_ENCODED: dict[tuple[str, str, int], EncodedResource] = {}


def resource(type_url: str, name: str, variant: int, fresh: bool) -> EncodedResource:
    """Encoded once and shared, as the compiler's memo does; ``fresh``: a new object of the
    same content (a memo miss), which the diff must not count as a change."""
    key = (type_url, name, variant)
    if fresh or key not in _ENCODED:
        _ENCODED[key] = encode(type_url, name, _message(type_url, name, variant))
    return _ENCODED[key]


Part = Mapping[str, Mapping[str, int]]  # type -> name -> variant


@dataclass(frozen=True)
class Snapshot:
    shared: Part
    own: Part
    fresh: bool


def parts(names: Mapping[str, tuple[str, ...]]) -> st.SearchStrategy[Part]:
    return st.fixed_dictionaries({
        t: st.dictionaries(st.sampled_from(n), st.integers(0, 2)) if n else st.just({})
        for t, n in names.items()})


snapshots = st.builds(Snapshot, parts(SHARED_NAMES), parts(OWN_NAMES), st.booleans())


class Chain:
    """Snapshots as the compiler makes them: each shared part diffed against the previous."""

    def __init__(self) -> None:
        self.previous: SharedConfig | None = None
        self.version = 0

    def config(self, snapshot: Snapshot) -> ProxyConfig:
        self.version += 1
        shared = SharedConfig.of(self.version, {
            t: [resource(t, n, v, snapshot.fresh) for n, v in items.items()]
            for t, items in snapshot.shared.items() if SHARED_NAMES[t]}, self.previous)
        self.previous = shared
        return ProxyConfig.build(self.version, {
            t: [resource(t, n, v, snapshot.fresh) for n, v in items.items()]
            for t, items in snapshot.own.items()}, shared)


class FullSotwStream(SotwStream):
    def _changes(self, config: ProxyConfig) -> None:
        return None


class FullDeltaStream(DeltaStream):
    def _changes(self, config: ProxyConfig) -> None:
        return None


class FullSotwPeer(SotwPeer):
    def _make_stream(self) -> XdsStream:
        return FullSotwStream("web-1.default", self.nacks.append, clock=FakeClock())


class FullDeltaPeer(DeltaPeer):
    def _make_stream(self) -> XdsStream:
        return FullDeltaStream("web-1.default", self.nacks.append, clock=FakeClock())


ALL_NAMES = {t: SHARED_NAMES[t] + OWN_NAMES[t] for t in SHARED_NAMES}
subsets = {t: st.lists(st.sampled_from(ALL_NAMES[t]), unique=True) for t in BY_NAME}

# One step: offer the next snapshot (or skip some first), ACK everything, change a by-name
# subscription, or NACK the latest reply of a type.
steps = st.one_of(
    st.tuples(st.just("offer"), snapshots, st.integers(0, 2)),
    st.tuples(st.just("ack")),
    st.tuples(st.just("resubscribe"), st.sampled_from(BY_NAME),
              st.lists(st.sampled_from(ALL_NAMES[EDS] + ALL_NAMES[RDS] + ALL_NAMES[SDS]),
                       unique=True)),
    st.tuples(st.just("nack"), st.sampled_from(types.PUSH_ORDER)),
)


def start(peer: Peer, config: ProxyConfig, initial: Mapping[str, Any]) -> list[Any]:
    """Envoy's start-up: every wildcard, then by name what it picked."""
    replies = peer.offer(config)
    replies += peer.subscribe(CDS)
    replies += peer.subscribe(LDS)
    for type_url in BY_NAME:
        replies += peer.subscribe(type_url, initial[type_url])
    return replies


def step(peer: Peer, chain_configs: list[ProxyConfig], action: tuple[Any, ...]) -> list[Any]:
    kind = action[0]
    if kind == "offer":
        return peer.offer(chain_configs[-1])
    if kind == "ack":
        return peer.ack_all()
    if kind == "resubscribe":
        _, type_url, names = action
        return peer.resubscribe(type_url, [n for n in names if n in ALL_NAMES[type_url]])
    last = peer.last.get(action[1])
    if last is None or last.nonce in peer.answered:
        return []
    return peer.nack(last, "rejected")


def intended(peer: Peer, config: ProxyConfig, type_url: str) -> set[tuple[str, str]]:
    """(name, version) of what the proxy should hold of a type, given its subscription."""
    subscribed = peer.stream._subs.get(type_url)
    return {(n, r.version) for n, r in config.of_type(type_url).items()
            if subscribed is None or n in subscribed}


def held(peer: Peer, type_url: str) -> set[tuple[str, str]]:
    return {(n, encode(type_url, n, m).version)
            for n, m in peer.held.get(type_url, {}).items()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=snapshots, initial=st.fixed_dictionaries(subsets), actions=st.lists(steps,
                                                                                max_size=25))
def test_applying_the_diff_gives_what_a_full_comparison_gives(
        first: Snapshot, initial: dict[str, list[str]], actions: list[tuple[Any, ...]]) -> None:
    for fast, full in ((SotwPeer(), FullSotwPeer()), (DeltaPeer(), FullDeltaPeer())):
        chain = Chain()
        configs = [chain.config(first)]
        assert start(fast, configs[0], initial) == start(full, configs[0], initial)
        for action in actions:
            if action[0] == "offer":
                for _ in range(action[2]):  # snapshots neither proxy sees
                    configs.append(chain.config(action[1]))
                configs.append(chain.config(action[1]))
            assert step(fast, configs, action) == step(full, configs, action), action
        assert fast.held == full.held


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=snapshots, initial=st.fixed_dictionaries(subsets), actions=st.lists(steps,
                                                                                max_size=20),
       last=snapshots, reconnect=st.booleans())
def test_a_proxy_that_skips_snapshots_or_reconnects_converges(
        first: Snapshot, initial: dict[str, list[str]], actions: list[tuple[Any, ...]],
        last: Snapshot, reconnect: bool) -> None:
    for make in (SotwPeer, DeltaPeer):
        peer = make()
        chain = Chain()
        configs = [chain.config(first)]
        start(peer, configs[0], initial)
        for action in actions:
            if action[0] == "offer":
                configs.extend(chain.config(action[1]) for _ in range(action[2] + 1))
            step(peer, configs, action)
        final = chain.config(last)
        if reconnect:
            # A new stream; a Delta proxy tells what it holds, a SotW one starts afresh.
            old = peer
            peer = make()
            peer.held = {t: dict(items) for t, items in old.held.items()}  # Envoy keeps it
            if isinstance(peer, DeltaPeer):
                peer.offer(final)
                peer.subscribe(CDS, initial=dict(held(old, CDS)))
                peer.subscribe(LDS, initial=dict(held(old, LDS)))
                for type_url in BY_NAME:
                    names = sorted(old.names.get(type_url, set()))
                    mine = {n: v for n, v in held(old, type_url) if n in names}
                    peer.subscribe(type_url, names, initial=mine)
            else:
                start(peer, final, {t: old.names.get(t, []) for t in BY_NAME})
        else:
            peer.offer(final)
        peer.ack_all()
        if peer.stream.warming_deadline() is not None:
            # Envoy asks for the endpoints of the clusters it took new (the stream holds the
            # routes until it has them), whatever this run subscribed to by hand.
            asked = set(peer.stream._subs.get(EDS) or ()) | set(peer.held.get(CDS, {}))
            peer.resubscribe(EDS, sorted(asked))
            peer.ack_all()
        for type_url in types.PUSH_ORDER:
            holds = held(peer, type_url)
            wanted = intended(peer, final, type_url)
            if isinstance(peer, SotwPeer) and type_url in BY_NAME:
                # SotW by name: what left the config or the subscription is not named as
                # removed (Envoy drops what it unsubscribed from by itself).
                names = {n for n, _ in wanted}
                holds = {(n, v) for n, v in holds if n in names}
            assert holds == wanted, type_url
        for type_url in (CDS, LDS):  # wildcards: the version sent is the intended view's
            assert peer.last[type_url].version == final.versions[type_url]


class Counting(ProxyConfig):
    """Records every name the stream looks up, and every whole type it reads."""

    lookups: ClassVar[list[tuple[str, str]]] = []
    whole: ClassVar[list[str]] = []

    def get(self, type_url: str, name: str) -> EncodedResource | None:
        Counting.lookups.append((type_url, name))
        return super().get(type_url, name)

    def of_type(self, type_url: str) -> Mapping[str, EncodedResource]:
        Counting.whole.append(type_url)
        return super().of_type(type_url)


def big(version: int, previous: SharedConfig | None, endpoint_variant: int) -> Counting:
    """1,000 clusters and endpoint sets shared, one listener of its own."""
    names = [f"svc-{i}" for i in range(1000)]
    shared = SharedConfig.of(version, {
        CDS: [resource(CDS, n, 0, False) for n in names],
        EDS: [resource(EDS, n, endpoint_variant if n == "svc-7" else 0, False)
              for n in names],
        RDS: [resource(RDS, "table", 0, False)]}, previous)
    own = ProxyConfig.build(version, {LDS: [resource(LDS, "outbound", 0, False)]}, shared)
    return Counting(own.mesh_version, own.shared, own.own)


def test_a_stream_in_step_looks_only_at_what_changed() -> None:
    for peer in (SotwPeer(), DeltaPeer()):
        first = big(1, None, 0)
        start(peer, first, {EDS: sorted(first.of_type(CDS)), RDS: ["table"], SDS: []})
        peer.ack_all()
        # The first offer after subscribing compares everything; from then on, the diff.
        second = big(2, first.shared, 0)
        assert peer.offer(second) == []
        Counting.lookups.clear()
        Counting.whole.clear()
        [reply] = peer.offer(big(3, second.shared, 1))  # one endpoint set changed
        assert (reply.type_url, set(reply.resources)) == (EDS, {"svc-7"})
        assert Counting.whole == []
        assert len(Counting.lookups) <= 3, Counting.lookups  # svc-7, and its own listener
