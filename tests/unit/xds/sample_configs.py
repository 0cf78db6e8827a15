"""Small, real Envoy configs for the stream tests: clusters, their endpoints, one listener and
one route table, each easy to change one piece at a time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import duration_pb2

from tests.unit.xds.envoy_side import config
from tulle.xds.config import ProxyConfig
from tulle.xds.generators.common import ads_source, socket_address

LISTENER = "outbound"
ROUTES = "outbound|default"


def cluster(name: str, timeout_s: int = 1) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name, type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=ads_source()),
        connect_timeout=duration_pb2.Duration(seconds=timeout_s))


def assignment(name: str, ports: Sequence[int]) -> endpoint_pb2.ClusterLoadAssignment:
    hosts = [ec.LbEndpoint(endpoint=ec.Endpoint(address=socket_address("10.0.0.1", port)))
             for port in ports]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[ec.LocalityLbEndpoints(lb_endpoints=hosts)])


def listener(port: int) -> listener_pb2.Listener:
    return listener_pb2.Listener(name=LISTENER, address=socket_address("127.0.0.1", port))


def route_table(clusters: Sequence[str], name: str = ROUTES) -> route_pb2.RouteConfiguration:
    hosts = [rc.VirtualHost(name=name, domains=[name], routes=[rc.Route(
        match=rc.RouteMatch(prefix="/"), route=rc.RouteAction(cluster=name))])
        for name in clusters]
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=hosts)


def sample(mesh_version: int = 1, *,
           timeouts: Mapping[str, int] | None = None,
           ports: Mapping[str, Sequence[int]] | None = None,
           listener_port: int = 15001,
           routed: Sequence[str] | None = None) -> ProxyConfig:
    """Clusters a and b (connect timeouts ``timeouts``) with endpoints on ``ports``, the
    outbound listener, and a route table naming ``routed`` (default: every cluster)."""
    timeouts = {"a": 1, "b": 1} if timeouts is None else timeouts
    # A cluster's endpoints depend on its name only, so adding or removing another cluster
    # leaves them unchanged.
    ports = {name: (8000 + ord(name[0]),) for name in timeouts} | dict(ports or {})
    return config(
        mesh_version,
        *(cluster(name, t) for name, t in timeouts.items()),
        *(assignment(name, ports[name]) for name in timeouts),
        listener(listener_port),
        route_table(sorted(timeouts) if routed is None else routed),
    )
