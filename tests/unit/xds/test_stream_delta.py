"""Delta specifics: reconnects that start from what the proxy already holds, and by-name
subscriptions that change one name at a time."""

from __future__ import annotations

import pytest

from tests.unit.xds.envoy_side import CDS, EDS, LDS, DeltaPeer, Reply
from tests.unit.xds.sample_configs import LISTENER, sample
from tulle.xds.config import ProxyConfig
from tulle.xds.wire import set_version

CURRENT = "<current>"  # stands for the version of the resource in the config offered


def held_versions(proxy_config: ProxyConfig, type_url: str,
                  initial: dict[str, str]) -> dict[str, str]:
    current = proxy_config.of_type(type_url)
    return {n: current[n].version if v == CURRENT else v for n, v in initial.items()}


@pytest.mark.parametrize(("type_url", "names", "initial", "sent", "removed"), [
    (CDS, (), {"a": CURRENT, "b": CURRENT}, set(), ()),
    (CDS, (), {}, {"a", "b"}, ()),
    (CDS, (), {"a": CURRENT, "b": "old"}, {"b"}, ()),
    (CDS, (), {"a": CURRENT, "b": CURRENT, "gone": "x"}, set(), ("gone",)),
    (CDS, (), {"a": "old", "gone": "x"}, {"a", "b"}, ("gone",)),
    (LDS, (), {LISTENER: CURRENT}, set(), ()),
    (LDS, (), {LISTENER: "old", "upstream|9000": "x"}, {LISTENER}, ("upstream|9000",)),
    (EDS, ("a", "b"), {"a": CURRENT, "b": CURRENT}, set(), ()),
    (EDS, ("a", "b"), {"a": CURRENT}, {"b"}, ()),
    (EDS, ("a", "b", "gone"), {"a": CURRENT, "b": "old", "gone": "x"}, {"b"}, ("gone",)),
], ids=["cds up to date", "cds fresh", "cds one stale", "cds one gone", "cds stale and gone",
        "lds up to date", "lds stale and gone", "eds up to date", "eds one missing",
        "eds stale and gone"])
def test_reconnect_starts_from_initial_resource_versions(
        type_url: str, names: tuple[str, ...], initial: dict[str, str], sent: set[str],
        removed: tuple[str, ...]) -> None:
    proxy_config = sample()
    peer = DeltaPeer()
    peer.offer(proxy_config)
    replies = peer.subscribe(type_url, names, held_versions(proxy_config, type_url, initial))
    # Every type answers its first subscription, even when empty: wildcard types because
    # Envoy's start-up waits for that answer, and all of them so that the proxy's ACK shows
    # the type as SYNCED after a reconnect, not NOT SENT.
    [reply] = replies
    assert set(reply.resources) == sent
    assert reply.removed == removed
    assert reply.resource_versions == {n: proxy_config.of_type(type_url)[n].version
                                       for n in sent}


def reconnect(old: ProxyConfig, new: ProxyConfig) -> tuple[DeltaPeer, list[Reply]]:
    """A proxy that held ``old`` reconnects to a control plane that now serves ``new``."""
    peer = DeltaPeer()
    peer.offer(new)
    replies = peer.subscribe(CDS, (), {n: r.version for n, r in old.of_type(CDS).items()})
    replies += peer.subscribe(EDS, sorted(old.of_type(EDS)),
                              {n: r.version for n, r in old.of_type(EDS).items()})
    return peer, replies


def test_reconnect_sends_the_endpoints_of_a_cluster_changed_meanwhile() -> None:
    # Envoy keeps a changed EDS cluster warming until a new assignment arrives.
    _, replies = reconnect(sample(1), sample(2, timeouts={"a": 7, "b": 1}))
    assert [(r.type_url, set(r.resources)) for r in replies] == [(CDS, {"a"}), (EDS, {"a"})]


def test_reconnect_nack_keeps_the_version_the_proxy_came_with() -> None:
    old_peer = DeltaPeer()
    old_peer.offer(sample(1))
    [accepted] = old_peer.subscribe(CDS)
    peer, replies = reconnect(sample(1), sample(2, timeouts={"a": 0, "b": 1}))
    peer.nack(replies[0], "invalid connect_timeout")
    [nack] = peer.nacks
    assert nack.rejected_version == replies[0].version
    assert nack.kept_version == accepted.version
    assert nack.kept_version == set_version(
        (n, r.version) for n, r in sample(1).of_type(CDS).items())


def test_subscribe_and_unsubscribe_by_name() -> None:
    peer = DeltaPeer()
    peer.offer(sample())
    [first] = peer.subscribe(EDS, ["a"])
    assert set(first.resources) == {"a"}
    peer.ack(first)

    [added] = peer.resubscribe(EDS, ["a", "b"])
    assert (set(added.resources), added.removed) == ({"b"}, ())
    peer.ack(added)

    assert peer.resubscribe(EDS, ["b"]) == [], "unsubscribing needs no answer"
    assert peer.offer(sample(2, ports={"a": (1,)})) == [], "a is no longer subscribed"
    [b_changed] = peer.offer(sample(3, ports={"a": (1,), "b": (2,)}))
    assert set(b_changed.resources) == {"b"}
    peer.ack(b_changed)

    [again] = peer.resubscribe(EDS, ["a", "b"])
    assert set(again.resources) == {"a"}, "the proxy dropped a when it unsubscribed"


def test_subscribing_to_a_missing_name_waits_for_it() -> None:
    peer = DeltaPeer()
    peer.offer(sample())
    peer.subscribe(EDS, ["a"])
    peer.ack_all()
    assert peer.resubscribe(EDS, ["a", "c"]) == []
    [reply] = peer.offer(sample(2, timeouts={"a": 1, "b": 1, "c": 1}))
    assert (reply.type_url, set(reply.resources)) == (EDS, {"c"})


def test_only_changes_travel() -> None:
    peer = DeltaPeer()
    peer.offer(sample())
    peer.subscribe(CDS)
    peer.ack_all()
    [reply] = peer.offer(sample(2, timeouts={"a": 1, "b": 4}))
    assert (set(reply.resources), reply.removed) == ({"b"}, ())


def test_removed_cluster_goes_in_the_last_response() -> None:
    peer = DeltaPeer()
    peer.offer(sample())
    peer.subscribe(CDS)
    peer.subscribe(LDS)
    peer.ack_all()
    replies = peer.offer(sample(2, timeouts={"a": 1, "c": 1}, listener_port=15002))
    peer.ack_all()
    replies += peer.subscribe(EDS, ["c"])  # Envoy asks for the new cluster's endpoints
    replies += peer.ack_all()
    summary = [(r.short, sorted(r.resources), r.removed) for r in replies]
    assert summary == [("CDS", ["c"], ()), ("EDS", ["c"], ()), ("LDS", [LISTENER], ()),
                       ("CDS", [], ("b",))]
