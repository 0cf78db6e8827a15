"""Which HTTP filters each listener carries (compiler + listeners + routes.optional_filters):
fault injection and the local rate limit only where a route or the service uses them, since
Envoy applies a route's per-filter config only when its filter is in the chain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)

from tests.unit.model.traffic import to_route, to_service, traffic_policy
from tests.unit.xds.envoy_side import message_of
from tests.unit.xds.meshes import Manifest, http_route, mesh, proxy, rule, service, workload
from tulle.xds import types
from tulle.xds.compiler import ConfigCompiler
from tulle.xds.generators.http_filters import FAULT, GRPC_STATS, RATE_LIMIT, ROUTER

ABORT = {"abort": {"httpStatus": 503}}
LIMIT = {"requests": 5, "interval": "1s"}
BASE: list[Manifest] = [service("books"), service("web"), service("db", protocol="tcp")]
ROUTE = http_route("r", "books", [rule("books", prefix="/")])
# books-1 serves books and binds web (HTTP) and db (TCP) as upstreams.
NODE = workload("books-1", upstreams={"web": 9000, "db": 9001})


@dataclass(frozen=True)
class Case:
    id: str
    manifests: Sequence[Manifest]
    outbound: tuple[str, ...] = ()  # optional filters in each chain, in order
    inbound: tuple[str, ...] = ()
    upstream_web: tuple[str, ...] = ()


CASES = [
    Case("no policy", []),
    Case("route without policy", [ROUTE]),
    Case("service fault", [traffic_policy("p", to_service(), faultInjection=ABORT)],
         outbound=(FAULT,)),
    Case("fault on the upstream's service",
         [traffic_policy("p", to_service("web"), faultInjection=ABORT)],
         outbound=(FAULT,), upstream_web=(FAULT,)),
    Case("route fault", [ROUTE, traffic_policy("p", to_route(), faultInjection=ABORT)],
         outbound=(FAULT,)),
    Case("route rate limit", [ROUTE, traffic_policy("p", to_route(), rateLimit=LIMIT)],
         outbound=(RATE_LIMIT,)),
    Case("route fault and rate limit",
         [ROUTE, traffic_policy("p", to_route(), rateLimit=LIMIT, faultInjection=ABORT)],
         outbound=(FAULT, RATE_LIMIT)),
    # A service's own limit is enforced by its instances' inbound listener, not by callers.
    Case("service rate limit", [traffic_policy("p", to_service(), rateLimit=LIMIT)],
         inbound=(RATE_LIMIT,)),
]


def chain(listener: listener_pb2.Listener) -> tuple[str, ...]:
    manager = hcm.HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    names = tuple(f.name for f in manager.http_filters)
    assert names[-2:] == (GRPC_STATS, ROUTER)
    return names[:-2]


def listeners_of(manifests: Sequence[Manifest]) -> dict[str, Any]:
    snapshot = mesh(1, [NODE], [*BASE, *manifests])
    compiled = ConfigCompiler().compile(snapshot, proxy(snapshot, NODE.node_id))
    return {name: message_of(resource)
            for name, resource in compiled.of_type(types.LISTENER).items()}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_optional_filters_follow_the_policies(case: Case) -> None:
    found = listeners_of(case.manifests)
    assert chain(found["outbound"]) == case.outbound
    assert chain(found["inbound"]) == case.inbound
    assert chain(found["upstream|9000"]) == case.upstream_web
    assert found["upstream|9001"].filter_chains[0].filters[0].name.endswith("tcp_proxy")


def test_a_policy_added_later_changes_the_outbound_listener() -> None:
    compiler = ConfigCompiler()
    versions = []
    for version, manifests in enumerate(
            ([*BASE], [*BASE, traffic_policy("p", to_service(), faultInjection=ABORT)], [*BASE]),
            start=1):
        snapshot = mesh(version, [NODE], manifests)
        compiled = compiler.compile(snapshot, proxy(snapshot, NODE.node_id))
        versions.append(compiled.get(types.LISTENER, "outbound").version)  # type: ignore[union-attr]
    assert versions[0] != versions[1]
    assert versions[0] == versions[2]
