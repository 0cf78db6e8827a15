"""ConfigCompiler: complete, self-consistent configs, and work shared as widely as inputs allow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from tests.unit.xds import consistency
from tests.unit.xds.envoy_side import CDS, EDS, LDS, RDS, SRDS, config
from tests.unit.xds.meshes import (
    Manifest,
    http_route,
    mesh,
    proxy,
    rule,
    service,
    workload,
)
from tests.unit.xds.sample_configs import assignment, cluster
from tests.unit.xds.sample_configs import route_table as named_table
from tulle.model.mesh import MeshService
from tulle.model.meta import ServiceRef
from tulle.model.workload import Workload, WorkloadState
from tulle.xds.compiler import ConfigCompiler
from tulle.xds.config import ProxyConfig
from tulle.xds.generators import clusters, listeners, routes, secrets
from tulle.xds.proxy import ProxyInfo

BOOKS, WEB = "outbound|books.default", "outbound|web.default"
CLIENT = workload("web-1", app_port=None)


@dataclass(frozen=True)
class Case:
    id: str
    node: Workload  # the proxy compiled for
    others: Sequence[Workload] = ()
    manifests: Sequence[Manifest] = ()
    node_in_mesh: bool = True
    clusters: set[str] = field(default_factory=set)  # also the EDS names, minus inbound|*
    listeners: set[str] = field(default_factory=lambda: {"outbound"})
    upstream_routes: set[str] = field(default_factory=set)  # besides one table per service


CASES = [
    Case("no services", CLIENT, node_in_mesh=False),
    Case("one service", workload("books-1"), [workload("books-2", address="10.0.0.2")],
         # inbound|8080|upgrade: the same application, for WebSocket upgrades only.
         clusters={BOOKS, "inbound|8080", "inbound|8080|upgrade"},
         listeners={"outbound", "inbound"}),
    Case("client-only proxy", CLIENT, [workload("books-1")], clusters={BOOKS, WEB}),
    Case("instances not ready", CLIENT, [workload("books-1", state=WorkloadState.STARTING)],
         clusters={BOOKS, WEB}),
    Case("upstream to a service without workloads",
         workload("web-1", app_port=None, upstreams={"authors": 9000}), [workload("books-1")],
         clusters={BOOKS, WEB, "outbound|authors.default"},
         listeners={"outbound", "upstream|9000"},
         upstream_routes={"upstream|authors.default"}),
    Case("tcp service, client", workload("web-1", app_port=None, upstreams={"db": 9001}),
         [workload("db-1")], [service("db", "tcp")],
         clusters={WEB, "outbound|db.default"}, listeners={"outbound", "upstream|9001"}),
    Case("tcp service, server", workload("db-1"), [CLIENT], [service("db", "tcp")],
         clusters={WEB, "outbound|db.default", "inbound|8080"}, listeners={"outbound", "inbound"}),
    Case("httproutes with weights and paths",
         workload("web-1", app_port=None, upstreams={"books": 9002}), [workload("books-1")],
         [http_route("split", "books", [
             rule(("books", 90), ("books-v2", 10), ("books-canary", 0), prefix="/api"),
             rule("books", exact="/health"),
             rule("reviews.shop", prefix="/reviews/"),
         ])],
         clusters={BOOKS, WEB, "outbound|books-v2.default", "outbound|books-canary.default",
                   "outbound|reviews.shop"},
         listeners={"outbound", "upstream|9002"},
         upstream_routes={"upstream|books.default"}),
    Case("client in another namespace",
         workload("web-1", namespace="shop", app_port=None, upstreams={"books.default": 9003}),
         [workload("books-1")],
         clusters={BOOKS, "outbound|web.shop"}, listeners={"outbound", "upstream|9003"},
         upstream_routes={"upstream|books.default"}),
]


def route_table(clusters: list[str], name: str = BOOKS) -> object:
    return named_table(clusters, name)


def scope(host: str, name: str = "") -> object:
    found = routes.outbound_scope(host, ServiceRef("default", "books"))
    found.name = name or found.name
    return found


def compile_case(case: Case, compiler: ConfigCompiler | None = None) -> ProxyConfig:
    workloads = [*case.others, *([case.node] if case.node_in_mesh else [])]
    snapshot = mesh(1, workloads, case.manifests)
    info = proxy(snapshot, case.node.node_id) if case.node_in_mesh else ProxyInfo.of(case.node)
    return (compiler or ConfigCompiler()).compile(snapshot, info)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_compiled_config_is_complete_and_consistent(case: Case) -> None:
    compiled = compile_case(case)
    assert consistency.problems(compiled) == []
    assert set(compiled.of_type(CDS)) == case.clusters
    assert set(compiled.of_type(EDS)) == {c for c in case.clusters if c.startswith("outbound|")}
    assert set(compiled.of_type(LDS)) == case.listeners
    services = {c for c in case.clusters if c.startswith("outbound|")}
    assert set(compiled.of_type(RDS)) == services | case.upstream_routes
    # A scope per service, and one more per service of the client's own namespace (its
    # short name).
    namespace = case.node.namespace
    hosts = {c.removeprefix("outbound|") for c in services}
    assert set(compiled.of_type(SRDS)) == {f"scope|{h}" for h in hosts} | {
        f"scope|{h.split('.')[0]}" for h in hosts if h.endswith(f".{namespace}")}
    assert compiled.mesh_version == 1


BROKEN = [
    ("EDS cluster without endpoints", [cluster("a")],
     "EDS cluster a has no ClusterLoadAssignment"),
    ("orphan endpoints", [assignment("a", [1])], "ClusterLoadAssignment a belongs to no"),
    ("missing route table", [listeners.outbound_listener(15001), scope("books")],
     "scope scope|books names missing route table outbound|books.default"),
    ("unused route table", [route_table([])], "route table outbound|books.default is used by no"),
    ("route to a missing cluster",
     [listeners.outbound_listener(15001), scope("books"), route_table(["gone"])],
     "names missing cluster gone"),
    ("scopes without a listener", [scope("books"), route_table([])],
     "scopes ['scope|books'] are used by no listener"),
    ("two scopes with one key",
     [listeners.outbound_listener(15001), scope("books"), route_table([]),
      scope("books", "scope|again")],
     "2 scopes share the key ('books',)"),
    ("tcp proxy to a missing cluster",
     [listeners.upstream_listener(9000, ServiceRef("default", "db"), "tcp")],
     "tcp_proxy names missing cluster outbound|db.default"),
    ("inline route to a missing cluster",
     [listeners.inbound_listener("10.0.0.1", 15006, 8080, "http", None),
      clusters.inbound_cluster(8080, upgrades=True)],
     "inline routes names missing cluster inbound|8080"),
    ("cluster with a missing identity secret",
     [clusters.outbound_cluster(MeshService(ServiceRef("default", "db"), "tcp", True), "td"),
      assignment("outbound|db.default", [1]), secrets.bundle_secret("PEM")],
     "cluster outbound|db.default uses missing secret tulle-identity"),
    ("listener with a missing bundle secret",
     [listeners.inbound_listener("10.0.0.1", 15006, 8080, "tcp", "STRICT"),
      clusters.inbound_cluster(8080), secrets.identity_secret("PEM", "/key")],
     "listener inbound chain 0 uses missing secret tulle-trust-bundle"),
    ("secret of the wrong kind",
     [listeners.inbound_listener("10.0.0.1", 15006, 8080, "tcp", "PERMISSIVE"),
      clusters.inbound_cluster(8080), secrets.bundle_secret("PEM"),
      secret_pb2.Secret(name="tulle-identity",
                        validation_context=secrets.bundle_secret("PEM").validation_context)],
     "uses secret tulle-identity as a tls_certificate, but it holds no tls_certificate"),
    ("two listeners on one port",
     [listeners.outbound_listener(9000),
      listeners.upstream_listener(9000, ServiceRef("default", "db"), "tcp"),
      cluster("outbound|db.default"), assignment("outbound|db.default", [1])],
     "2 listeners bind 127.0.0.1:9000"),
]


@pytest.mark.parametrize(("case", "messages", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_the_consistency_check_finds_each_kind_of_problem(case: str, messages: list[object],
                                                          expected: str) -> None:
    found = consistency.problems(config(1, *messages))
    assert len(found) == 1 and expected in found[0], found


def test_weighted_routes_name_only_clusters_of_the_config() -> None:
    routes_case = next(c for c in CASES if c.id.startswith("httproutes"))
    table = consistency.decoded(compile_case(routes_case), RDS)["upstream|books.default"]
    named = set(consistency.route_clusters(table))
    assert named == {BOOKS, "outbound|books-v2.default", "outbound|reviews.shop"}


# -- memoization -------------------------------------------------------------------------------

def names_of(proxy_config: ProxyConfig) -> set[tuple[str, str]]:
    return {(t, n) for t in (CDS, EDS, LDS, SRDS, RDS) for n in proxy_config.of_type(t)}


def shared_names(first: ProxyConfig, second: ProxyConfig) -> set[tuple[str, str]]:
    """(type, name) of every resource both configs hold as the very same encoded object."""
    return {(t, n) for t in (CDS, EDS, LDS, SRDS, RDS) for n, r in first.of_type(t).items()
            if second.of_type(t).get(n) is r}


def test_proxies_share_encoded_resources() -> None:
    snapshot = mesh(1, [workload("books-1"), workload("books-2", address="10.0.0.2"), CLIENT,
                        workload("web-1", namespace="shop", app_port=None)])
    compiler = ConfigCompiler()
    books_1 = compiler.compile(snapshot, proxy(snapshot, "books-1.default"))
    built = compiler.memo.builds

    books_2 = compiler.compile(snapshot, proxy(snapshot, "books-2.default"))
    assert compiler.memo.builds == built + 1, "only the inbound listener (its address) is new"
    assert names_of(books_1) - shared_names(books_1, books_2) == {(LDS, "inbound")}

    web = compiler.compile(snapshot, proxy(snapshot, "web-1.default"))
    assert compiler.memo.builds == built + 1, "a client of the same namespace costs nothing"
    assert shared_names(web, books_1) == names_of(web)

    other_namespace = compiler.compile(snapshot, proxy(snapshot, "web-1.shop"))
    assert compiler.memo.builds == built + 2, \
        "its certificate, and the scope of its own service's short name (not the listener)"
    assert names_of(other_namespace) - shared_names(web, other_namespace) == {
        (SRDS, "scope|web")}  # web.shop in the shop namespace; web.default in default


BASE = [workload("books-1"), workload("authors-1", address="10.0.0.3"), CLIENT]
CHANGES: list[tuple[str, list[Workload], list[Manifest], set[tuple[str, str]]]] = [
    ("nothing", BASE, [], set()),
    ("instance added", [*BASE, workload("books-2", address="10.0.0.2")], [],
     {(EDS, BOOKS)}),
    ("instance not ready", [*BASE[1:], workload("books-1", state=WorkloadState.NOT_READY)], [],
     {(EDS, BOOKS)}),
    # One service's route table: what a route change sends every proxy.
    ("route attached", BASE, [http_route("r", "books", [rule("books", prefix="/v1")])],
     {(RDS, BOOKS)}),
    ("service added", [*BASE, workload("shelves-1")], [],
     {(CDS, "outbound|shelves.default"), (EDS, "outbound|shelves.default"),
      (RDS, "outbound|shelves.default"), (SRDS, "scope|shelves"),
      (SRDS, "scope|shelves.default")}),
]


@pytest.mark.parametrize(("case", "workloads", "manifests", "rebuilt"), CHANGES,
                         ids=[c[0] for c in CHANGES])
def test_only_what_a_change_touches_is_rebuilt(case: str, workloads: list[Workload],
                                               manifests: list[Manifest],
                                               rebuilt: set[tuple[str, str]]) -> None:
    compiler = ConfigCompiler()
    before = compiler.compile(mesh(1, BASE), ProxyInfo.of(CLIENT))
    built = compiler.memo.builds
    after = compiler.compile(mesh(2, workloads, manifests), ProxyInfo.of(CLIENT))
    assert compiler.memo.builds - built == len(rebuilt)
    assert names_of(after) - shared_names(after, before) == rebuilt
    assert after.mesh_version == 2
    assert consistency.problems(after) == []
