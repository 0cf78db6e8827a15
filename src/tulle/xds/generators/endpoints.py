"""EDS: the ready instances of a service."""

from __future__ import annotations

from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from tulle.model.mesh import Endpoint
from tulle.xds.generators.common import socket_address


def load_assignment(cluster_name: str,
                    endpoints: tuple[Endpoint, ...]) -> endpoint_pb2.ClusterLoadAssignment:
    """Always sent, even empty: a cluster waits for its assignment before it finishes warming."""
    lb_endpoints = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=socket_address(ep.address, ep.port),
                # Shown by /clusters and in access logs: which workload a host is.
                hostname=ep.workload,
            ))
        for ep in endpoints
    ]
    groups = [endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb_endpoints)]
    return endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name,
                                              endpoints=groups if lb_endpoints else [])
