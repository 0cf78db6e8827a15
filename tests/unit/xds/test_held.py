"""What a stream remembers of its proxy: ``Held`` behaves exactly as a plain dict would, whatever
shared maps it is measured against, and keeps only the proxy's differences from them; the name
pool shares equal subscriptions."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.xds.envoy_side import CDS, EDS, RDS, SDS, DeltaPeer, SotwPeer
from tests.unit.xds.test_stream_diff import Chain, Snapshot, start
from tulle.xds.held import Held, NamePool, stub
from tulle.xds.wire import EncodedResource, encode

NAMES = ("a", "b", "c", "d", "e")


def _resource(name: str, variant: int) -> EncodedResource:
    return encode(CDS, name, cluster_pb2.Cluster(name=name, alt_stat_name=f"v{variant}"))


maps = st.dictionaries(st.sampled_from(NAMES), st.integers(0, 2))
ops = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(NAMES), st.integers(0, 2)),
    st.tuples(st.just("pop"), st.sampled_from(NAMES)),
    st.tuples(st.just("replace"), maps),
    st.tuples(st.just("rebase"), maps, st.booleans()),  # True: with the diff's names only
    st.tuples(st.just("fill"), maps, maps),  # a new shared map, and exactly what is held
)


@settings(max_examples=300, deadline=None)
@given(actions=st.lists(ops, max_size=30))
def test_held_is_a_dict_whatever_it_is_measured_against(actions: list[tuple[Any, ...]]) -> None:
    held, model = Held(), {}
    base: dict[str, EncodedResource] = {}
    for serial, action in enumerate(actions):
        if action[0] == "put":
            resource = _resource(action[1], action[2])
            held.put(action[1], resource)
            model[action[1]] = resource
        elif action[0] == "pop":
            assert held.pop(action[1]) == model.pop(action[1], None)
        elif action[0] == "replace":
            wanted = {n: _resource(n, v) for n, v in action[1].items()}
            held.replace(wanted)
            model = dict(wanted)
        elif action[0] == "fill":
            base = {n: _resource(n, v) for n, v in action[1].items()}
            wanted = {n: _resource(n, v) for n, v in action[2].items()}
            held.fill(MappingProxyType(base), serial, wanted)
            model = dict(wanted)
        else:
            new = {n: _resource(n, v) for n, v in action[1].items()}
            # The diff of two shared maps: what was added, changed or removed.
            names = ({n for n in new.keys() | base.keys()
                      if (new.get(n) or stub(CDS, n, "")).version
                      != (base.get(n) or stub(CDS, n, "")).version} if action[2] else None)
            held.rebase(MappingProxyType(new), serial, names)
            base = new
        assert dict(held.items()) == model
        assert len(held) == len(model)
        assert all((n in held) == (n in model) for n in NAMES)


def test_a_proxy_holding_the_shared_part_costs_only_its_own_names() -> None:
    held = Held()
    shared = {n: _resource(n, 0) for n in NAMES}
    held.replace({**shared, "own": _resource("own", 0)})  # a first push, before any base
    held.rebase(MappingProxyType(shared), 1, None)
    assert held.differences == 1
    changed = {**shared, "b": _resource("b", 1)}
    held.rebase(MappingProxyType(changed), 2, {"b"})  # the proxy still holds b at v0
    assert held.differences == 2 and held.get("b") == shared["b"]
    held.put("b", changed["b"])  # pushed
    assert held.differences == 1


def test_a_first_push_measured_at_once_keeps_only_the_proxys_own() -> None:
    held = Held()
    assert held.empty
    shared = {n: _resource(n, 0) for n in NAMES}
    held.fill(MappingProxyType(shared), 1, {**shared, "own": _resource("own", 0)})
    assert not held.empty and held.differences == 1 and not held.loose()
    assert dict(held.items()) == {**shared, "own": _resource("own", 0)}


def test_streams_in_step_keep_only_the_proxys_own_resources() -> None:
    """Two proxies of each protocol through a few snapshots: what each stream keeps apart from
    the shared part is the proxy's own resources (a listener, its inbound cluster, ...)."""
    shared = {CDS: {"a": 0, "b": 0, "c": 0, "d": 0}, EDS: {"a": 0, "b": 0, "c": 0, "d": 0},
              RDS: {"table": 0}, SDS: {"bundle": 0}}
    own = {CDS: {"inbound": 0}, RDS: {"up-a": 0}, SDS: {"cert": 0}}
    for peer in (SotwPeer(), DeltaPeer()):
        chain = Chain()
        initial = {EDS: list(shared[EDS]), RDS: ["table", "up-a"], SDS: ["bundle", "cert"]}
        start(peer, chain.config(Snapshot(shared, own, False)), initial)
        peer.ack_all()
        for variant in (1, 2):
            peer.offer(chain.config(Snapshot({**shared, EDS: {**shared[EDS], "b": variant}},
                                             own, False)))
            peer.ack_all()
        stream: Any = peer.stream
        kept = stream._has if isinstance(peer, SotwPeer) else stream._known
        assert {t: h.differences for t, h in kept.items() if h.differences} == {
            CDS: 1, RDS: 1, SDS: 1}, peer


def test_equal_subscriptions_are_one_object_of_interned_names() -> None:
    pool = NamePool()
    first = pool.names("".join(["clu", f"ster-{i}"]) for i in range(100))
    second = pool.names("".join(["clus", f"ter-{i}"]) for i in reversed(range(100)))
    assert first is second
    other = pool.names(["cluster-1"])
    assert other is not first and next(iter(other)) is next(n for n in first if n == "cluster-1")
    assert pool.names([]) == frozenset()
