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
import re
from collections.abc import Callable
from typing import Any, cast

from tulle.identity.spiffe import spiffe_id
from tulle.model.egress_authz import EgressAuthz, egress_authz_for
from tulle.model.gateway import GatewayBinding, GatewaySpec
from tulle.model.kinds import GATEWAY
from tulle.model.mesh import MeshService, MeshSnapshot
from tulle.model.meta import ResourceKey, ServiceRef
from tulle.model.service import is_http
from tulle.xds import names, types
from tulle.xds.config import ProxyConfig, SharedConfig
from tulle.xds.generators import (
    clusters,
    egress,
    endpoints,
    gateway,
    listeners,
    routes,
    secrets,
    tracing,
)
from tulle.xds.generators.access_logs import ProxyLogs, TrialWatch, proxy_logs
from tulle.xds.proxy import NO_LOGGING, ProxyInfo, ProxyLogging
from tulle.xds.wire import EncodedResource, encode


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
                                        service.policy.rate_limit,
                                        service.policy.dry_run_rate_limit, service.access_log,
                                        mesh.authz.get(service.ref))
    return (proxy.namespace, own, _egress_authz(mesh, proxy), proxy.app_port is None,
            proxy.inbound_port is None,
            proxy.node_id in mesh.identity.certificates,
            tuple(bind.service for bind in proxy.upstreams), proxy.gateway,
            mesh.gateway_routes.get(ResourceKey(GATEWAY.kind, proxy.namespace, proxy.service))
            if proxy.gateway else None)


def connection_lifetime(workload_lifetime_s: float) -> float:
    """Pooled connections last at most half a certificate's lifetime (and at most an hour)."""
    return min(3600.0, workload_lifetime_s / 2)


_LOGGABLE_HEADER = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")


def trial_watch(mesh: MeshSnapshot) -> TrialWatch | None:
    """What callers log for the services with a DryRun HTTPRoute (None: no such service):
    the headers the trials match on, but for redacted ones and names that Envoy's format
    strings cannot carry (a valid header name may hold "%"); a match on those is undecided."""
    if not mesh.route_trials:
        return None
    redacted = set(mesh.settings.access_log.redacted())
    headers = {h for trial in mesh.route_trials.values() for h in trial.headers()
               if h not in redacted and _LOGGABLE_HEADER.fullmatch(h)}
    return TrialWatch(tuple(sorted(ref.host for ref in mesh.route_trials)),
                      tuple(sorted(headers)))


def _egress_authz(mesh: MeshSnapshot, proxy: ProxyInfo) -> EgressAuthz | None:
    """The AuthorizationPolicies on ExternalServices, for this proxy's own identity."""
    if not mesh.external_authz:
        return None
    workload = mesh.workloads.get(proxy.node_id)
    trust_domain = mesh.identity.trust_domain
    identity = spiffe_id(trust_domain, proxy.namespace, workload.account) \
        if workload is not None and trust_domain else ""
    return egress_authz_for(mesh.externals, mesh.external_authz, identity, proxy.namespace)


class ConfigCompiler:
    def __init__(self) -> None:
        self.memo = ResourceMemo()
        self._mesh_version = -1
        self._shared: dict[str, SharedConfig] = {}  # by namespace, at ``_mesh_version``
        # The optional HTTP filters the outbound route tables use, at ``_mesh_version``.
        self._outbound_filters: frozenset[str] = frozenset()
        # The services with a DryRun HTTPRoute, at ``_mesh_version`` (None: none).
        self._trials: TrialWatch | None = None
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
            self._trials = trial_watch(mesh)
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
                          own_service.access_log if own_service else False, logging,
                          self._trials.headers if self._trials else ())
        http10 = mesh.settings.http.accept_http10
        own_listeners = [memo.get(types.LISTENER, listeners.outbound_listener,
                                  proxy.outbound_port, tracer, logs.outbound(),
                                  http10, self._outbound_filters,
                                  mesh.settings.outbound.mode, logging.tap_token,
                                  _egress_authz(mesh, proxy), self._trials)]
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
                                              logs.inbound(), mesh.identity.trust_domain,
                                              mesh.identity.revocations,
                                              mesh.authz.get(ServiceRef(proxy.namespace,
                                                                        proxy.service)),
                                              service.policy.dry_run_rate_limit
                                              if service else None))
                if is_http(protocol):
                    own_clusters.append(memo.get(types.CLUSTER, clusters.inbound_cluster,
                                                 proxy.app_port, own_protocol, own_detected,
                                                 True))
        if proxy.gateway is not None:
            own_listeners.append(self._gateway(mesh, proxy, proxy.gateway, tracer, logs, http10,
                                               own_routes))
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

    def _gateway(self, mesh: MeshSnapshot, proxy: ProxyInfo, binding: GatewayBinding,
                 tracer: tracing.ProxyTracing | None, logs: ProxyLogs, http10: bool,
                 own_routes: list[EncodedResource]) -> EncodedResource:
        """An ingress gateway's listener, and (into ``own_routes``) its route table."""
        key = ResourceKey(GATEWAY.kind, proxy.namespace, proxy.service)
        found = mesh.resources.get(key)
        spec = cast(GatewaySpec, found.spec) if found is not None else None
        attached = mesh.gateway_routes.get(key, ())
        own_routes.append(self.memo.get(types.ROUTE, gateway.gateway_route_config, key, spec,
                                        binding.port, attached))
        return self.memo.get(types.LISTENER, gateway.gateway_listener, binding, key,
                             routes.rule_filters(attached), tracer,
                             logs.outbound(), http10)

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
        for host, external in mesh.externals.items():
            for port in external.spec.ports:
                cluster_list.append(memo.get(types.CLUSTER, egress.external_cluster, external,
                                             port))
            table = memo.get(types.ROUTE, egress.external_route_config, external)
            route_tables.append(table)
            scopes.append(memo.get(types.SCOPED_ROUTE, routes.scope, host, table.name))
        if mesh.settings.outbound.mode == "ALLOW_ANY":
            cluster_list.append(memo.get(types.CLUSTER, egress.passthrough_cluster))
            route_tables.append(memo.get(types.ROUTE, egress.passthrough_route_config))
            scopes.append(memo.get(types.SCOPED_ROUTE, routes.scope,
                                   names.PASSTHROUGH_SCOPE_KEY, names.PASSTHROUGH_ROUTE_CONFIG))
        bundle = (memo.get(types.SECRET, secrets.bundle_secret, mesh.identity.bundle_pem,
                           mesh.identity.crl_pem),) if trust_domain else ()
        shared = SharedConfig.of(next(self._serials), {
            types.SECRET: bundle,
            types.CLUSTER: cluster_list,
            types.ENDPOINT: assignment_list,
            types.SCOPED_ROUTE: scopes,
            types.ROUTE: route_tables,
        }, self._last_shared.get(namespace))
        self._last_shared[namespace] = shared
        return shared
