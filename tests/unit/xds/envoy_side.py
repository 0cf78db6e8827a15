"""The Envoy side of an ADS stream, in memory: builds requests, decodes the pre-serialized
responses with the official xds-protos parsers, and applies them the way Envoy does, so tests
can assert on what the proxy ends up holding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2, scoped_route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2  # type: ignore[import-untyped]

from tulle.xds import types
from tulle.xds.config import ProxyConfig
from tulle.xds.stream import DeltaStream, SotwStream, XdsStream
from tulle.xds.sync import Nack, TypeSync, view_of
from tulle.xds.wire import EncodedResource, encode

CDS, EDS, LDS, RDS, SDS = (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE,
                          types.SECRET)
SRDS = types.SCOPED_ROUTE

MESSAGE_OF: dict[str, Any] = {
    CDS: cluster_pb2.Cluster,
    EDS: endpoint_pb2.ClusterLoadAssignment,
    LDS: listener_pb2.Listener,
    RDS: route_pb2.RouteConfiguration,
    SRDS: scoped_route_pb2.ScopedRouteConfiguration,
    SDS: secret_pb2.Secret,
}
TYPE_OF: dict[Any, str] = {message: type_url for type_url, message in MESSAGE_OF.items()}


def name_of(message: Any) -> str:
    return str(message.cluster_name if isinstance(message, endpoint_pb2.ClusterLoadAssignment)
               else message.name)


def unpack(any_message: Any) -> Any:
    message = MESSAGE_OF[any_message.type_url]()
    assert any_message.Unpack(message), any_message.type_url
    return message


def message_of(resource: EncodedResource) -> Any:
    """The message an encoded resource holds, read back through the official parser."""
    [any_message] = discovery_pb2.DiscoveryResponse.FromString(resource.sotw_entry).resources
    return unpack(any_message)


def config(mesh_version: int, *messages: Any) -> ProxyConfig:
    """A proxy config holding ``messages``; every type is present, possibly empty."""
    by_type: dict[str, list[Any]] = {t: [] for t in types.PUSH_ORDER}
    for message in messages:
        type_url = TYPE_OF[type(message)]
        by_type[type_url].append(encode(type_url, name_of(message), message))
    return ProxyConfig.build(mesh_version, by_type)


@dataclass(frozen=True)
class Reply:
    """One decoded DiscoveryResponse or DeltaDiscoveryResponse."""

    type_url: str
    version: str
    nonce: str
    resources: Mapping[str, Any]  # name -> unpacked message, in response order
    resource_versions: Mapping[str, str] = field(default_factory=dict)  # Delta only
    removed: tuple[str, ...] = ()

    @property
    def short(self) -> str:
        return types.short_name(self.type_url)


def decode_sotw(data: bytes) -> Reply:
    response = discovery_pb2.DiscoveryResponse.FromString(data)
    resources = {}
    for any_message in response.resources:
        assert any_message.type_url == response.type_url
        message = unpack(any_message)
        resources[name_of(message)] = message
    return Reply(response.type_url, response.version_info, response.nonce, resources)


def decode_delta(data: bytes) -> Reply:
    response = discovery_pb2.DeltaDiscoveryResponse.FromString(data)
    resources, versions = {}, {}
    for resource in response.resources:
        message = unpack(resource.resource)
        assert resource.name == name_of(message)
        resources[resource.name] = message
        versions[resource.name] = resource.version
    return Reply(response.type_url, response.system_version_info, response.nonce, resources,
                 versions, tuple(response.removed_resources))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


class Peer:
    """One proxy's view of its stream. ``held`` is what Envoy would hold, per type, had it
    accepted every reply (NACKs are not modelled there)."""

    protocol = "base"

    def __init__(self) -> None:
        self.nacks: list[Nack] = []
        self.clock = FakeClock()
        self.stream: XdsStream = self._make_stream()
        self.held: dict[str, dict[str, Any]] = {}
        self.last: dict[str, Reply] = {}
        self.answered: set[str] = set()  # nonces ACKed or NACKed

    def _make_stream(self) -> XdsStream:
        raise NotImplementedError

    def decode(self, data: bytes) -> Reply:
        raise NotImplementedError

    def apply(self, reply: Reply) -> None:
        raise NotImplementedError

    def _run(self, out: Iterable[bytes]) -> list[Reply]:
        replies = [self.decode(data) for data in out]
        for reply in replies:
            self.last[reply.type_url] = reply
            self.apply(reply)
        return replies

    def offer(self, proxy_config: ProxyConfig) -> list[Reply]:
        return self._run(self.stream.offer(proxy_config))

    def sync(self, type_url: str) -> TypeSync:
        """The classified state of one type. These tests are about the protocol, not the STALE
        threshold (test_sync.py): an un-ACKed push stays PENDING."""
        return view_of(self.stream.status, 0.0, math.inf).of(types.short_name(type_url))

    def state(self, type_url: str) -> str:
        return self.sync(type_url).state.value

    def ack(self, reply: Reply) -> list[Reply]:
        self.answered.add(reply.nonce)
        return self._answer(reply, None)

    def nack(self, reply: Reply, message: str) -> list[Reply]:
        self.answered.add(reply.nonce)
        return self._answer(reply, message)

    def ack_all(self) -> list[Reply]:
        """ACK the latest unanswered reply of every type until nothing more arrives."""
        replies: list[Reply] = []
        pending = [r for r in self.last.values() if r.nonce not in self.answered]
        while pending:
            more = [r for reply in pending for r in self.ack(reply)]
            replies += more
            pending = more
        return replies

    # Protocol-specific requests.
    def subscribe(self, type_url: str, names: Iterable[str] = (),
                  initial: Mapping[str, str] | None = None) -> list[Reply]:
        raise NotImplementedError

    def _answer(self, reply: Reply, error: str | None) -> list[Reply]:
        raise NotImplementedError

    def resubscribe(self, type_url: str, names: Iterable[str]) -> list[Reply]:
        """Change a by-name subscription, as Envoy does when clusters or listeners change."""
        raise NotImplementedError


class SotwPeer(Peer):
    protocol = "sotw"

    def __init__(self) -> None:
        super().__init__()
        self.names: dict[str, list[str]] = {}
        self.accepted: dict[str, str] = {}  # version_info Envoy reports: its last ACKed one

    def _make_stream(self) -> XdsStream:
        return SotwStream("web-1.default", self.nacks.append, clock=self.clock)

    def decode(self, data: bytes) -> Reply:
        return decode_sotw(data)

    def apply(self, reply: Reply) -> None:
        held = self.held.setdefault(reply.type_url, {})
        if reply.type_url in types.WILDCARD_TYPES:
            held.clear()  # SotW: a listener, cluster or scope response is the complete set
        held.update(reply.resources)

    def request(self, type_url: str, *, nonce: str = "", error: str | None = None,
                names: Iterable[str] | None = None) -> list[Reply]:
        if names is not None:
            self.names[type_url] = list(names)
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url, version_info=self.accepted.get(type_url, ""),
            resource_names=self.names.get(type_url, []), response_nonce=nonce)
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        return self._run(self.stream.handle_request(request))

    def subscribe(self, type_url: str, names: Iterable[str] = (),
                  initial: Mapping[str, str] | None = None) -> list[Reply]:
        return self.request(type_url, names=names)

    def _answer(self, reply: Reply, error: str | None) -> list[Reply]:
        if error is None:
            self.accepted[reply.type_url] = reply.version
        return self.request(reply.type_url, nonce=reply.nonce, error=error)

    def resubscribe(self, type_url: str, names: Iterable[str]) -> list[Reply]:
        last = self.last.get(type_url)
        return self.request(type_url, nonce=last.nonce if last else "", names=names)


class DeltaPeer(Peer):
    protocol = "delta"

    def __init__(self) -> None:
        super().__init__()
        self.names: dict[str, set[str]] = {}

    def _make_stream(self) -> XdsStream:
        return DeltaStream("web-1.default", self.nacks.append, clock=self.clock)

    def decode(self, data: bytes) -> Reply:
        return decode_delta(data)

    def apply(self, reply: Reply) -> None:
        held = self.held.setdefault(reply.type_url, {})
        held.update(reply.resources)
        for name in reply.removed:
            held.pop(name, None)

    def request(self, type_url: str, *, nonce: str = "", error: str | None = None,
                subscribe: Iterable[str] = (), unsubscribe: Iterable[str] = (),
                initial: Mapping[str, str] | None = None) -> list[Reply]:
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url, response_nonce=nonce,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            initial_resource_versions=dict(initial or {}))
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        return self._run(self.stream.handle_request(request))

    def subscribe(self, type_url: str, names: Iterable[str] = (),
                  initial: Mapping[str, str] | None = None) -> list[Reply]:
        self.names[type_url] = set(names)
        return self.request(type_url, subscribe=sorted(self.names[type_url]), initial=initial)

    def _answer(self, reply: Reply, error: str | None) -> list[Reply]:
        return self.request(reply.type_url, nonce=reply.nonce, error=error)

    def resubscribe(self, type_url: str, names: Iterable[str]) -> list[Reply]:
        old, new = self.names.get(type_url, set()), set(names)
        self.names[type_url] = new
        # Envoy forgets a resource as soon as it unsubscribes from it.
        for name in old - new:
            self.held.get(type_url, {}).pop(name, None)
        return self.request(type_url, subscribe=sorted(new - old), unsubscribe=sorted(old - new))
