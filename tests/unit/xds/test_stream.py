"""Rules both ADS variants (SotW and Delta) must follow, driven through an in-memory Envoy."""

from __future__ import annotations

import pytest

from tests.unit.xds.envoy_side import (
    CDS,
    EDS,
    LDS,
    RDS,
    DeltaPeer,
    Peer,
    SotwPeer,
    config,
    message_of,
)
from tests.unit.xds.sample_configs import LISTENER, ROUTES, sample
from tulle.xds.config import ProxyConfig
from tulle.xds.sync import Nack, SyncState

NACK_TEXT = ("Error adding/updating cluster(s) a: name: \"a\"\nconnect_timeout {\n}\n ...: "
             "Proto constraint validation failed (ClusterValidationError.ConnectTimeout)")


@pytest.fixture(params=[SotwPeer, DeltaPeer], ids=["sotw", "delta"])
def peer(request: pytest.FixtureRequest) -> Peer:
    peer_class: type[Peer] = request.param
    return peer_class()


def connect(peer: Peer, proxy_config: ProxyConfig) -> None:
    """What Envoy does at start-up: subscribe to everything its config uses, ACK all."""
    peer.offer(proxy_config)
    peer.subscribe(CDS)
    peer.subscribe(EDS, sorted(proxy_config.of_type(EDS)))
    peer.subscribe(LDS)
    peer.subscribe(RDS, sorted(proxy_config.of_type(RDS)))
    peer.ack_all()
    assert all(peer.state(t) == "SYNCED" for t in (CDS, EDS, LDS, RDS))


def follow(peer: Peer) -> None:
    """ACK everything, and keep EDS subscribed to the clusters held, as Envoy does."""
    peer.ack_all()
    peer.resubscribe(EDS, sorted(peer.held.get(CDS, {})))
    peer.ack_all()


@pytest.mark.parametrize(("type_url", "names", "expected"), [
    (CDS, (), {"a", "b"}),
    (LDS, (), {LISTENER}),
    (EDS, ("a",), {"a"}),
    (EDS, ("a", "b"), {"a", "b"}),
    (RDS, (ROUTES,), {ROUTES}),
])
def test_first_request_is_answered(peer: Peer, type_url: str, names: tuple[str, ...],
                                   expected: set[str]) -> None:
    peer.offer(sample())
    [reply] = peer.subscribe(type_url, names)
    assert reply.type_url == type_url
    assert set(reply.resources) == expected
    assert reply.resources == {n: message_of(r) for n, r in sample().of_type(type_url).items()
                               if n in expected}
    assert peer.state(type_url) == "PENDING"


@pytest.mark.parametrize("type_url", [CDS, LDS])
def test_wildcard_gets_an_empty_answer_when_config_has_none(peer: Peer, type_url: str) -> None:
    peer.offer(config(1))
    [reply] = peer.subscribe(type_url)
    assert (reply.type_url, dict(reply.resources), reply.removed) == (type_url, {}, ())
    assert reply.nonce


def test_request_before_any_config_is_answered_by_the_first_offer(peer: Peer) -> None:
    assert peer.subscribe(CDS) == []
    assert peer.subscribe(EDS, ["a"]) == []
    replies = peer.offer(sample())
    assert [(r.type_url, set(r.resources)) for r in replies] == [(CDS, {"a", "b"}), (EDS, {"a"})]


def test_ack_marks_the_type_synced(peer: Peer) -> None:
    peer.offer(sample(mesh_version=4))
    [reply] = peer.subscribe(CDS)
    peer.ack(reply)
    status = peer.sync(CDS)
    assert status.state is SyncState.SYNCED
    assert status.sent_version == status.acked_version == reply.version
    assert status.acked_mesh_version == 4
    assert status.nack is None


def test_nack_is_recorded_and_the_rejected_config_not_resent(peer: Peer) -> None:
    connect(peer, sample())
    accepted = peer.last[CDS].version
    bad = sample(2, timeouts={"a": 0, "b": 1})
    rejected = peer.offer(bad)[0]
    assert rejected.type_url == CDS

    assert peer.nack(rejected, NACK_TEXT) == []

    assert peer.nacks == [Nack("web-1.default", CDS, rejected.nonce, rejected.version,
                               accepted, NACK_TEXT, peer.nacks[0].at)]
    status = peer.sync(CDS)
    assert status.state is SyncState.NACKED
    assert status.acked_version == accepted
    assert status.nack is not None and status.nack.message == NACK_TEXT
    peer.ack_all()  # the endpoints that followed the cluster
    # The same content again, at a later mesh version: the proxy would only refuse it again.
    assert peer.offer(sample(3, timeouts={"a": 0, "b": 1})) == []
    assert peer.state(CDS) == "NACKED"
    # A fixed config goes out.
    fixed = peer.offer(sample(4, timeouts={"a": 2, "b": 1}))
    assert [r.type_url for r in fixed] == [CDS, EDS]
    peer.ack_all()
    assert peer.state(CDS) == "SYNCED"
    assert len(peer.nacks) == 1


def test_stale_nonce_is_ignored(peer: Peer) -> None:
    peer.offer(sample())
    [first] = peer.subscribe(CDS)
    [second] = peer.offer(sample(2, timeouts={"a": 1, "b": 1, "c": 1}))
    assert first.nonce != second.nonce

    assert peer.ack(first) == []
    assert peer.nack(first, "too late") == []
    status = peer.sync(CDS)
    assert (status.state, status.acked_version, peer.nacks) == (SyncState.PENDING, "", [])

    peer.ack(second)
    assert peer.sync(CDS).acked_version == second.version


def test_push_order_is_clusters_endpoints_listeners_routes(peer: Peer) -> None:
    connect(peer, sample())
    changed = sample(2, timeouts={"a": 2, "b": 1}, ports={"b": (9999,)}, listener_port=15002,
                     routed=["b", "a"])
    assert [r.type_url for r in peer.offer(changed)] == [CDS, EDS, LDS, RDS]


def test_unchanged_config_produces_no_responses(peer: Peer) -> None:
    connect(peer, sample())
    assert peer.offer(sample(2)) == []
    assert peer.stream.synced(2)


def test_a_changed_cluster_is_followed_by_its_unchanged_endpoints(peer: Peer) -> None:
    connect(peer, sample())
    replies = peer.offer(sample(2, timeouts={"a": 5, "b": 1}))
    assert [r.type_url for r in replies] == [CDS, EDS]
    assert set(replies[1].resources) == {"a"}
    assert replies[1].resources["a"] == message_of(sample().of_type(EDS)["a"])


def test_changed_endpoints_alone_go_out_alone(peer: Peer) -> None:
    connect(peer, sample())
    [reply] = peer.offer(sample(2, ports={"b": (9001, 9002)}))
    assert (reply.type_url, set(reply.resources)) == (EDS, {"b"})


@pytest.mark.parametrize("added", [{}, {"c": 1}], ids=["only removal", "removal and addition"])
def test_a_removed_cluster_goes_only_after_listeners_and_routes(peer: Peer,
                                                                added: dict[str, int]) -> None:
    connect(peer, sample())
    replies = peer.offer(sample(2, timeouts={"a": 1, **added}, listener_port=15002))
    if added:  # what points at clusters waits for the new one's endpoints, as Envoy asks
        assert replies[0].type_url == CDS and {LDS, RDS}.isdisjoint(r.type_url for r in replies)
        peer.ack_all()
        replies += peer.resubscribe(EDS, ["a", "b", "c"])
        replies += peer.ack_all()
    types_sent = [r.type_url for r in replies]
    assert types_sent[-1] == CDS
    assert LDS in types_sent and RDS in types_sent
    *before, last = replies
    for reply in before:
        if reply.type_url == CDS:
            assert "b" not in reply.removed
            if peer.protocol == "sotw":
                assert "b" in reply.resources  # still part of the complete set
    if peer.protocol == "sotw":
        assert set(last.resources) == {"a", *added}
    else:
        assert (dict(last.resources), last.removed) == ({}, ("b",))
    assert set(peer.held[CDS]) == {"a", *added}


def test_routes_to_a_new_cluster_wait_until_its_endpoints_are_acked(peer: Peer) -> None:
    connect(peer, sample())
    added = sample(2, timeouts={"a": 1, "b": 1, "c": 1}, listener_port=15002)
    assert [r.type_url for r in peer.offer(added)] == [CDS]
    assert not peer.stream.synced(2)
    # Envoy takes the cluster, asks for its endpoints, and ACKs: nothing goes before the
    # endpoints' ACK, then the listener and routes follow.
    assert peer.ack(peer.last[CDS]) == []
    [endpoints] = peer.resubscribe(EDS, ["a", "b", "c"])
    assert (endpoints.type_url, set(endpoints.resources)) == (EDS, {"c"})
    released = peer.ack(endpoints)
    assert [r.type_url for r in released] == [LDS, RDS]
    assert "c" in str(released[1].resources)
    peer.ack_all()
    assert peer.stream.synced(2)


def test_a_refused_new_cluster_releases_the_routes(peer: Peer) -> None:
    connect(peer, sample())
    [clusters] = peer.offer(sample(2, timeouts={"a": 1, "b": 1, "c": 1}))
    assert [r.type_url for r in peer.nack(clusters, NACK_TEXT)] == [RDS]


def test_routes_stop_waiting_after_the_limit(peer: Peer) -> None:
    connect(peer, sample())
    peer.offer(sample(2, timeouts={"a": 1, "b": 1, "c": 1}))
    deadline = peer.stream.warming_deadline()
    assert deadline is not None
    peer.clock.now = deadline - 2.0  # the clock moves a second per reading
    assert peer.stream.stop_waiting() == []
    peer.clock.now = deadline
    assert [peer.decode(m).type_url for m in peer.stream.stop_waiting()] == [RDS]
    assert peer.stream.warming_deadline() is None


def test_a_changed_cluster_does_not_hold_the_routes(peer: Peer) -> None:
    connect(peer, sample())
    replies = peer.offer(sample(2, timeouts={"a": 3, "b": 1}, routed=["b", "a"]))
    assert [r.type_url for r in replies] == [CDS, EDS, RDS]  # Envoy keeps the old one warm
    assert peer.stream.warming_deadline() is None


CONFIG_SEQUENCE = [
    sample(1),
    sample(2, timeouts={"a": 1, "b": 2}),
    sample(3, timeouts={"a": 1, "b": 2, "c": 1}, ports={"c": (1, 2)}),
    sample(4, timeouts={"c": 1}, ports={"c": (1,)}, listener_port=15009),
    sample(5, timeouts={"c": 1}, ports={"c": (1,)}, listener_port=15009),
    config(6),
    sample(7),
]


def test_the_proxy_converges_to_every_config_of_a_sequence(peer: Peer) -> None:
    connect(peer, CONFIG_SEQUENCE[0])
    for proxy_config in CONFIG_SEQUENCE:
        peer.offer(proxy_config)
        follow(peer)
        for type_url in (CDS, LDS):
            assert peer.held[type_url] == {
                n: message_of(r) for n, r in proxy_config.of_type(type_url).items()}
        for name, resource in proxy_config.of_type(EDS).items():
            assert peer.held[EDS][name] == message_of(resource)
        assert peer.stream.synced(proxy_config.mesh_version)


def test_synced(peer: Peer) -> None:
    assert not peer.stream.synced(0)
    peer.offer(sample(1))
    assert not peer.stream.synced(1), "nothing subscribed yet"
    peer.subscribe(CDS)
    peer.subscribe(EDS, ["a", "b"])
    peer.subscribe(LDS)
    peer.ack_all()
    assert not peer.stream.synced(1), "RDS has resources but no subscription"
    peer.subscribe(RDS, [ROUTES])
    assert not peer.stream.synced(1), "RDS sent, not answered"
    peer.ack_all()
    assert peer.stream.synced(1)
    assert peer.stream.synced(0)
    assert not peer.stream.synced(2), "config older than asked"

    [reply] = peer.offer(sample(2, listener_port=15002))
    assert not peer.stream.synced(2)
    assert not peer.stream.synced(1), "a push is in flight"
    peer.nack(reply, "port in use")
    assert peer.stream.synced(2), "a NACK answers the push: the proxy will not move further"
