"""Compile (mesh snapshot, proxy) into the complete, encoded config of one proxy.

The work is shared as widely as the inputs allow:
- every encoded resource is memoized on exactly the arguments of the pure generator that built
  it, so an unchanged service costs nothing when another one changes, and a cache key can never
  miss an input (the key *is* the input);
- the part every proxy of a namespace shares (clusters, endpoints, the outbound scopes and
  route tables) is built once per snapshot and namespace, diffed once against the namespace's
  previous one, and held by reference by every proxy's config: a stream whose proxy has the
  previous one applies only that diff (stream.py), so a push costs each proxy work in
  proportion to the change.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from tulle.model.mesh import MeshService, MeshSnapshot
from tulle.model.meta import ServiceRef
from tulle.model.service import is_http
from tulle.xds import names, types
from tulle.xds.generators import clusters, endpoints, listeners, routes, secrets, tracing
from tulle.xds.generators.access_logs import proxy_logs
from tulle.xds.proxy import NO_LOGGING, ProxyInfo, ProxyLogging
from tulle.xds.wire import EncodedResource, encode, sum_of, version_of_sum

ByName = Mapping[str, EncodedResource]
_NOTHING: ByName = MappingProxyType({})
_NO_NAMES: frozenset[str] = frozenset()


@dataclass(frozen=True, eq=False)
class SharedConfig:
    """What every proxy of a namespace gets at one snapshot (clusters, endpoints, the outbound
    scopes and route tables, the trust bundle), built once, and its difference from the namespace's
    previous shared part, computed once. Proxies hold it by reference."""

    serial: int  # unique per compiler: what a later shared part's ``base`` names
    resources: Mapping[str, ByName]  # by type
    sums: Mapping[str, int]  # by type: the running sum of set_version (wire.sum_of)
    base: int | None = None  # the serial of the shared part the diff below is from
    changed: Mapping[str, frozenset[str]] = field(default_factory=dict)  # added or new version
    removed: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, serial: int, by_type: Mapping[str, Iterable[EncodedResource]],
           previous: SharedConfig | None = None) -> SharedConfig:
        resources = {t: MappingProxyType({r.name: r for r in items})
                     for t, items in by_type.items()}
        sums = {t: sum_of(items.values()) for t, items in resources.items()}
        if previous is None:
            return cls(serial, MappingProxyType(resources), MappingProxyType(sums))
        changed, removed = {}, {}
        for type_url in resources.keys() | previous.resources.keys():
            old = previous.resources.get(type_url, _NOTHING)
            new = resources.get(type_url, _NOTHING)
            changed[type_url] = frozenset(name for name, r in new.items()
                                          if (o := old.get(name)) is None
                                          or (o is not r and o.version != r.version))
            removed[type_url] = frozenset(name for name in old if name not in new)
        return cls(serial, MappingProxyType(resources), MappingProxyType(sums),
                   previous.serial, MappingProxyType(changed), MappingProxyType(removed))

    def changed_names(self, type_url: str) -> frozenset[str]:
        """What differs from the ``base`` shared part, of one type: added, changed, removed."""
        return self.changed.get(type_url, _NO_NAMES) | self.removed.get(type_url, _NO_NAMES)


NO_SHARED = SharedConfig(0, MappingProxyType({}), MappingProxyType({}))


@dataclass(frozen=True, eq=False)
class ProxyConfig:
    """Everything one proxy should have, per xDS type, at one mesh version: the shared part of
    its namespace, by reference, and its own few resources (listeners, its inbound cluster,
    its certificate, its upstream routes). The two never hold the same name."""

    mesh_version: int
    shared: SharedConfig
    own: Mapping[str, ByName]

    @cached_property
    def versions(self) -> Mapping[str, str]:
        """The version of each type's whole set: the same definition as the streams' (the
        sum of its members' hashes), composed from the shared part's sum, computed once."""
        return MappingProxyType({
            t: version_of_sum(self.shared.sums.get(t, 0)
                              + sum_of(self.own.get(t, _NOTHING).values()))
            for t in self.type_urls})

    @property
    def type_urls(self) -> list[str]:
        return [t for t in types.PUSH_ORDER if t in self.own or t in self.shared.resources]

    @property
    def resources(self) -> Mapping[str, ByName]:
        return MappingProxyType({t: self.of_type(t) for t in self.type_urls})

    def of_type(self, type_url: str) -> ByName:
        """Every resource of one type. Merged anew when both parts hold some, and not kept: a
        config is held per proxy, and the push path looks names up one by one (``get``)."""
        shared = self.shared.resources.get(type_url, _NOTHING)
        own = self.own.get(type_url, _NOTHING)
        if not own:
            return shared
        if not shared:
            return own
        return MappingProxyType({**shared, **own})

    def get(self, type_url: str, name: str) -> EncodedResource | None:
        found = self.own.get(type_url, _NOTHING).get(name)
        if found is None:
            found = self.shared.resources.get(type_url, _NOTHING).get(name)
        return found

    def holds(self, type_url: str) -> bool:
        """Whether the config has any resource of this type."""
        return bool(self.own.get(type_url) or self.shared.resources.get(type_url))

    def own_names(self, type_url: str) -> Iterable[str]:
        return self.own.get(type_url, _NOTHING).keys()

    @classmethod
    def build(cls, mesh_version: int, by_type: Mapping[str, Iterable[EncodedResource]],
              shared: SharedConfig = NO_SHARED) -> ProxyConfig:
        own = {t: MappingProxyType({r.name: r for r in items}) for t, items in by_type.items()}
        return cls(mesh_version, shared, MappingProxyType(own))


class ResourceMemo:
    """Encoded resources keyed on (generator, arguments). Entries unused for a whole snapshot
    generation are dropped, so memory follows the live config."""

    def __init__(self) -> None:
        self._current: dict[tuple[Any, ...], EncodedResource] = {}
        self._previous: dict[tuple[Any, ...], EncodedResource] = {}
        self.builds = 0  # statistics: how many resources were actually generated

    def advance(self) -> None:
        self._previous, self._current = self._current, {}

    def get(self, type_url: str, generator: Callable[..., Any], *args: Any) -> EncodedResource:
        key = (generator, *args)
        found = self._current.get(key)
        if found is None:
            found = self._previous.get(key)
            if found is None:
                message = generator(*args)
                name = message.cluster_name if type_url == types.ENDPOINT else message.name
                found = encode(type_url, name, message)
                self.builds += 1
            self._current[key] = found
        return found


def proxy_shape(mesh: MeshSnapshot, proxy: ProxyInfo) -> tuple[object, ...]:
    """What ``compile`` reads to build a proxy's own resources, but for its names, address and
    ports: proxies of one shape run the same generators on inputs that differ only there.
    The apply precheck translates one proxy per shape. Keep it in step with ``compile``."""
    service = mesh.services.get(ServiceRef(proxy.namespace, proxy.service))
    own = None if service is None else (service.protocol, service.detected, service.mtls_mode,
                                        service.policy.rate_limit, service.access_log)
    return (proxy.namespace, own, proxy.app_port is None, proxy.inbound_port is None,
            proxy.node_id in mesh.identity.certificates,
            tuple(bind.service for bind in proxy.upstreams))


def connection_lifetime(workload_lifetime_s: float) -> float:
    """Pooled connections last at most half a certificate's lifetime (and at most an hour)."""
    return min(3600.0, workload_lifetime_s / 2)


class ConfigCompiler:
    def __init__(self) -> None:
        self.memo = ResourceMemo()
        self._mesh_version = -1
        self._shared: dict[str, SharedConfig] = {}  # by namespace, at ``_mesh_version``
        # The optional HTTP filters the outbound route tables use, at ``_mesh_version``.
        self._outbound_filters: frozenset[str] = frozenset()
        self._last_shared: dict[str, SharedConfig] = {}  # by namespace, the newest built
        self._serials = itertools.count(1)

    def compile(self, mesh: MeshSnapshot, proxy: ProxyInfo,
                logging: ProxyLogging = NO_LOGGING) -> ProxyConfig:
        """``logging``: the proxy's tap sessions and access-log path, which live outside
        the snapshot."""
        if mesh.version != self._mesh_version:
            self._mesh_version = mesh.version
            self._shared = {}
            self.memo.advance()
            self._outbound_filters = routes.optional_filters(tuple(
                (service, mesh.routes.get(ref, ())) for ref, service in mesh.services.items()))
        shared = self._shared.get(proxy.namespace)
        if shared is None:
            shared = self._shared[proxy.namespace] = self._build_shared(mesh, proxy.namespace)

        memo = self.memo
        own_secrets: list[EncodedResource] = []
        certificate = mesh.identity.certificates.get(proxy.node_id)
        if certificate is not None:
            own_secrets.append(memo.get(types.SECRET, secrets.identity_secret,
                                        certificate.chain_pem, certificate.key_path))
        own_clusters: list[EncodedResource] = []
        tracer = tracing.proxy_tracing(mesh.settings.tracing,
                                       ServiceRef(proxy.namespace, proxy.service))
        own_service = mesh.services.get(ServiceRef(proxy.namespace, proxy.service))
        logs = proxy_logs(proxy.node_id, proxy.namespace,
                          certificate.spiffe_id if certificate else "",
                          mesh.settings.access_log.redacted(),
                          own_service.access_log if own_service else False, logging)
        http10 = mesh.settings.http.accept_http10
        own_listeners = [memo.get(types.LISTENER, listeners.outbound_listener,
                                  proxy.outbound_port, tracer, logs.outbound(),
                                  http10, self._outbound_filters)]
        own_routes: list[EncodedResource] = []
        if proxy.app_port is not None:
            own_protocol = own_service.protocol if own_service else "http"
            own_detected = own_service.detected if own_service else True
            own_clusters.append(memo.get(types.CLUSTER, clusters.inbound_cluster, proxy.app_port,
                                         own_protocol, own_detected))
            if proxy.inbound_port is not None:
                service = mesh.services.get(ServiceRef(proxy.namespace, proxy.service))
                protocol = service.protocol if service else "http"
                mode = (service.mtls_mode if service else mesh.settings.mtls.mode) \
                    if mesh.identity.trust_domain else None
                rate_limit = service.policy.rate_limit if service else None
                own_listeners.append(memo.get(types.LISTENER, listeners.inbound_listener,
                                              proxy.address, proxy.inbound_port, proxy.app_port,
                                              protocol, mode, rate_limit, tracer,
                                              logs.inbound()))
                if is_http(protocol):
                    own_clusters.append(memo.get(types.CLUSTER, clusters.inbound_cluster,
                                                 proxy.app_port, own_protocol, own_detected,
                                                 True))
        for bind in proxy.upstreams:
            service = mesh.services.get(bind.service) or MeshService(bind.service, "http", False)
            attached = mesh.routes.get(bind.service, ())
            own_listeners.append(memo.get(types.LISTENER, listeners.upstream_listener,
                                          bind.local_port, bind.service, service.protocol,
                                          tracer, logs.upstream(bind.service), http10,
                                          routes.optional_filters(((service, attached),))))
            if is_http(service.protocol):
                own_routes.append(memo.get(types.ROUTE, routes.upstream_route_config, service,
                                           attached))
        return ProxyConfig.build(mesh.version, {
            types.SECRET: own_secrets,
            types.CLUSTER: own_clusters,
            types.ENDPOINT: (),
            types.LISTENER: own_listeners,
            types.ROUTE: own_routes,
        }, shared)

    def _build_shared(self, mesh: MeshSnapshot, namespace: str) -> SharedConfig:
        memo = self.memo
        cluster_list = []
        assignment_list = []
        trust_domain = mesh.identity.trust_domain
        lifetime = (connection_lifetime(mesh.settings.workload_lifetime_s) if trust_domain
                    else None)
        for ref, service in mesh.services.items():
            cluster_list.append(memo.get(types.CLUSTER, clusters.outbound_cluster, service,
                                         trust_domain, lifetime))
            assignment_list.append(memo.get(types.ENDPOINT, endpoints.load_assignment,
                                            names.outbound_cluster(ref), mesh.endpoints_of(ref)))
        if mesh.settings.tracing is not None:
            cluster_list.append(memo.get(types.CLUSTER, tracing.collector_cluster,
                                         mesh.settings.tracing.otlp.address))
        # One route table per service, the same in every namespace (TCP services get one too:
        # it answers with how to reach them instead); the namespace's scopes pick them by host.
        route_tables = []
        scopes = []
        for ref, service in mesh.services.items():
            route_tables.append(memo.get(types.ROUTE, routes.outbound_route_config, service,
                                         mesh.routes.get(ref, ())))
            for host in routes.outbound_scope_hosts(namespace, ref):
                scopes.append(memo.get(types.SCOPED_ROUTE, routes.outbound_scope, host, ref))
        bundle = (memo.get(types.SECRET, secrets.bundle_secret, trust_domain,
                           mesh.identity.bundle_pem),) if trust_domain else ()
        shared = SharedConfig.of(next(self._serials), {
            types.SECRET: bundle,
            types.CLUSTER: cluster_list,
            types.ENDPOINT: assignment_list,
            types.SCOPED_ROUTE: scopes,
            types.ROUTE: route_tables,
        }, self._last_shared.get(namespace))
        self._last_shared[namespace] = shared
        return shared
