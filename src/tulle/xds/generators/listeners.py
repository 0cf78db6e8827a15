"""LDS: where a sidecar accepts traffic.

- ``outbound``: the application's HTTP proxy (HTTP_PROXY points here), on loopback only.
- ``inbound``: mesh traffic for the local service, forwarded to the application.
- ``upstream|PORT``: ``--upstream SERVICE:PORT`` binds, for clients that ignore proxy variables.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import wrappers_pb2

from tulle.model.authorization import ServiceAuthz
from tulle.model.egress_authz import EgressAuthz
from tulle.model.external import OutboundMode
from tulle.model.meta import ServiceRef
from tulle.model.policy import RateLimit
from tulle.model.service import MtlsMode, Protocol
from tulle.xds import names
from tulle.xds.generators import egress, rbac
from tulle.xds.generators.access_logs import (
    HttpLogging,
    TrialWatch,
    http_access_logs,
    refused_egress_log,
    trial_log,
)
from tulle.xds.generators.common import ads_source, pack, socket_address, tls_socket
from tulle.xds.generators.http_filters import http_filters
from tulle.xds.generators.routes import (
    inbound_route_config,
    scope_key_builder,
    unknown_host_replies,
)
from tulle.xds.generators.secrets import downstream_tls
from tulle.xds.generators.tracing import ProxyTracing, http_tracing

LOOPBACK = "127.0.0.1"


def outbound_listener(port: int,
                      tracing: ProxyTracing | None = None,
                      access_log: HttpLogging | None = None,
                      accept_http10: bool = True,
                      optional_filters: frozenset[str] = frozenset(),
                      outbound_mode: OutboundMode = "REGISTRY_ONLY",
                      refusals_token: str = "",
                      egress_authz: EgressAuthz | None = None,
                      trials: TrialWatch | None = None) -> listener_pb2.Listener:
    """``optional_filters``: the HTTP filters the route tables' routes configure
    (routes.optional_filters). The request's host picks a scope (SRDS), and the scope one
    service's (or ExternalService's) route table: the listener itself names no service, nor
    the client's namespace (its scopes do). ``outbound_mode`` ALLOW_ANY: hosts in no scope
    are passed through (egress.py); under REGISTRY_ONLY, with ``refusals_token`` (the proxy's
    access-log credential), the calls refused are logged to the control plane, by host.
    ``egress_authz``: the AuthorizationPolicies on ExternalServices, as they apply to this
    proxy's own identity (first in the chain). ``trials``: services with a DryRun HTTPRoute,
    whose requests are logged to the control plane (with ``refusals_token`` too)."""
    manager = _http_manager("outbound", tracing=tracing, access_log=access_log,
                            accept_http10=accept_http10, optional_filters=optional_filters)
    # The host keeps the port the application named: the scope key drops it, and CONNECT
    # and passed-through requests need it (Envoy strips it from CONNECT's too: verified on
    # Envoy 1.40).
    manager.strip_any_host_port = False
    if outbound_mode == "REGISTRY_ONLY" and refusals_token:
        manager.access_log.append(refused_egress_log(refusals_token))
    if trials is not None and refusals_token:
        manager.access_log.append(trial_log(refusals_token, trials))
    if outbound_mode == "ALLOW_ANY":
        first, before_router = egress.passthrough_filters()
        manager.http_filters.insert(0, first)
        manager.http_filters.insert(len(manager.http_filters) - 1, before_router)
    if egress_authz is not None:
        manager.http_filters.insert(0, rbac.egress_rbac_filter(egress_authz))
    manager.scoped_routes.CopyFrom(hcm.ScopedRoutes(
        name=names.OUTBOUND_SCOPES, scope_key_builder=scope_key_builder(),
        rds_config_source=ads_source(),
        scoped_rds=hcm.ScopedRds(scoped_rds_config_source=ads_source())))
    manager.local_reply_config.CopyFrom(unknown_host_replies())
    if egress_authz is not None:
        manager.local_reply_config.mappers.append(rbac.denied_reply(egress_authz))
    return _listener(names.OUTBOUND_LISTENER, LOOPBACK, port, [_hcm_filter(manager)],
                     base_pb2.TrafficDirection.OUTBOUND)


def inbound_listener(address: str, port: int, app_port: int, protocol: Protocol,
                     mtls: MtlsMode | None, rate_limit: RateLimit | None = None,
                     tracing: ProxyTracing | None = None,
                     access_log: HttpLogging | None = None, trust_domain: str = "",
                     revocations: str = "", authz: ServiceAuthz | None = None,
                     dry_run_rate_limit: RateLimit | None = None) -> listener_pb2.Listener:
    """Mesh traffic for the local application. ``mtls`` None: plaintext only (no CA).
    ``rate_limit``: the service's own limit, enforced by each of its instances.
    ``revocations``: a mark of the revoked certificates; when it changes, the mTLS filter
    chain changes with it, so Envoy drains the connections it accepted before: a revoked
    peer's open connections end too, not only its new handshakes.
    ``authz``: the AuthorizationPolicy rules that protect the service (RBAC, first).
    ``dry_run_rate_limit``: a DryRun TrafficPolicy's limit, counting what it would refuse."""
    def network_filters_for(stat_prefix: str) -> list[listener_components_pb2.Filter]:
        if protocol == "tcp":
            proxy = _tcp_proxy(stat_prefix, names.inbound_cluster(app_port))
            if authz is None:
                return [proxy]
            return [rbac.network_rbac_filter(authz, app_port, stat_prefix), proxy]
        manager = _http_manager(stat_prefix, rate_limit=rate_limit, tracing=tracing,
                                access_log=access_log, dry_run_rate_limit=dry_run_rate_limit)
        manager.route_config.CopyFrom(inbound_route_config(app_port))
        if authz is not None:
            manager.http_filters.insert(0, rbac.http_rbac_filter(authz, app_port))
            manager.local_reply_config.mappers.append(rbac.denied_reply(authz))
        if mtls is not None:
            # The application learns the caller's verified SPIFFE ID, and only that: an
            # x-forwarded-client-cert header arriving from outside is replaced or removed.
            manager.forward_client_cert_details = hcm.HttpConnectionManager.SANITIZE_SET
            manager.set_current_client_cert_details.uri = True
        return [_hcm_filter(manager)]

    listener = _listener(names.INBOUND_LISTENER, address, port, network_filters_for("inbound"),
                         base_pb2.TrafficDirection.INBOUND)
    if mtls is None:
        return listener
    secure = listener.filter_chains[0]
    secure.transport_socket.CopyFrom(tls_socket(downstream_tls(trust_domain)))
    if revocations:
        secure.metadata.filter_metadata["tulle"].update({"revocations": revocations})
    if mtls == "PERMISSIVE":
        # Sniff the first bytes: TLS goes to the mTLS chain, anything else to plaintext.
        listener.listener_filters.append(listener_components_pb2.ListenerFilter(
            name="envoy.filters.listener.tls_inspector",
            typed_config=pack(tls_inspector_pb2.TlsInspector())))
        secure.filter_chain_match.transport_protocol = "tls"
        plain = listener.filter_chains.add()
        plain.filter_chain_match.transport_protocol = "raw_buffer"
        # Its own stat prefix: telemetry tells plaintext callers from mesh callers.
        plain.filters.extend(network_filters_for("inbound_plaintext"))
    return listener


def upstream_listener(local_port: int, service: ServiceRef, protocol: Protocol,
                      tracing: ProxyTracing | None = None,
                      access_log: HttpLogging | None = None,
                      accept_http10: bool = True,
                      optional_filters: frozenset[str] = frozenset()) -> listener_pb2.Listener:
    stat_prefix = f"upstream_{local_port}"
    if protocol == "tcp":
        network_filter = _tcp_proxy(stat_prefix, names.outbound_cluster(service))
    else:
        network_filter = _hcm_filter(
            _http_manager(stat_prefix, rds_name=names.upstream_route_config(service),
                          tracing=tracing, access_log=access_log,
                          accept_http10=accept_http10, optional_filters=optional_filters))
    return _listener(names.upstream_listener(local_port), LOOPBACK, local_port, [network_filter],
                     base_pb2.TrafficDirection.OUTBOUND)


def gateway_manager(rds_name: str, optional: frozenset[str],
                    tracing: ProxyTracing | None, access_log: HttpLogging | None,
                    accept_http10: bool) -> hcm.HttpConnectionManager:
    """An ingress gateway's connection manager: the edge, so the client's address is the
    connection's (an X-Forwarded-For from outside is not believed)."""
    manager = _http_manager("gateway", rds_name=rds_name, tracing=tracing,
                            access_log=access_log, accept_http10=accept_http10,
                            optional_filters=optional)
    manager.use_remote_address.value = True
    return manager


def listener_with(name: str, host: str, port: int,
                  manager: hcm.HttpConnectionManager) -> listener_pb2.Listener:
    """A listener of one HTTP connection manager, for traffic from outside the mesh."""
    return _listener(name, host, port, [_hcm_filter(manager)], base_pb2.TrafficDirection.INBOUND)


def _listener(name: str, host: str, port: int,
              network_filters: list[listener_components_pb2.Filter],
              direction: base_pb2.TrafficDirection.ValueType) -> listener_pb2.Listener:
    return listener_pb2.Listener(
        name=name,
        address=socket_address(host, port),
        traffic_direction=direction,
        filter_chains=[listener_components_pb2.FilterChain(filters=network_filters)],
    )


def _http_manager(stat_prefix: str, rds_name: str | None = None,
                  rate_limit: RateLimit | None = None,
                  tracing: ProxyTracing | None = None,
                  access_log: HttpLogging | None = None,
                  accept_http10: bool = False,
                  optional_filters: frozenset[str] = frozenset(),
                  dry_run_rate_limit: RateLimit | None = None) -> hcm.HttpConnectionManager:
    """``accept_http10``: on the listeners applications send to (the Mesh's
    ``spec.http.acceptHttp10``); sidecars speak HTTP/1.1 or newer to each other."""
    manager = hcm.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm.HttpConnectionManager.AUTO,
        # Clients that use HTTP_PROXY send absolute URLs (GET http://books/ HTTP/1.1).
        http_protocol_options=protocol_pb2.Http1ProtocolOptions(
            allow_absolute_url=wrappers_pb2.BoolValue(value=True),
            accept_http_10=accept_http10),
        # http://books:7002/ and http://books/ both match the virtual host "books".
        strip_any_host_port=True,
        http_filters=http_filters(rate_limit, optional_filters, dry_run_rate_limit),
        # WebSocket handshakes pass on every hop; without this Envoy refuses them with 403.
        # CONNECT is routed only where a route says so (the outbound tables' services).
        upgrade_configs=[hcm.HttpConnectionManager.UpgradeConfig(upgrade_type=kind)
                         for kind in ("websocket", "CONNECT")],
    )
    if rds_name is not None:
        manager.rds.CopyFrom(hcm.Rds(config_source=ads_source(), route_config_name=rds_name))
    if tracing is not None:
        manager.tracing.CopyFrom(http_tracing(tracing))
    if access_log is not None:  # None (no tap, no access log): no logging work at all
        manager.access_log.extend(http_access_logs(access_log))
    return manager


def _hcm_filter(manager: hcm.HttpConnectionManager) -> listener_components_pb2.Filter:
    return listener_components_pb2.Filter(
        name="envoy.filters.network.http_connection_manager", typed_config=pack(manager))


def _tcp_proxy(stat_prefix: str, cluster: str) -> listener_components_pb2.Filter:
    return listener_components_pb2.Filter(
        name="envoy.filters.network.tcp_proxy",
        typed_config=pack(tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix, cluster=cluster)))

