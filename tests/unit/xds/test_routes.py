"""RDS generator: which cluster a request reaches, read back the way Envoy reads a route table
(first matching route wins)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tests.unit.xds.meshes import Manifest, http_route, mesh, rule, service
from tulle.model.meta import ServiceRef
from tulle.xds.generators import routes

BOOKS = ServiceRef("default", "books")


def service_routes(*manifests: Manifest, ref: ServiceRef = BOOKS) -> list[Any]:
    snapshot = mesh(1, [], manifests)
    return routes.service_routes(snapshot.services[ref], snapshot.routes.get(ref, ()))


def target(route: Any) -> str:
    if route.HasField("direct_response"):
        return str(route.direct_response.status)
    action = route.route
    if action.HasField("weighted_clusters"):
        return ",".join(f"{c.name}={c.weight.value}" for c in action.weighted_clusters.clusters)
    return str(action.cluster)


def matches(match: Any, path: str) -> bool:
    kind = match.WhichOneof("path_specifier")
    if kind == "path":
        return bool(path == match.path)
    if kind == "prefix":
        return path.startswith(match.prefix)
    if kind == "path_separated_prefix":
        prefix = match.path_separated_prefix
        return path == prefix or path.startswith(prefix + "/")
    raise AssertionError(f"unexpected path specifier {kind}")


def pick(route_list: Sequence[Any], path: str) -> str:
    """Where Envoy sends ``path``: the first route that matches, else a 404 of its own."""
    return next((target(r) for r in route_list if matches(r.match, path)), "no route")


def cluster(name: str) -> str:
    return f"outbound|{name}.default"


PRECEDENCE = [
    http_route("paths", "books", [
        rule("v1", prefix="/books"),
        rule("fallback", prefix="/"),
        rule("special", exact="/books/special"),
        rule("deep", prefix="/books/deep/"),
    ]),
]


@pytest.mark.parametrize(("path", "expected"), [
    ("/books", "v1"),
    ("/books/1", "v1"),
    ("/booksx", "fallback"),  # prefixes match whole path segments
    ("/books/special", "special"),  # Exact wins over any prefix, wherever it is declared
    ("/books/special/1", "v1"),
    ("/books/deep/1", "deep"),  # the longer prefix wins
    ("/books/deep", "deep"),  # Gateway API: a trailing "/" in a prefix is ignored
    ("/books/deeper", "v1"),
    ("/", "fallback"),
    ("/other", "fallback"),
])
def test_path_precedence(path: str, expected: str) -> None:
    assert pick(service_routes(*PRECEDENCE), path) == cluster(expected)


@pytest.mark.parametrize(("path_type", "value", "kind", "envoy_value"), [
    ("PathPrefix", "/", "prefix", "/"),
    ("PathPrefix", "/books", "path_separated_prefix", "/books"),
    ("PathPrefix", "/books/", "path_separated_prefix", "/books"),
    ("PathPrefix", "/a/b", "path_separated_prefix", "/a/b"),
    ("Exact", "/books", "path", "/books"),
    ("Exact", "/books/", "path", "/books/"),
])
def test_path_match_translation(path_type: str, value: str, kind: str,
                                envoy_value: str) -> None:
    manifest = http_route("r", "books", [rule("books")])
    manifest["spec"]["rules"][0]["matches"] = [{"path": {"type": path_type, "value": value}}]
    [route] = service_routes(manifest)
    assert route.match.WhichOneof("path_specifier") == kind
    assert getattr(route.match, kind) == envoy_value


def test_routes_without_a_catch_all_leave_other_paths_unrouted() -> None:
    route_list = service_routes(http_route("r", "books", [rule("v2", prefix="/v2")]))
    assert pick(route_list, "/v2/x") == cluster("v2")
    assert pick(route_list, "/v1/x") == "no route"  # Envoy answers 404 (NR)


def test_equal_paths_keep_route_name_order() -> None:
    route_list = service_routes(
        http_route("b-route", "books", [rule("from-b", prefix="/x")]),
        http_route("a-route", "books", [rule("from-a", prefix="/x")]),
    )
    assert pick(route_list, "/x") == cluster("from-a")
    assert [r.name for r in route_list] == ["default/a-route/rule0/match0",
                                            "default/b-route/rule0/match0"]


@pytest.mark.parametrize(("backends", "expected"), [
    ([("a", 1)], cluster("a")),
    ([("a", 90), ("b", 10)], f"{cluster('a')}=90,{cluster('b')}=10"),
    ([("a", 1), ("b", 0)], cluster("a")),  # weight 0 gets no traffic: not even listed
    ([("a", 0), ("b", 3), ("c", 1)], f"{cluster('b')}=3,{cluster('c')}=1"),
    (["x.shop"], "outbound|x.shop"),
])
def test_weighted_backends(backends: list[str | tuple[str, int]], expected: str) -> None:
    [route] = service_routes(http_route("r", "books", [rule(*backends)]))
    assert target(route) == expected
    assert route.route.retry_policy.num_retries.value == routes.SAFE_RETRIES


def test_backends_default_to_the_namespace_of_the_route() -> None:
    manifest = http_route("r", "books", [rule("reviews")], namespace="shop")
    manifest["spec"]["parentRefs"] = [{"name": "books", "namespace": "default"}]
    [route] = service_routes(manifest)
    assert target(route) == "outbound|reviews.shop"


def test_a_service_without_routes_sends_everything_to_its_cluster() -> None:
    snapshot = mesh(1, [], [service("books")])
    route_list = routes.service_routes(snapshot.services[BOOKS], ())
    assert [pick(route_list, p) for p in ("/", "/any/path")] == [cluster("books")] * 2


def outbound_hosts(*manifests: Manifest) -> dict[str, Any]:
    """Each service's own outbound route table, by host: one virtual host taking every host
    (the scopes chose the table already)."""
    snapshot = mesh(1, [], manifests)
    hosts = {}
    for ref, s in snapshot.services.items():
        config = routes.outbound_route_config(s, snapshot.routes.get(ref, ()))
        assert config.name == f"outbound|{ref.host}"
        assert not config.validate_clusters.value
        [host] = config.virtual_hosts
        assert list(host.domains) == ["*"]
        hosts[host.name] = host
    return hosts


def test_a_tcp_service_answers_http_with_400_and_how_to_reach_it() -> None:
    hosts = outbound_hosts(service("db", "tcp"), http_route("r", "db", [rule("db", prefix="/")]))
    connect, route = hosts["db.default"].routes
    assert target(route) == "400"
    assert "--upstream db.default:" in route.direct_response.body.inline_string
    assert "CONNECT db.default:PORT" in route.direct_response.body.inline_string
    assert connect.match.HasField("connect_matcher")  # bytes reach it through CONNECT


def test_connect_to_a_service_tunnels_to_its_cluster() -> None:
    hosts = outbound_hosts(service("books"), service("greeter", "grpc"))
    for host in ("books.default", "greeter.default"):
        first = hosts[host].routes[0]  # before any route that matches HTTP requests
        assert first.match.HasField("connect_matcher")
        assert first.route.cluster == f"outbound|{host}"
        [upgrade] = first.route.upgrade_configs
        assert (upgrade.upgrade_type, upgrade.HasField("connect_config")) == ("CONNECT", True)
        assert first.route.timeout.ToSeconds() == 0


def test_an_unknown_host_gets_502_naming_the_host_and_the_mode() -> None:
    """No scope matches: Envoy's own 404 (NR), rewritten when no virtual host was chosen;
    CONNECT included (it is egress too)."""
    (unknown,) = routes.unknown_host_replies().mappers
    assert unknown.status_code.value == 502
    body = unknown.body_format_override.text_format_source.inline_string
    assert "%REQ(:AUTHORITY)%" in body and "REGISTRY_ONLY" in body
    assert "ExternalService" in body and "tulle get services" in body
    no_route, no_host = unknown.filter.and_filter.filters
    assert list(no_route.response_flag_filter.flags) == ["NR"]
    assert no_host.extension_filter.name.endswith(".cel")


@pytest.mark.parametrize(("client_namespace", "ref", "hosts"), [
    ("default", BOOKS, ("books", "books.default")),
    ("shop", BOOKS, ("books.default",)),  # the short name means a service of the client's
    ("shop", ServiceRef("shop", "books"), ("books", "books.shop")),  # namespace
])
def test_scopes_per_client_namespace(client_namespace: str, ref: ServiceRef,
                                     hosts: tuple[str, ...]) -> None:
    assert routes.outbound_scope_hosts(client_namespace, ref) == hosts
    for host in hosts:
        scope = routes.outbound_scope(host, ref)
        assert scope.name == f"scope|{host}"
        assert scope.route_configuration_name == f"outbound|{ref.host}"
        assert [f.string_key for f in scope.key.fragments] == [host]


def test_the_scope_key_is_the_host_without_its_port() -> None:
    [fragment] = routes.scope_key_builder().fragments
    extractor = fragment.header_value_extractor
    assert (extractor.name, extractor.element_separator, extractor.index) == (
        ":authority", ":", 0)


def test_upstream_route_table_takes_every_host() -> None:
    snapshot = mesh(1, [], [http_route("r", "books", [rule("v2", prefix="/v2")])])
    table = routes.upstream_route_config(snapshot.services[BOOKS], snapshot.routes[BOOKS])
    [host] = table.virtual_hosts
    assert (table.name, list(host.domains)) == ("upstream|books.default", ["*"])
    assert pick(host.routes, "/v2/1") == cluster("v2")


@pytest.mark.parametrize(("timeouts", "cap"), [
    (None, 15.0),  # Envoy's default route timeout
    ({"request": "1s"}, 1.0),
    ({"request": "0s"}, 0.0),  # no timeout: the deadline alone, uncapped
    ("no route", 15.0),
])
def test_grpc_routes_honour_the_callers_deadline_capped_by_their_timeout(
        timeouts: Any, cap: float) -> None:
    greeter = ServiceRef("default", "greeter")
    extra = []
    if timeouts != "no route":
        extra = [http_route("r", "greeter", [rule("greeter", prefix="/")
                                             | ({"timeouts": timeouts} if timeouts else {})])]
    grpc = service_routes(service("greeter", "grpc"), *extra, ref=greeter)
    assert grpc
    for route in grpc:
        limits = route.route.max_stream_duration
        header_max, duration = limits.grpc_timeout_header_max, limits.max_stream_duration
        assert limits.HasField("grpc_timeout_header_max")
        assert header_max.seconds + header_max.nanos / 1e9 == cap
        # Without a deadline, the route's timeout bounds the call (0: nothing does).
        assert limits.HasField("max_stream_duration") == bool(cap)
        assert duration.seconds + duration.nanos / 1e9 == cap
    http = service_routes(service("greeter", "http2"), *extra, ref=greeter)
    assert not any(r.route.HasField("max_stream_duration") for r in http)
