"""Outbound routing is split per service (scoped RDS): a route change differs from the previous
snapshot in one route table, the same one in every namespace; services coming and going bring
and take their scopes."""

from __future__ import annotations

import pytest

from tests.unit.xds.envoy_side import CDS, EDS, LDS, RDS, SRDS
from tests.unit.xds.meshes import Manifest, http_route, mesh, proxy, rule, service, workload
from tulle.xds.compiler import ConfigCompiler
from tulle.xds.config import SharedConfig

WORKLOADS = [workload("web-1"), *(workload(f"s{i}-1", address=f"10.0.1.{i}") for i in range(4)),
             workload("web-1", namespace="shop", app_port=None)]
SERVICES: list[Manifest] = [service(f"s{i}") for i in range(4)]


def split(weight: int) -> Manifest:
    return http_route("split", "s0", [rule(("s1", weight), ("s2", 100 - weight))])


def shared(version: int, compiler: ConfigCompiler, node: str, manifests: list[Manifest],
           workloads: list[object] = WORKLOADS) -> SharedConfig:
    snapshot = mesh(version, workloads, manifests)  # type: ignore[arg-type]
    return compiler.compile(snapshot, proxy(snapshot, node)).shared


CHANGES = [
    ("route changed", [*SERVICES, split(10)], [*SERVICES, split(90)],
     {RDS: {"outbound|s0.default"}}),
    ("route attached", SERVICES, [*SERVICES, split(10)], {RDS: {"outbound|s0.default"}}),
    ("service added", SERVICES, [*SERVICES, service("s9")],
     {CDS: {"outbound|s9.default"}, EDS: {"outbound|s9.default"},
      RDS: {"outbound|s9.default"}, SRDS: {"scope|s9", "scope|s9.default"}}),
    ("service removed", [*SERVICES, service("s9")], SERVICES,
     {CDS: {"outbound|s9.default"}, EDS: {"outbound|s9.default"},
      RDS: {"outbound|s9.default"}, SRDS: {"scope|s9", "scope|s9.default"}}),
]


@pytest.mark.parametrize(("case", "before", "after", "diff"), CHANGES,
                         ids=[c[0] for c in CHANGES])
def test_the_snapshot_diff_holds_only_what_changed(case: str, before: list[Manifest],
                                                   after: list[Manifest],
                                                   diff: dict[str, set[str]]) -> None:
    compiler = ConfigCompiler()
    shared(1, compiler, "web-1.default", before)
    new = shared(2, compiler, "web-1.default", after)
    found = {t: set(new.changed_names(t)) for t in (CDS, EDS, LDS, SRDS, RDS)}
    assert {t: n for t, n in found.items() if n} == diff


def test_a_route_change_sends_one_table_in_every_namespace() -> None:
    """The same encoded table for clients of every namespace: bytes are shared."""
    compiler = ConfigCompiler()
    for node in ("web-1.default", "web-1.shop"):
        shared(1, compiler, node, [*SERVICES, split(10)])
    default = shared(2, compiler, "web-1.default", [*SERVICES, split(90)])
    shop = shared(2, compiler, "web-1.shop", [*SERVICES, split(90)])
    for part in (default, shop):
        assert {t: set(part.changed_names(t)) for t in (CDS, EDS, SRDS, RDS)
                if part.changed_names(t)} == {RDS: {"outbound|s0.default"}}
    assert default.resources[RDS]["outbound|s0.default"] is \
        shop.resources[RDS]["outbound|s0.default"]
    # Short names scope only in their own namespace.
    assert "scope|s0" in default.resources[SRDS] and "scope|s0" not in shop.resources[SRDS]
