"""State of the World specifics: by-name types (EDS, RDS) carry only what is subscribed and
changed; listeners and clusters always travel as the complete set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.xds.envoy_side import CDS, EDS, LDS, RDS, SotwPeer, config
from tests.unit.xds.sample_configs import assignment, cluster, route_table, sample
from tulle.xds.config import ProxyConfig
from tulle.xds.wire import set_version, versions_of


def two_of_each(mesh_version: int, *, a: int = 1, b: int = 1) -> ProxyConfig:
    """Two endpoint sets and two route tables; ``a`` and ``b`` vary their content."""
    table_a = route_table([f"a{i}" for i in range(a)])
    table_b = route_table([f"b{i}" for i in range(b)])
    table_a.name, table_b.name = "a", "b"
    return config(mesh_version, cluster("a"), cluster("b"),
                  assignment("a", [9000 + i for i in range(a)]),
                  assignment("b", [9100 + i for i in range(b)]),
                  table_a, table_b)


@pytest.mark.parametrize("type_url", [EDS, RDS])
def test_by_name_types_carry_only_subscribed_and_changed_names(type_url: str) -> None:
    peer = SotwPeer()
    peer.offer(two_of_each(1))
    [first] = peer.subscribe(type_url, ["a"])
    assert set(first.resources) == {"a"}
    peer.ack(first)

    [both_changed] = peer.offer(two_of_each(2, a=2, b=2))
    assert set(both_changed.resources) == {"a"}, "b is not subscribed"
    peer.ack(both_changed)
    assert peer.offer(two_of_each(3, a=2, b=3)) == [], "only b changed, and b is not subscribed"

    [added] = peer.resubscribe(type_url, ["a", "b"])
    assert set(added.resources) == {"b"}, "a is unchanged since it was sent"
    current = two_of_each(3, a=2, b=3).of_type(type_url)
    # version_info describes everything the proxy now holds of this type, not just this reply.
    assert added.version == set_version(versions_of(current.values()))


def test_a_name_subscribed_again_is_sent_again() -> None:
    peer = SotwPeer()
    peer.offer(sample())
    peer.subscribe(EDS, ["a", "b"])
    peer.ack_all()
    assert peer.resubscribe(EDS, ["a"]) == []
    [again] = peer.resubscribe(EDS, ["a", "b"])
    assert set(again.resources) == {"b"}


def test_the_version_covers_only_the_names_still_subscribed() -> None:
    peer = SotwPeer()
    peer.offer(two_of_each(1))
    peer.subscribe(EDS, ["a", "b"])
    peer.ack_all()
    assert peer.resubscribe(EDS, ["a"]) == []  # b's cluster went away: Envoy drops it
    [changed] = peer.offer(two_of_each(2, a=2))
    current = two_of_each(2, a=2).of_type(EDS)
    assert changed.version == set_version(versions_of([current["a"]]))


@pytest.mark.parametrize(("type_url", "change"), [
    (CDS, lambda: sample(2, timeouts={"a": 3, "b": 1})),
    (LDS, lambda: sample(2, listener_port=15002)),
])
def test_wildcard_types_always_send_the_complete_set(type_url: str,
                                                     change: Callable[[], ProxyConfig]) -> None:
    peer = SotwPeer()
    peer.offer(sample())
    [first] = peer.subscribe(type_url)
    peer.ack(first)
    [reply] = [r for r in peer.offer(change()) if r.type_url == type_url]
    assert set(reply.resources) == set(change().of_type(type_url))
    assert reply.version != first.version


def test_version_info_is_the_set_version_and_returns_with_the_content() -> None:
    peer = SotwPeer()
    peer.offer(sample())
    [first] = peer.subscribe(CDS)
    peer.ack(first)
    [changed] = peer.offer(sample(2, timeouts={"a": 3, "b": 1}))
    peer.ack(changed)
    [back] = peer.offer(sample(3))
    assert first.version != changed.version
    assert back.version == first.version


def test_removed_cluster_is_kept_in_the_first_cds_response() -> None:
    peer = SotwPeer()
    peer.offer(sample())
    for type_url, names in ((CDS, ()), (EDS, ("a", "b")), (LDS, ()), (RDS, ("outbound|default",))):
        peer.subscribe(type_url, names)
    peer.ack_all()
    replies = peer.offer(sample(2, timeouts={"a": 1, "c": 1}))
    peer.ack_all()
    replies += peer.resubscribe(EDS, ["a", "c"])  # Envoy asks for the new cluster's endpoints
    replies += peer.ack_all()
    summary: list[tuple[str, Any]] = [(r.short, sorted(r.resources)) for r in replies]
    assert summary == [
        ("CDS", ["a", "b", "c"]),  # c added, b still there
        ("EDS", ["c"]),  # c's endpoints: c is warm once they are ACKed
        ("RDS", ["outbound|default"]),  # routes stop naming b, start naming c
        ("CDS", ["a", "c"]),  # only now is b gone
    ]
    assert replies[0].version != replies[3].version


def test_nack_keeps_the_version_envoy_reports() -> None:
    peer = SotwPeer()
    peer.offer(sample())
    [first] = peer.subscribe(CDS)
    peer.ack(first)
    [rejected] = peer.offer(sample(2, timeouts={"a": 0, "b": 1}))
    peer.nack(rejected, "invalid connect_timeout")
    [nack] = peer.nacks
    assert (nack.rejected_version, nack.kept_version) == (rejected.version, first.version)


def test_a_request_with_a_stale_nonce_changes_nothing() -> None:
    # xDS: no response to a request whose nonce is stale; the proxy will send another one
    # after it sees the newer response.
    peer = SotwPeer()
    peer.offer(sample())
    [stale] = peer.subscribe(EDS, ["a"])
    [newer] = peer.offer(sample(2, ports={"a": (1,)}))
    assert peer.request(EDS, nonce=stale.nonce, names=["a", "b"]) == []
    [added] = peer.request(EDS, nonce=newer.nonce, names=["a", "b"])
    assert set(added.resources) == {"b"}
