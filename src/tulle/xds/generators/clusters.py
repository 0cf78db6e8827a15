"""CDS: one EDS cluster per mesh service, and one static cluster for the local application."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from tulle.model.mesh import MeshService
from tulle.xds import names
from tulle.xds.generators.common import ads_source, seconds, socket_address

CONNECT_TIMEOUT_S = 2.0
LOCAL_APP_HOST = "127.0.0.1"


def outbound_cluster(service: MeshService) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=names.outbound_cluster(service.ref),
        alt_stat_name=names.outbound_stat_name(service.ref),
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=ads_source()),
        connect_timeout=seconds(CONNECT_TIMEOUT_S),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
    )


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
