"""Egress: calls from the mesh's workloads to hosts outside it.

- An ExternalService gets a cluster per port (its own metrics: one host, one port), a route
  table, and an outbound scope keyed on its host, exactly like a mesh service: the request's
  host picks it. Plain requests go to its http port (TLS originated there when it says so);
  ``CONNECT host:port`` tunnels to the port named.
- A host that is in no scope is refused (REGISTRY_ONLY: a 502 naming the host and the mode,
  ``unknown_host_replies`` in routes.py), or (ALLOW_ANY) passed through Envoy's dynamic
  forward proxy. Envoy has no catch-all scope, so under ALLOW_ANY a small Lua filter, first in
  the outbound chain, sends a request whose host chose no virtual host to the passthrough
  scope: it keeps the host in a header of its own, names the passthrough scope as the host,
  and clears the route cache, which makes Envoy choose the scope again (verified on Envoy
  1.40); the passthrough route puts the host back before the DNS lookup. Every outbound virtual
  host carries a marker in its metadata, so a request to a mesh service that matched none of
  its routes keeps its 404 instead of leaving the mesh.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.clusters.dynamic_forward_proxy.v3 import cluster_pb2 as dfp_cluster_pb2
from envoy.extensions.common.dynamic_forward_proxy.v3 import dns_cache_pb2
from envoy.extensions.filters.http.dynamic_forward_proxy.v3 import (
    dynamic_forward_proxy_pb2 as dfp_pb2,
)
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from tulle.model.external import ExternalPort, MeshExternal, is_ip
from tulle.xds import names
from tulle.xds.generators.common import pack, seconds, socket_address, tls_socket

CONNECT_TIMEOUT_S = 5.0  # hosts outside the mesh are often farther away than its own
PASSTHROUGH_FILTER = "tulle.egress"
DFP_FILTER = "envoy.filters.http.dynamic_forward_proxy"
# The request's own host while it crosses the passthrough scope; removed before it leaves.
ORIGINAL_HOST_HEADER = "x-tulle-egress-authority"
_DNS_CACHE = "tulle-egress"


def outbound_vhost_marker() -> base_pb2.Metadata:
    """Metadata of every outbound virtual host: the passthrough filter leaves requests that
    chose one alone."""
    metadata = base_pb2.Metadata()
    metadata.filter_metadata[PASSTHROUGH_FILTER].update({"mesh": True})
    return metadata


def external_cluster(external: MeshExternal, port: ExternalPort) -> cluster_pb2.Cluster:
    spec = external.spec
    name = names.external_cluster(spec.host, port.port)
    endpoint = endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(
        address=socket_address(spec.dial, port.port)))
    cluster = cluster_pb2.Cluster(
        name=name,
        alt_stat_name=names.external_stat_name(spec.host, port.port),
        type=cluster_pb2.Cluster.STATIC if is_ip(spec.dial) else cluster_pb2.Cluster.STRICT_DNS,
        connect_timeout=seconds(CONNECT_TIMEOUT_S),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])]),
    )
    if not is_ip(spec.dial):
        cluster.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
    if port.protocol == "http" and spec.tls is not None:
        cluster.transport_socket.CopyFrom(tls_socket(_originate(external)))
    return cluster


def _originate(external: MeshExternal) -> tls_pb2.UpstreamTlsContext:
    """TLS to the host, verified against the ExternalService's CA bundle and its name."""
    spec = external.spec
    assert spec.tls is not None
    server = spec.server_name
    san = common_pb2.SubjectAltNameMatcher(
        san_type=common_pb2.SubjectAltNameMatcher.IP_ADDRESS if is_ip(server)
        else common_pb2.SubjectAltNameMatcher.DNS,
        matcher=string_pb2.StringMatcher(exact=server))
    return tls_pb2.UpstreamTlsContext(
        sni="" if is_ip(server) else server,
        common_tls_context=tls_pb2.CommonTlsContext(
            validation_context=common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(inline_string=spec.tls.ca_bundle),
                match_typed_subject_alt_names=[san])))


def external_route_config(external: MeshExternal) -> route_pb2.RouteConfiguration:
    spec = external.spec
    where = f"ExternalService {external.ref.namespace}/{external.ref.name}"
    listed = ", ".join(str(p.port) for p in spec.ports)
    routes = [_tunnel(f"{spec.host}/connect/{port.port}",
                      names.external_cluster(spec.host, port.port),
                      rc.HeaderMatcher(name=":authority", string_match=string_pb2.StringMatcher(
                          exact=f"{spec.host}:{port.port}")))
              for port in spec.ports]
    routes.append(rc.Route(
        name=f"{spec.host}/connect/other",
        match=rc.RouteMatch(connect_matcher=rc.RouteMatch.ConnectMatcher()),
        direct_response=_body(502, f"tulle: {spec.host} has no such port in {where} "
                                   f"(ports: {listed}); add the port to its spec.ports.\n")))
    http = spec.http_port
    if http is not None:
        routes.append(rc.Route(
            name=f"{spec.host}/http",
            match=rc.RouteMatch(prefix="/"),
            route=rc.RouteAction(cluster=names.external_cluster(spec.host, http))))
    else:
        routes.append(rc.Route(
            name=f"{spec.host}/not-http", match=rc.RouteMatch(prefix="/"),
            direct_response=_body(400, f"tulle: {where} has no http port, so {spec.host} is "
                                       f"reached with CONNECT {spec.host}:PORT (an https:// "
                                       f"URL through the proxy does that).\n")))
    return route_pb2.RouteConfiguration(
        name=names.external_route_config(spec.host),
        virtual_hosts=[rc.VirtualHost(name=spec.host, domains=["*"], routes=routes,
                                      metadata=outbound_vhost_marker())])


def passthrough_route_config() -> route_pb2.RouteConfiguration:
    """ALLOW_ANY: any other host, through the dynamic forward proxy."""
    per_filter = {DFP_FILTER: pack(dfp_pb2.PerRouteConfig(
        host_rewrite_header=ORIGINAL_HOST_HEADER))}
    connect = _tunnel("passthrough/connect", names.PASSTHROUGH_CLUSTER)
    plain = rc.Route(name="passthrough/http", match=rc.RouteMatch(prefix="/"),
                     route=rc.RouteAction(cluster=names.PASSTHROUGH_CLUSTER))
    for route in (connect, plain):
        for name, config in per_filter.items():
            route.typed_per_filter_config[name].CopyFrom(config)
        route.request_headers_to_remove.append(ORIGINAL_HOST_HEADER)
    return route_pb2.RouteConfiguration(
        name=names.PASSTHROUGH_ROUTE_CONFIG,
        virtual_hosts=[rc.VirtualHost(name="passthrough", domains=["*"],
                                      routes=[connect, plain],
                                      metadata=outbound_vhost_marker())])


def passthrough_cluster() -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=names.PASSTHROUGH_CLUSTER,
        connect_timeout=seconds(CONNECT_TIMEOUT_S),
        lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
        cluster_type=cluster_pb2.Cluster.CustomClusterType(
            name="envoy.clusters.dynamic_forward_proxy",
            typed_config=pack(dfp_cluster_pb2.ClusterConfig(dns_cache_config=_dns_cache()))))


def passthrough_filters() -> tuple[hcm.HttpFilter, hcm.HttpFilter]:
    """(first in the outbound chain, last before the router)."""
    script = (
        "function envoy_on_request(handle)\n"
        "  if handle:virtualHost():metadata():get('mesh') == nil then\n"
        "    local headers = handle:headers()\n"
        f"    headers:replace('{ORIGINAL_HOST_HEADER}', headers:get(':authority') or '')\n"
        f"    headers:replace(':authority', '{names.PASSTHROUGH_SCOPE_KEY}')\n"
        "    handle:clearRouteCache()\n"
        "  end\n"
        "end\n")
    lua = hcm.HttpFilter(name=PASSTHROUGH_FILTER, typed_config=pack(lua_pb2.Lua(
        default_source_code=base_pb2.DataSource(inline_string=script))))
    dfp = hcm.HttpFilter(name=DFP_FILTER, typed_config=pack(dfp_pb2.FilterConfig(
        dns_cache_config=_dns_cache())))
    return lua, dfp


def _dns_cache() -> dns_cache_pb2.DnsCacheConfig:
    return dns_cache_pb2.DnsCacheConfig(
        name=_DNS_CACHE, dns_lookup_family=cluster_pb2.Cluster.V4_PREFERRED,
        max_hosts=wrappers_pb2.UInt32Value(value=1024))


def _tunnel(name: str, cluster: str, *headers: rc.HeaderMatcher) -> rc.Route:
    return rc.Route(
        name=name,
        match=rc.RouteMatch(connect_matcher=rc.RouteMatch.ConnectMatcher(),
                            headers=list(headers)),
        route=rc.RouteAction(
            cluster=cluster,
            timeout=seconds(0),
            upgrade_configs=[rc.RouteAction.UpgradeConfig(
                upgrade_type="CONNECT",
                connect_config=rc.RouteAction.UpgradeConfig.ConnectConfig())]))


def _body(status: int, text: str) -> rc.DirectResponseAction:
    return rc.DirectResponseAction(status=status,
                                   body=base_pb2.DataSource(inline_string=text))
