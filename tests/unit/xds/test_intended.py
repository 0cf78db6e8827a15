"""The intended config, decoded back from its encoded resources for `proxy-config --diff`."""

from __future__ import annotations

import json

from envoy.config.cluster.v3 import cluster_pb2

from tests.unit.xds.test_access_logs import compiled
from tulle.model.taps import ProxyTaps
from tulle.security import REDACTED
from tulle.xds import types
from tulle.xds.config import ProxyConfig
from tulle.xds.intended import intended_json
from tulle.xds.proxy import ProxyLogging
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


def test_a_tap_loggers_access_log_token_is_redacted_as_in_envoys_dump() -> None:
    config = compiled(ProxyLogging(ProxyTaps(inbound=True), "the-access-log-token", ""))
    text = json.dumps(intended_json(config))
    assert "the-access-log-token" not in text
    assert json.dumps({"key": "authorization", "value": REDACTED}) in text
