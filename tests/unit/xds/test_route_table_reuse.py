"""The outbound route table reuses the virtual hosts whose inputs did not change: a route change
regenerates one service's host, and the table is byte for byte what generating it whole gives."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.xds.envoy_side import RDS
from tests.unit.xds.meshes import http_route, mesh, proxy, rule, service, workload
from tulle.xds import names
from tulle.xds.compiler import ConfigCompiler
from tulle.xds.generators import routes
from tulle.xds.wire import encode

WORKLOADS = [workload("web-1"), *(workload(f"s{i}-1", address=f"10.0.1.{i}") for i in range(6))]
SERVICES = [service(f"s{i}") for i in range(6)]
TABLE = names.outbound_route_config("default")


def test_a_route_change_regenerates_one_virtual_host(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    real = routes.outbound_virtual_host

    def counting(namespace: str, service: Any, attached: Any) -> Any:
        built.append(service.ref.name)
        return real(namespace, service, attached)

    monkeypatch.setattr(routes, "outbound_virtual_host", counting)
    compiler = ConfigCompiler()
    for version, weight in enumerate((10, 90, 10), start=1):
        split = http_route("split", "s0", [rule(("s1", weight), ("s2", 100 - weight))])
        snapshot = mesh(version, WORKLOADS, [*SERVICES, split])
        built.clear()
        table = compiler.compile(snapshot, proxy(snapshot, "web-1.default")).of_type(RDS)[TABLE]
        hosts_built = list(built)
        whole = routes.outbound_route_config("default", tuple(
            (s, snapshot.routes.get(ref, ())) for ref, s in snapshot.services.items()))
        assert table == encode(RDS, TABLE, whole)
        # The first table builds every host (6 services and web); later ones only s0's.
        everything = ["s0", "s1", "s2", "s3", "s4", "s5", "web"]
        assert hosts_built == (everything if version == 1 else ["s0"])
