"""CDS: one EDS cluster per mesh service, and one static cluster for the local application."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from tulle.identity.spiffe import spiffe_id
from tulle.model.mesh import MeshService
from tulle.xds import names
from tulle.xds.generators.common import ads_source, pack, seconds, socket_address, tls_socket
from tulle.xds.generators.secrets import upstream_tls

CONNECT_TIMEOUT_S = 2.0
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
LOCAL_APP_HOST = "127.0.0.1"


def outbound_cluster(service: MeshService, trust_domain: str,
                     connection_lifetime_s: float | None = None) -> cluster_pb2.Cluster:
    """Without a trust domain (no CA, as in some unit tests) sidecars speak plaintext.

    ``connection_lifetime_s`` bounds how long a pooled HTTP connection lives: a new
    certificate or trust bundle applies to new handshakes only, so no connection may outlive
    the certificates it was made with by much.
    """
    cluster = cluster_pb2.Cluster(
        name=names.outbound_cluster(service.ref),
        alt_stat_name=names.outbound_stat_name(service.ref),
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=ads_source()),
        connect_timeout=seconds(CONNECT_TIMEOUT_S),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
    )
    if trust_domain:
        # Before any instance registers, expect the identity of the default service account:
        # an empty list would accept any identity of the trust domain.
        peers = service.identities or (
            spiffe_id(trust_domain, service.ref.namespace, service.ref.name),)
        cluster.transport_socket.CopyFrom(tls_socket(upstream_tls(service.ref.host, peers)))
    if connection_lifetime_s and service.protocol == "http":
        options = http_protocol_options_pb2.HttpProtocolOptions(
            explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
                http_protocol_options=protocol_pb2.Http1ProtocolOptions()),
            common_http_protocol_options=protocol_pb2.HttpProtocolOptions(
                max_connection_duration=seconds(connection_lifetime_s)))
        cluster.typed_extension_protocol_options[_HTTP_OPTIONS].CopyFrom(pack(options))
    return cluster


def inbound_cluster(app_port: int) -> cluster_pb2.Cluster:
    """The application behind this sidecar, always on loopback."""
    name = names.inbound_cluster(app_port)
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=socket_address(LOCAL_APP_HOST,
                                                                         app_port)))
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=seconds(CONNECT_TIMEOUT_S),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
    )
