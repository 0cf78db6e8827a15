"""The mesh snapshot: which services exist, which workloads are endpoints, where routes attach."""

from __future__ import annotations

import pytest

from tests.unit.model.documents import parse
from tests.unit.model.workloads import workload
from tulle.model.mesh import EMPTY_MESH, Endpoint, MeshService, build_mesh
from tulle.model.meta import ResourceKey, ServiceRef
from tulle.model.workload import WorkloadState

BOOKS = ServiceRef("default", "books")
DB = ServiceRef("default", "db")

RESOURCES = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: db}
spec: {protocol: tcp}
---
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: quiet, namespace: shop}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: z-split}
spec:
  parentRefs: [{name: books}, {name: books, namespace: shop}]
  rules: [{backendRefs: [{name: books-v1}, {name: books-v2, namespace: lib}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a-canary}
spec:
  parentRefs: [{name: books}]
  rules: [{backendRefs: [{name: books}]}]
"""


def test_services_declared_derived_and_referenced() -> None:
    mesh = build_mesh(7, parse(RESOURCES), [
        workload("db-1", "db"),  # a declared service: its protocol wins over the derived http
        workload("web-1", "web", namespace="front", upstreams=(("default", "db"),
                                                              ("shop", "cache"))),
    ])
    assert mesh.version == 7
    assert dict(mesh.services) == {
        ServiceRef("default", "books"): MeshService(BOOKS, "http", declared=False, detected=True),
        ServiceRef("default", "books-v1"): MeshService(ServiceRef("default", "books-v1"),
                                                       "http", declared=False, detected=True),
        DB: MeshService(DB, "tcp", declared=True),
        ServiceRef("front", "web"): MeshService(ServiceRef("front", "web"), "http",
                                                declared=False, detected=True),
        ServiceRef("lib", "books-v2"): MeshService(ServiceRef("lib", "books-v2"), "http",
                                                   declared=False, detected=True),
        ServiceRef("shop", "books"): MeshService(ServiceRef("shop", "books"), "http",
                                                 declared=False, detected=True),
        ServiceRef("shop", "cache"): MeshService(ServiceRef("shop", "cache"), "http",
                                                 declared=False, detected=True),
        # Declared without a protocol: HTTP in the version each caller speaks.
        ServiceRef("shop", "quiet"): MeshService(ServiceRef("shop", "quiet"), "http",
                                                 declared=True, detected=True),
    }
    assert list(mesh.services) == sorted(mesh.services), "services are listed in a stable order"


def test_routes_attach_to_every_parent_in_name_order() -> None:
    resources = parse(RESOURCES)
    mesh = build_mesh(1, resources, [])
    by_key = {r.key: r for r in resources}
    split = ResourceKey("HTTPRoute", "default", "z-split")
    canary = ResourceKey("HTTPRoute", "default", "a-canary")
    assert [a.key for a in mesh.routes[BOOKS]] == [canary, split]
    assert [a.key for a in mesh.routes[ServiceRef("shop", "books")]] == [split]
    assert mesh.routes[BOOKS][1].spec == by_key[split].spec
    assert DB not in mesh.routes, "backends are not parents"
    assert set(mesh.resources) == set(by_key)


# (state, inbound port, is an endpoint)
STATES = [
    (WorkloadState.READY, 15006, True),
    (WorkloadState.READY, None, False),  # a client-only workload has no inbound listener
    (WorkloadState.STARTING, 15006, False),
    (WorkloadState.NOT_READY, 15006, False),
    (WorkloadState.DRAINING, 15006, False),
]


@pytest.mark.parametrize(("state", "inbound_port", "is_endpoint"), STATES,
                         ids=[f"{s.value}-{p}" for s, p, _ in STATES])
def test_only_ready_workloads_with_an_inbound_port_are_endpoints(
        state: WorkloadState, inbound_port: int | None, is_endpoint: bool) -> None:
    mesh = build_mesh(1, [], [workload("books-1", "books", state=state,
                                       inbound_port=inbound_port)])
    assert BOOKS in mesh.services, "a registered workload makes its service exist"
    assert "books-1.default" in mesh.workloads
    assert [e.workload for e in mesh.endpoints_of(BOOKS)] == (["books-1"] if is_endpoint else [])


def test_endpoints_carry_the_workload_details_in_node_order() -> None:
    mesh = build_mesh(1, [], [
        workload("books-2", "books", inbound_port=16002, version="v2", labels=(("tier", "b"),)),
        workload("books-1", "books", inbound_port=16001),
        workload("books-1", "books", namespace="shop", inbound_port=16003),
    ])
    assert mesh.endpoints_of(BOOKS) == (
        Endpoint("books-1", "127.0.0.1", 16001, "v1", ()),
        Endpoint("books-2", "127.0.0.1", 16002, "v2", (("tier", "b"),)),
    )
    assert [e.port for e in mesh.endpoints_of(ServiceRef("shop", "books"))] == [16003]
    assert list(mesh.workloads) == ["books-1.default", "books-1.shop", "books-2.default"]


def test_service_without_endpoints_has_none() -> None:
    mesh = build_mesh(1, parse(RESOURCES), [])
    assert mesh.endpoints_of(DB) == ()
    assert EMPTY_MESH.endpoints_of(DB) == ()
    assert not EMPTY_MESH.services


def test_snapshot_cannot_be_changed() -> None:
    mesh = build_mesh(1, parse(RESOURCES), [workload("books-1", "books")])
    with pytest.raises(TypeError):
        mesh.services[DB] = MeshService(DB, "http", declared=False, detected=True)  # type: ignore[index]
    with pytest.raises(TypeError):
        mesh.routes[DB] = ()  # type: ignore[index]
    with pytest.raises(AttributeError):
        mesh.version = 2  # type: ignore[misc]


def test_a_subset_without_a_protocol_speaks_that_of_the_service_it_selects() -> None:
    resources = parse("""\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: greeter}
spec: {protocol: grpc}
---
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: greeter-v2}
spec: {selector: {service: greeter, version: v2}}
---
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: greeter-h1}
spec: {protocol: http, selector: {service: greeter, version: v1}}
---
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books-v2}
spec: {selector: {service: books, version: v2}}
""")
    services = build_mesh(1, resources, []).services
    protocols = {ref.name: (s.protocol, s.detected) for ref, s in services.items()}
    assert protocols == {"greeter": ("grpc", False), "greeter-v2": ("grpc", False),
                         "greeter-h1": ("http", False),  # declared: it wins
                         "books-v2": ("http", True)}  # books declares none: detected
