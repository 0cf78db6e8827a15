"""The bootstrap the control plane gives a sidecar: who it is and where ADS is; nothing else
listens (the agent adds Envoy's admin interface, on a Unix socket only it can open)."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.xds.meshes import workload
from tulle.xds.bootstrap import sidecar_bootstrap


def addresses(value: Any) -> list[Any]:
    if isinstance(value, dict):
        found = [value["socket_address"]] if "socket_address" in value else []
        return found + [a for v in value.values() for a in addresses(v)]
    if isinstance(value, list):
        return [a for v in value for a in addresses(v)]
    return []


def test_no_admin_port_only_the_xds_endpoint() -> None:
    bootstrap = sidecar_bootstrap(workload("web-1"), "127.0.0.1", 15710, "credential-123")
    assert "admin" not in bootstrap
    assert addresses(bootstrap) == [{"address": "127.0.0.1", "port_value": 15710}]
    assert bootstrap["node"]["id"] == "web-1.default"
    assert "Bearer credential-123" in json.dumps(bootstrap)  # Envoy's credential, for ADS


def test_other_replicas_are_lower_priorities_with_health_checks_to_move_by() -> None:
    alone = sidecar_bootstrap(workload("web-1"), "127.0.0.1", 15710, "c")
    assert "health_checks" not in alone["static_resources"]["clusters"][0]
    bootstrap = sidecar_bootstrap(workload("web-1"), "10.0.0.1", 15710, "c",
                                  other_xds=(("10.0.0.2", 15710), ("10.0.0.3", 15711)))
    xds = bootstrap["static_resources"]["clusters"][0]
    assert [(e["priority"], addresses(e)) for e in xds["load_assignment"]["endpoints"]] == [
        (0, [{"address": "10.0.0.1", "port_value": 15710}]),
        (1, [{"address": "10.0.0.2", "port_value": 15710}]),
        (2, [{"address": "10.0.0.3", "port_value": 15711}])]
    [check] = xds["health_checks"]
    assert "grpc_health_check" in check and check["no_traffic_interval"] == "1s"
