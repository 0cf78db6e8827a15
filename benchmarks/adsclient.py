"""A synthetic ADS client that behaves like an Envoy sidecar on the wire, for benchmarks.

Like Envoy, a client opens one ADS stream (Delta or State of the World) with the node id,
metadata and bearer token of its bootstrap, subscribes to clusters (wildcard), then to the
endpoints and secrets its clusters reference, then to listeners (wildcard), then to the route
tables and secrets its listeners reference, and to scopes (wildcard) when a listener has scoped
routes, then to the route tables its scopes name. It ACKs every response at once (Delta: by nonce;
SotW: version_info and response_nonce, with the names it wants), keeps every resource's name and
version so that it notices removals, and follows references as they change. It never NACKs:
it does not validate what it gets, which real sidecars do (tests compare the two).

Thousands of clients share one process, so per-client memory stays small: resource references
are decoded once per process, and the name -> version maps are interned, so clients holding the
same resources share one map.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2, scoped_route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from envoy.service.discovery.v3 import discovery_pb2

from tulle.xds import types
from tulle.xds.wire import content_version, set_version

_ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
CHANNEL_OPTIONS = [
    # One TCP connection per client, as each Envoy has: gRPC otherwise shares one subchannel
    # among channels with the same target and arguments.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
]
_MESSAGES: dict[str, Any] = {
    types.CLUSTER: cluster_pb2.Cluster, types.LISTENER: listener_pb2.Listener,
    types.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    types.ROUTE: route_pb2.RouteConfiguration, types.SECRET: secret_pb2.Secret,
    types.SCOPED_ROUTE: scoped_route_pb2.ScopedRouteConfiguration,
}


@dataclass(frozen=True)
class ProxyIdentity:
    """What a sidecar's bootstrap says about its ADS stream."""

    node_id: str
    cluster: str
    metadata: Mapping[str, str]
    authorization: str  # the header value, "Bearer ..."
    protocol: str  # "delta" or "sotw"
    target: str  # host:port of the control plane's xDS server

    @classmethod
    def from_bootstrap(cls, bootstrap: Mapping[str, Any]) -> ProxyIdentity:
        ads = bootstrap["dynamic_resources"]["ads_config"]
        headers = {h["key"]: h["value"] for h in ads["grpc_services"][0]["initial_metadata"]}
        xds = bootstrap["static_resources"]["clusters"][0]["load_assignment"]
        address = xds["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        socket = address["socket_address"]
        node = bootstrap["node"]
        return cls(node["id"], node["cluster"], dict(node["metadata"]),
                   headers["authorization"],
                   "delta" if ads["api_type"] == "DELTA_GRPC" else "sotw",
                   f"{socket['address']}:{socket['port_value']}")

    def to_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "cluster": self.cluster,
                "metadata": dict(self.metadata), "authorization": self.authorization,
                "protocol": self.protocol, "target": self.target}


@dataclass(frozen=True)
class References:
    """The resources one cluster, listener or scope makes Envoy subscribe to, by name; and
    whether a listener's scoped routes make it subscribe to scopes (SRDS, wildcard)."""

    endpoints: frozenset[str] = frozenset()
    routes: frozenset[str] = frozenset()
    secrets: frozenset[str] = frozenset()
    scopes: bool = False


NO_REFERENCES = References()


def _tls_secrets(common: Any) -> set[str]:
    names = {c.name for c in common.tls_certificate_sds_secret_configs}
    if common.HasField("validation_context_sds_secret_config"):
        names.add(common.validation_context_sds_secret_config.name)
    combined = common.combined_validation_context
    if common.HasField("combined_validation_context") and \
            combined.HasField("validation_context_sds_secret_config"):
        names.add(combined.validation_context_sds_secret_config.name)
    return names


def cluster_references(cluster: Any) -> References:
    endpoints = set()
    if cluster.type == cluster_pb2.Cluster.EDS:
        endpoints.add(cluster.eds_cluster_config.service_name or cluster.name)
    secrets: set[str] = set()
    tls = tls_pb2.UpstreamTlsContext()
    if cluster.HasField("transport_socket") and cluster.transport_socket.typed_config.Unpack(tls):
        secrets = _tls_secrets(tls.common_tls_context)
    return References(endpoints=frozenset(endpoints), secrets=frozenset(secrets))


def listener_references(listener: Any) -> References:
    routes: set[str] = set()
    secrets: set[str] = set()
    scopes = False
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        tls = tls_pb2.DownstreamTlsContext()
        if chain.HasField("transport_socket") and chain.transport_socket.typed_config.Unpack(tls):
            secrets |= _tls_secrets(tls.common_tls_context)
        for network_filter in chain.filters:
            manager = hcm.HttpConnectionManager()
            if not network_filter.typed_config.Unpack(manager):
                continue
            if manager.HasField("rds"):
                routes.add(manager.rds.route_config_name)
            scopes |= manager.scoped_routes.HasField("scoped_rds")
    return References(routes=frozenset(routes), secrets=frozenset(secrets), scopes=scopes)


def scope_references(scope: Any) -> References:
    """A scope (SRDS) makes Envoy subscribe to the route table it names (none: inline)."""
    name = scope.route_configuration_name
    return References(routes=frozenset({name} if name else ()))


class Known(dict[str, str]):
    """A client's resources of one type, name -> version. Interned: never mutate one."""

    __slots__ = ("__weakref__", "derived", "digest")

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(items)
        self.digest = 0
        self.derived: References | None = None  # what these resources reference, together


def _entry_hash(name: str, version: str) -> int:
    return hash((name, version))


EMPTY = Known()


class ResourceIndex:
    """Shared by every client of a process: decoded references and interned resource maps."""

    def __init__(self) -> None:
        self._references: dict[tuple[str, str, str], References] = {}
        self._sotw: dict[bytes, tuple[str, str]] = {}
        self._states: weakref.WeakValueDictionary[tuple[str, int, int], Known] = \
            weakref.WeakValueDictionary()
        self.decoded = 0

    def _learn(self, type_url: str, name: str, version: str, message: Any) -> None:
        if type_url == types.CLUSTER:
            self._references[(type_url, name, version)] = cluster_references(message)
        elif type_url == types.LISTENER:
            self._references[(type_url, name, version)] = listener_references(message)
        elif type_url == types.SCOPED_ROUTE:
            self._references[(type_url, name, version)] = scope_references(message)

    def delta_resource(self, type_url: str, resource: Any) -> tuple[str, str]:
        key = (type_url, resource.name, resource.version)
        if type_url in types.WILDCARD_TYPES and key not in self._references:
            self.decoded += 1
            message = _MESSAGES[type_url].FromString(resource.resource.value)
            self._learn(type_url, resource.name, resource.version, message)
        return resource.name, resource.version

    def sotw_resource(self, type_url: str, payload: bytes) -> tuple[str, str]:
        """The name and version of a resource in a SotW response (which carries neither
        outside the resource): decoded once per process for each distinct resource."""
        found = self._sotw.get(payload)
        if found is None:
            self.decoded += 1
            message = _MESSAGES[type_url].FromString(payload)
            name = message.cluster_name if type_url == types.ENDPOINT else message.name
            found = (name, content_version(payload))
            self._learn(type_url, *found, message)
            if len(self._sotw) > 100_000:
                self._sotw.clear()
            self._sotw[payload] = found
        return found

    def derived(self, type_url: str, known: Known) -> References:
        if known.derived is None:
            parts = [self._references.get((type_url, n, v), NO_REFERENCES)
                     for n, v in known.items()]
            known.derived = References(
                endpoints=frozenset().union(*(p.endpoints for p in parts)),
                routes=frozenset().union(*(p.routes for p in parts)),
                secrets=frozenset().union(*(p.secrets for p in parts)),
                scopes=any(p.scopes for p in parts))
        return known.derived

    def _intern(self, type_url: str, digest: int, size: int,
                build: Callable[[], Known]) -> Known:
        key = (type_url, digest, size)
        found = self._states.get(key)
        if found is None:
            found = build()
            found.digest = digest
            self._states[key] = found
        return found

    def updated(self, type_url: str, old: Known, updates: Mapping[str, str],
                removed: Iterable[str]) -> tuple[Known, set[str]]:
        """``old`` with ``updates`` and without ``removed``; and the names that changed."""
        digest, size, changed = old.digest, len(old), set()
        for name, version in updates.items():
            previous = old.get(name)
            if previous == version:
                continue
            if previous is None:
                size += 1
            else:
                digest ^= _entry_hash(name, previous)
            digest ^= _entry_hash(name, version)
            changed.add(name)
        gone = [name for name in removed if name in old]
        for name in gone:
            digest ^= _entry_hash(name, old[name])
            size -= 1
            changed.add(name)
        if not changed:
            return old, changed

        def build() -> Known:
            new = Known(old)
            new.update(updates)
            for name in gone:
                del new[name]
            return new
        return self._intern(type_url, digest, size, build), changed

    def replaced(self, type_url: str, old: Known, entries: list[tuple[str, str]]
                 ) -> tuple[Known, set[str]]:
        """A SotW wildcard response: the complete set, which replaces ``old``."""
        fresh = dict(entries)
        digest = 0
        for item in fresh.items():
            digest ^= _entry_hash(*item)
        changed = {n for n, v in fresh.items() if old.get(n) != v} | (old.keys() - fresh.keys())
        if not changed:
            return old, changed
        return self._intern(type_url, digest, len(fresh), lambda: Known(fresh)), changed


AckObserver = Callable[["SyntheticProxy", str, set[str], float], None]


@dataclass(eq=False)
class SyntheticProxy:
    identity: ProxyIdentity
    index: ResourceIndex
    on_ack: AckObserver = lambda proxy, type_url, changed, at: None
    known: dict[str, Known] = field(default_factory=dict)
    wanted: dict[str, frozenset[str]] = field(default_factory=dict)  # by-name subscriptions
    acked: dict[str, str] = field(default_factory=dict)  # per type: the version last ACKed
    acks: int = 0
    requests: int = 0
    completed_at: float | None = None  # when it first held everything it references
    error: str | None = None
    _last: dict[str, tuple[str, str]] = field(default_factory=dict)  # SotW: version, nonce
    _call: Any = None
    _sent_node: bool = False
    _listeners_requested: bool = False
    _scopes_requested: bool = False

    @property
    def delta(self) -> bool:
        return self.identity.protocol == "delta"

    async def run(self, channel: grpc.aio.Channel) -> None:
        """Hold the stream until the channel closes. Errors end up in ``error``."""
        if self.delta:
            request, response = discovery_pb2.DeltaDiscoveryRequest, \
                discovery_pb2.DeltaDiscoveryResponse
            method = _ADS + "DeltaAggregatedResources"
        else:
            request, response = discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse
            method = _ADS + "StreamAggregatedResources"
        call = channel.stream_stream(method, request_serializer=request.SerializeToString,
                                     response_deserializer=response.FromString)(
            metadata=(("authorization", self.identity.authorization),))
        self._call = call
        try:
            # Envoy asks for clusters first; listeners once its clusters are warm.
            await self._request(types.CLUSTER, frozenset(), frozenset())
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    break
                await self._on_response(message)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.error = f"{exc.code().name}: {exc.details()}"

    def state(self) -> dict[str, dict[str, Any]]:
        """Per xDS type (short name): the version it last ACKed (as Envoy reports it), and
        what it holds: names, count, and their set version as the control plane computes it
        (in SotW the two can differ: version_info is the server's, for what it sent)."""
        return {types.short_name(t): {"acked": self.acked.get(t, ""), "count": len(k),
                                      "version": set_version(k.items()), "names": sorted(k)}
                for t, k in self.known.items()}

    # -- the protocol ------------------------------------------------------------------------

    async def _request(self, type_url: str, subscribe: frozenset[str],
                       unsubscribe: frozenset[str], nonce: str = "") -> None:
        if self.delta:
            message: Any = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, resource_names_subscribe=sorted(subscribe),
                resource_names_unsubscribe=sorted(unsubscribe), response_nonce=nonce)
        else:
            version, last_nonce = self._last.get(type_url, ("", ""))
            message = discovery_pb2.DiscoveryRequest(
                type_url=type_url, version_info=version, response_nonce=nonce or last_nonce,
                resource_names=sorted(self.wanted.get(type_url, ())))
        if not self._sent_node:
            # Like Envoy with set_node_on_first_message_only: the node goes once per stream.
            message.node.id = self.identity.node_id
            message.node.cluster = self.identity.cluster
            message.node.metadata.update(dict(self.identity.metadata))
            message.node.user_agent_name = "tulle-synthetic"
            self._sent_node = True
        await self._call.write(message)
        self.requests += 1

    async def _on_response(self, response: Any) -> None:
        type_url = response.type_url
        old = self.known.get(type_url, EMPTY)
        index = self.index
        if self.delta:
            updates = dict(index.delta_resource(type_url, r) for r in response.resources)
            new, changed = index.updated(type_url, old, updates, response.removed_resources)
            self.acked[type_url] = response.system_version_info
        else:
            entries = [index.sotw_resource(type_url, r.value) for r in response.resources]
            if type_url in types.WILDCARD_TYPES:
                new, changed = index.replaced(type_url, old, entries)
            else:
                new, changed = index.updated(type_url, old, dict(entries), ())
            self._last[type_url] = (response.version_info, response.nonce)
            self.acked[type_url] = response.version_info
        self.known[type_url] = new
        await self._request(type_url, frozenset(), frozenset(), nonce=response.nonce)  # ACK
        at = time.time()
        self.acks += 1
        self.on_ack(self, type_url, changed, at)
        if type_url in types.WILDCARD_TYPES:
            await self._follow_references()
        if self.completed_at is None and self._complete():
            self.completed_at = at
        if not self._listeners_requested and self._clusters_warm():
            self._listeners_requested = True
            await self._request(types.LISTENER, frozenset(), frozenset())

    async def _follow_references(self) -> None:
        clusters = self.index.derived(types.CLUSTER, self.known.get(types.CLUSTER, EMPTY))
        listeners = self.index.derived(types.LISTENER, self.known.get(types.LISTENER, EMPTY))
        scopes = self.index.derived(types.SCOPED_ROUTE,
                                    self.known.get(types.SCOPED_ROUTE, EMPTY))
        if listeners.scopes and not self._scopes_requested:
            # Like Envoy: a listener with scoped routes subscribes to every scope (wildcard)
            # when it is created; each scope then subscribes to its route table by name.
            self._scopes_requested = True
            await self._request(types.SCOPED_ROUTE, frozenset(), frozenset())
        wanted = {types.SECRET: clusters.secrets | listeners.secrets,
                  types.ENDPOINT: clusters.endpoints,
                  types.ROUTE: listeners.routes | scopes.routes}
        for type_url in types.PUSH_ORDER:
            names = wanted.get(type_url)
            if names is None:
                continue
            before = self.wanted.get(type_url, frozenset())
            if names == before:
                continue
            self.wanted[type_url] = names
            gone = before - names
            if gone:  # Envoy forgets what it no longer subscribes to
                self.known[type_url], _ = self.index.updated(
                    type_url, self.known.get(type_url, EMPTY), {}, gone)
            await self._request(type_url, names - before, gone)

    def missing(self) -> str:
        """What it still waits for (for error messages)."""
        parts = [f"no {types.short_name(t)} yet" for t in types.WILDCARD_TYPES
                 if t not in self.known
                 and (t != types.SCOPED_ROUTE or self._scopes_requested)]
        parts.append(f"requests written {self.requests}")
        for type_url, names in self.wanted.items():
            lacking = names - self.known.get(type_url, EMPTY).keys()
            if lacking:
                parts.append(f"{types.short_name(type_url)} lacks {len(lacking)} of "
                             f"{len(names)}, e.g. {sorted(lacking)[:2]}")
        return "; ".join(parts) or "nothing"

    def _has_wanted(self, type_url: str) -> bool:
        names = self.wanted.get(type_url)
        return not names or names <= self.known.get(type_url, EMPTY).keys()

    def _clusters_warm(self) -> bool:
        return types.CLUSTER in self.known and self._has_wanted(types.ENDPOINT) and \
            self._has_wanted(types.SECRET)

    def _complete(self) -> bool:
        if self._scopes_requested and types.SCOPED_ROUTE not in self.known:
            return False
        return types.CLUSTER in self.known and types.LISTENER in self.known and all(
            self._has_wanted(t) for t in (types.ENDPOINT, types.SECRET, types.ROUTE))
