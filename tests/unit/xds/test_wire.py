"""wire.py: hand-assembled protobuf bytes must be exactly what the official parsers expect."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import duration_pb2

from tests.unit.xds.envoy_side import CDS, EDS, LDS, unpack
from tulle.xds import wire


def cluster(name: str, timeout_s: int = 1) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(name=name, connect_timeout=duration_pb2.Duration(seconds=timeout_s))


# Names long enough to need multi-byte length varints (128 bytes and more).
MESSAGES: list[tuple[str, str, Any]] = [
    (CDS, "outbound|books.default", cluster("outbound|books.default")),
    (CDS, "c" * 200, cluster("c" * 200)),
    (EDS, "outbound|books.default",
     endpoint_pb2.ClusterLoadAssignment(cluster_name="outbound|books.default")),
    (LDS, "", listener_pb2.Listener()),  # an empty message serializes to no bytes at all
]


@pytest.mark.parametrize(("number", "payload"), [
    (1, b""), (1, b"x"), (1, b"x" * 127), (1, b"x" * 128), (1, b"x" * 20_000),
    (28, b"stat"),  # Cluster.alt_stat_name: a tag that needs two bytes
])
def test_field_matches_protobuf_encoding(number: int, payload: bytes) -> None:
    by_number = {f.number: f.name for f in cluster_pb2.Cluster.DESCRIPTOR.fields}
    expected = cluster_pb2.Cluster(**{by_number[number]: payload.decode()})
    assert cluster_pb2.Cluster.FromString(wire.field(number, payload)) == expected
    if payload:  # proto3 leaves empty strings out; an explicit empty field parses the same
        assert wire.field(number, payload) == expected.SerializeToString()


@pytest.mark.parametrize(("type_url", "name", "message"), MESSAGES)
def test_encode_round_trips_through_both_response_kinds(type_url: str, name: str,
                                                        message: Any) -> None:
    encoded = wire.encode(type_url, name, message)
    assert (encoded.type_url, encoded.name) == (type_url, name)

    sotw = discovery_pb2.DiscoveryResponse.FromString(encoded.sotw_entry)
    assert [r.type_url for r in sotw.resources] == [type_url]
    assert unpack(sotw.resources[0]) == message

    delta = discovery_pb2.DeltaDiscoveryResponse.FromString(encoded.delta_entry)
    [resource] = delta.resources
    assert (resource.name, resource.version) == (name, encoded.version)
    assert resource.resource.type_url == type_url
    assert unpack(resource.resource) == message


def test_resource_version_follows_content_only() -> None:
    first = wire.encode(CDS, "a", cluster("a", timeout_s=1))
    assert wire.encode(CDS, "a", cluster("a", timeout_s=1)).version == first.version
    assert wire.encode(CDS, "a", cluster("a", timeout_s=2)).version != first.version


@pytest.mark.parametrize("count", [0, 1, 3])
@pytest.mark.parametrize("nonce", ["1", "1234567890"])
def test_sotw_body_with_nonce(count: int, nonce: str) -> None:
    messages = [cluster(f"c{i}", timeout_s=i + 1) for i in range(count)]
    encoded = [wire.encode(CDS, m.name, m) for m in messages]
    data = wire.joined_with_nonce(wire.sotw_parts(CDS, "v7", encoded), nonce)
    assert data == wire.with_nonce(wire.sotw_body(CDS, "v7", encoded), nonce)

    response = discovery_pb2.DiscoveryResponse.FromString(data)
    assert response.version_info == "v7"
    assert response.type_url == CDS
    assert response.nonce == nonce
    assert [unpack(r) for r in response.resources] == messages


@pytest.mark.parametrize(("count", "removed"), [
    (0, []), (2, []), (0, ["gone"]), (2, ["gone-1", "gone-2"]), (1, ["r" * 300]),
])
def test_delta_body_with_nonce(count: int, removed: list[str]) -> None:
    messages = [cluster(f"c{i}", timeout_s=i + 1) for i in range(count)]
    encoded = [wire.encode(CDS, m.name, m) for m in messages]
    data = wire.joined_with_nonce(wire.delta_parts(CDS, "sys-3", encoded, removed), "42")

    response = discovery_pb2.DeltaDiscoveryResponse.FromString(data)
    assert response.system_version_info == "sys-3"
    assert response.type_url == CDS
    assert response.nonce == "42"
    assert list(response.removed_resources) == removed
    assert [(r.name, r.version) for r in response.resources] == [
        (e.name, e.version) for e in encoded]
    assert [unpack(r.resource) for r in response.resources] == messages


def test_body_is_shared_and_only_the_nonce_differs() -> None:
    body = wire.sotw_body(CDS, "v1", [wire.encode(CDS, "a", cluster("a"))])
    first = discovery_pb2.DiscoveryResponse.FromString(wire.with_nonce(body, "1"))
    second = discovery_pb2.DiscoveryResponse.FromString(wire.with_nonce(body, "2"))
    assert first.nonce != second.nonce
    first.nonce = second.nonce
    assert first == second


BASE = [("a", "1"), ("b", "2"), ("c", "3")]


@pytest.mark.parametrize(("case", "other", "same"), [
    ("reordered", [("c", "3"), ("a", "1"), ("b", "2")], True),
    ("member version changed", [("a", "1"), ("b", "9"), ("c", "3")], False),
    ("member added", [*BASE, ("d", "4")], False),
    ("member removed", BASE[:2], False),
    ("member renamed", [("a", "1"), ("b", "2"), ("x", "3")], False),
    ("versions swapped between names", [("a", "2"), ("b", "1"), ("c", "3")], False),
    ("boundary between name and version moved", [("a", "1"), ("b", "2"), ("c3", "")], False),
    ("emptied", [], False),
])
def test_set_version(case: str, other: list[tuple[str, str]], same: bool) -> None:
    assert (wire.set_version(BASE) == wire.set_version(other)) is same, case


def test_set_version_of_encoded_resources() -> None:
    a, b = wire.encode(CDS, "a", cluster("a")), wire.encode(CDS, "b", cluster("b"))
    assert wire.versions_of([a, b]) == [("a", a.version), ("b", b.version)]
    assert wire.set_version(wire.versions_of([a, b])) == wire.set_version(
        wire.versions_of([b, a]))
