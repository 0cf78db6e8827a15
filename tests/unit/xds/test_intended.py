"""The intended config, decoded back from its encoded resources for `proxy-config --diff`."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2

from tulle.xds import types
from tulle.xds.compiler import ProxyConfig
from tulle.xds.intended import intended_json
from tulle.xds.wire import encode


def test_resources_come_back_as_envoys_json() -> None:
    cluster = cluster_pb2.Cluster(name="outbound|books.default",
                                  type=cluster_pb2.Cluster.EDS)
    config = ProxyConfig.build(7, {types.CLUSTER: [encode(types.CLUSTER, cluster.name,
                                                          cluster)]})
    data = intended_json(config)
    assert data["meshVersion"] == 7
    assert data["resources"]["CDS"] == {"outbound|books.default": {
        "name": "outbound|books.default", "type": "EDS"}}
    assert data["resources"]["LDS"] == {}
    assert data["versions"]["CDS"] == config.versions[types.CLUSTER]
