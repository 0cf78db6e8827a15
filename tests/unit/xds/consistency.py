"""Consistency of one proxy's config, in the spirit of go-control-plane's snapshot check:
everything a resource names must be part of the same config, and nothing is left dangling."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from tests.unit.xds.envoy_side import CDS, EDS, LDS, RDS, SDS, SRDS, message_of
from tulle.xds.config import ProxyConfig

_HCM = "type.googleapis.com/" + hcm.HttpConnectionManager.DESCRIPTOR.full_name
_TCP_PROXY = "type.googleapis.com/" + tcp_proxy_pb2.TcpProxy.DESCRIPTOR.full_name
_TLS_CONTEXTS = {"type.googleapis.com/" + message.DESCRIPTOR.full_name: message
                 for message in (tls_pb2.UpstreamTlsContext, tls_pb2.DownstreamTlsContext)}


def decoded(proxy_config: ProxyConfig, type_url: str) -> dict[str, Any]:
    return {name: message_of(r) for name, r in proxy_config.of_type(type_url).items()}


def route_clusters(route_config: Any) -> Iterator[str]:
    """Every cluster a route table can send a request to."""
    for host in route_config.virtual_hosts:
        for route in host.routes:
            if not route.HasField("route"):
                continue  # direct responses and redirects name no cluster
            action = route.route
            if action.HasField("weighted_clusters"):
                yield from (w.name for w in action.weighted_clusters.clusters)
            else:
                yield action.cluster


def tls_context(transport_socket: Any) -> Any:
    """The Upstream- or DownstreamTlsContext of a transport socket, or None (plaintext)."""
    message_type = _TLS_CONTEXTS.get(transport_socket.typed_config.type_url)
    if message_type is None:
        return None
    context = message_type()
    transport_socket.typed_config.Unpack(context)
    return context


def secret_references(context: Any) -> Iterator[tuple[str, str]]:
    """(secret name, what it must hold) for each SDS secret a TLS context names."""
    common = context.common_tls_context
    for config in common.tls_certificate_sds_secret_configs:
        yield config.name, "tls_certificate"
    if common.HasField("validation_context_sds_secret_config"):
        yield common.validation_context_sds_secret_config.name, "validation_context"
    if common.HasField("combined_validation_context"):
        combined = common.combined_validation_context
        yield combined.validation_context_sds_secret_config.name, "validation_context"


def tls_users(clusters: dict[str, Any], listeners: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(who, TLS context) for every cluster and listener filter chain that speaks TLS."""
    for name, cluster in clusters.items():
        if cluster.HasField("transport_socket"):
            yield f"cluster {name}", tls_context(cluster.transport_socket)
    for name, listener in listeners.items():
        for index, chain in enumerate(listener.filter_chains):
            if chain.HasField("transport_socket"):
                yield f"listener {name} chain {index}", tls_context(chain.transport_socket)


def secret_problems(clusters: dict[str, Any], listeners: dict[str, Any],
                    secrets: dict[str, Any]) -> Iterator[str]:
    for who, context in tls_users(clusters, listeners):
        if context is None:
            yield f"{who} has a transport socket that is not TLS"
            continue
        for name, holds in secret_references(context):
            if name not in secrets:
                yield f"{who} uses missing secret {name}"
            elif secrets[name].WhichOneof("type") != holds:
                yield f"{who} uses secret {name} as a {holds}, but it holds no {holds}"


def scope_problems(scopes: dict[str, Any], tables: dict[str, Any], used: bool) -> list[str]:
    """Scopes (SRDS) need a listener with scoped routes, distinct keys and their tables."""
    found = [] if used or not scopes else [f"scopes {sorted(scopes)} are used by no listener"]
    keys = Counter(tuple(f.string_key for f in scope.key.fragments) for scope in scopes.values())
    found += [f"{count} scopes share the key {key}" for key, count in keys.items() if count > 1]
    found += [f"scope {name} names missing route table {scope.route_configuration_name}"
              for name, scope in scopes.items() if scope.route_configuration_name not in tables]
    return found


def problems(proxy_config: ProxyConfig) -> list[str]:
    clusters = decoded(proxy_config, CDS)
    assignments = decoded(proxy_config, EDS)
    listeners = decoded(proxy_config, LDS)
    tables = decoded(proxy_config, RDS)
    scopes = decoded(proxy_config, SRDS)
    found: list[str] = list(secret_problems(clusters, listeners, decoded(proxy_config, SDS)))

    eds_names = set()
    for name, cluster in clusters.items():
        if cluster.type == cluster_pb2.Cluster.EDS:
            eds_name = cluster.eds_cluster_config.service_name or name
            eds_names.add(eds_name)
            if eds_name not in assignments:
                found.append(f"EDS cluster {name} has no ClusterLoadAssignment")
    found += [f"ClusterLoadAssignment {name} belongs to no EDS cluster"
              for name in assignments if name not in eds_names]

    referenced_tables: set[str] = set()
    scoped_listeners: list[str] = []
    named_clusters: list[tuple[str, str]] = []  # (who, cluster)
    for name, listener in listeners.items():
        for chain in listener.filter_chains:
            for network_filter in chain.filters:
                config = network_filter.typed_config
                if config.type_url == _HCM:
                    manager = hcm.HttpConnectionManager()
                    config.Unpack(manager)
                    scoped_listeners += [name] * manager.HasField("scoped_routes")
                    if manager.HasField("rds"):
                        referenced_tables.add(manager.rds.route_config_name)
                        if manager.rds.route_config_name not in tables:
                            found.append(f"listener {name} uses missing route table "
                                         f"{manager.rds.route_config_name}")
                    else:
                        named_clusters += [(f"listener {name} inline routes", c)
                                           for c in route_clusters(manager.route_config)]
                elif config.type_url == _TCP_PROXY:
                    proxy = tcp_proxy_pb2.TcpProxy()
                    config.Unpack(proxy)
                    named_clusters.append((f"listener {name} tcp_proxy", proxy.cluster))
    found += scope_problems(scopes, tables, bool(scoped_listeners))
    referenced_tables |= {scope.route_configuration_name for scope in scopes.values()}
    found += [f"route table {name} is used by no listener or scope"
              for name in tables if name not in referenced_tables]
    for name, table in tables.items():
        named_clusters += [(f"route table {name}", c) for c in route_clusters(table)]
    found += [f"{who} names missing cluster {cluster}"
              for who, cluster in named_clusters if cluster not in clusters]

    ports = Counter((listener.address.socket_address.address,
                     listener.address.socket_address.port_value)
                    for listener in listeners.values())
    found += [f"{count} listeners bind {host}:{port}"
              for (host, port), count in ports.items() if count > 1]
    return found
