"""One HTTPRoute rule to an Envoy route (route_actions.py): backends, retries, timeouts, hash
policies, mirrors, rewrites, redirects, header changes and per-route policy configs."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.type.v3 import percent_pb2

from tests.unit.model.traffic import to_service, traffic_policy
from tests.unit.xds.meshes import Manifest, http_route, mesh, parse, rule, service
from tulle.model.httproute import RouteRule
from tulle.model.meta import ServiceRef
from tulle.model.policy import FaultAbort, FaultInjection, HashKey, RateLimit
from tulle.xds.generators import routes
from tulle.xds.generators.http_filters import FAULT, RATE_LIMIT
from tulle.xds.generators.matchers import route_match
from tulle.xds.generators.route_actions import (
    SAFE_RETRY_ON,
    default_route,
    rule_route,
)

BOOKS = ServiceRef("default", "books")
BACKEND = {"backendRefs": [{"name": "a"}]}


def rule_of(manifest: Manifest, namespace: str = "default") -> RouteRule:
    """The rule as parsed from a route manifest, so that it is a valid one."""
    (resource,) = parse(http_route("r", "books", [manifest], namespace=namespace))
    rule_: RouteRule = resource.spec.rules[0]
    return rule_


def build(manifest: Manifest, *, match: int = 0, namespace: str = "default",
          fault: FaultInjection | None = None, rate_limit: RateLimit | None = None,
          hash_key: HashKey | None = None) -> rc.Route:
    parsed = rule_of(manifest, namespace)
    chosen = parsed.matches[match]
    return rule_route("r", chosen, route_match(chosen), parsed, namespace, fault, rate_limit,
                      hash_key)


def target(route: rc.Route) -> str:
    action = route.route
    if action.HasField("weighted_clusters"):
        return ",".join(f"{c.name}={c.weight.value}" for c in action.weighted_clusters.clusters)
    return str(action.cluster)


@pytest.mark.parametrize(("backends", "namespace", "expected"), [
    ([{"name": "a"}], "shop", "outbound|a.shop"),  # the route's namespace by default
    ([{"name": "a", "weight": 90}, {"name": "b", "weight": 10}], "default",
     "outbound|a.default=90,outbound|b.default=10"),
    ([{"name": "a", "weight": 0}, {"name": "b", "weight": 3}], "default",
     "outbound|b.default"),  # weight 0 never gets traffic: one cluster left
], ids=["route namespace", "weighted", "zero weight dropped"])
def test_backends(backends: list[dict[str, Any]], namespace: str, expected: str) -> None:
    assert target(build({"backendRefs": backends}, namespace=namespace)) == expected


@pytest.mark.parametrize(("retry", "retry_on", "attempts", "codes"), [
    (None, SAFE_RETRY_ON, 2, []),
    ({"attempts": 3}, f"{SAFE_RETRY_ON},5xx", 3, []),
    ({"codes": [503, 429]}, f"{SAFE_RETRY_ON},retriable-status-codes", 1, [503, 429]),
], ids=["safe retries only", "attempts", "status codes"])
def test_retry_policy(retry: dict[str, Any] | None, retry_on: str, attempts: int,
                      codes: list[int]) -> None:
    policy = build(BACKEND | ({"retry": retry} if retry else {})).route.retry_policy
    assert policy.retry_on == retry_on
    assert policy.num_retries.value == attempts
    assert list(policy.retriable_status_codes) == codes
    # Each retry tries another instance.
    assert [p.name for p in policy.retry_host_predicate] == [
        "envoy.retry_host_predicates.previous_hosts"]
    assert policy.host_selection_retry_max_attempts == 3
    assert not policy.HasField("retry_back_off")


def test_retry_backoff_grows_to_ten_times_the_base() -> None:
    back_off = build(BACKEND | {"retry": {"backoff": "100ms"}}).route.retry_policy.retry_back_off
    assert (back_off.base_interval.seconds, back_off.base_interval.nanos) == (0, 100_000_000)
    assert (back_off.max_interval.seconds, back_off.max_interval.nanos) == (1, 0)


@pytest.mark.parametrize(("timeouts", "timeout", "per_try"), [
    ({"request": "1.5s"}, (1, 500_000_000), None),
    ({"request": "0s", "backendRequest": "250ms"}, (0, 0), (0, 250_000_000)),
], ids=["request", "no limit, per attempt"])  # 0s: no limit (Envoy's default is 15 s)
def test_timeouts(timeouts: dict[str, str], timeout: tuple[int, int] | None,
                  per_try: tuple[int, int] | None) -> None:
    action = build(BACKEND | {"timeouts": timeouts}).route
    assert action.HasField("timeout") == (timeout is not None)
    if timeout is not None:
        assert (action.timeout.seconds, action.timeout.nanos) == timeout
    per_try_timeout = action.retry_policy.per_try_timeout
    assert action.retry_policy.HasField("per_try_timeout") == (per_try is not None)
    if per_try is not None:
        assert (per_try_timeout.seconds, per_try_timeout.nanos) == per_try


@pytest.mark.parametrize(("key", "field", "expected"), [
    (HashKey(header="X-User"), "header", "x-user"),
    (HashKey(cookie="Session"), "cookie", "Session"),
    (HashKey(source_ip=True), "connection_properties", "True"),
])
def test_hash_policy(key: HashKey, field: str, expected: str) -> None:
    (policy,) = build(BACKEND, hash_key=key).route.hash_policy
    assert policy.WhichOneof("policy_specifier") == field
    value = {"header": policy.header.header_name, "cookie": policy.cookie.name,
             "connection_properties": str(policy.connection_properties.source_ip)}[field]
    assert value == expected


@pytest.mark.parametrize(("mirror", "cluster", "millionths"), [
    ({"backendRef": {"name": "m", "namespace": "shop"}}, "outbound|m.shop", 1_000_000),
    ({"percent": 25}, "outbound|m.default", 250_000),
    ({"fraction": {"numerator": 1, "denominator": 3}}, "outbound|m.default", 333_333),
], ids=["everything, other namespace", "percent", "fraction"])
def test_mirror(mirror: dict[str, Any], cluster: str, millionths: int) -> None:
    request_mirror = {"backendRef": {"name": "m"}} | mirror
    action = build(BACKEND | {"filters": [{"type": "RequestMirror",
                                           "requestMirror": request_mirror}]}).route
    (policy,) = action.request_mirror_policies
    assert policy.cluster == cluster
    fraction = policy.runtime_fraction.default_value
    assert (fraction.numerator, fraction.denominator) == (
        millionths, percent_pb2.FractionalPercent.MILLION)


def url_rewrite(**fields: Any) -> Manifest:
    return {"type": "URLRewrite", "urlRewrite": fields}


def test_url_rewrite_host_and_full_path() -> None:
    action = build(BACKEND | {"filters": [url_rewrite(
        hostname="books.internal",
        path={"type": "ReplaceFullPath", "replaceFullPath": "/v2/index"})]}).route
    assert action.host_rewrite_literal == "books.internal"
    assert (action.regex_rewrite.pattern.regex, action.regex_rewrite.substitution) == (
        "^.*$", "/v2/index")


def test_prefix_rewrite_uses_each_match_own_prefix() -> None:
    manifest = BACKEND | {
        "matches": [{"path": {"value": "/old/"}}, {"path": {"value": "/legacy"}}],
        "filters": [url_rewrite(path={"type": "ReplacePrefixMatch",
                                      "replacePrefixMatch": "/new"})]}
    rewrites = [build(manifest, match=m).route.regex_rewrite for m in (0, 1)]
    assert [(r.pattern.regex, r.substitution) for r in rewrites] == [
        ("^/old(/.*)?$", "/new\\1"), ("^/legacy(/.*)?$", "/new\\1")]


def redirect(**fields: Any) -> Manifest:
    return {"filters": [{"type": "RequestRedirect", "requestRedirect": fields}]}


@pytest.mark.parametrize(("status", "code"), [
    (None, rc.RedirectAction.FOUND),
    (308, rc.RedirectAction.PERMANENT_REDIRECT),
])
def test_redirect_status(status: int | None, code: int) -> None:
    route = build(redirect(**({"statusCode": status} if status else {})))
    assert route.WhichOneof("action") == "redirect"
    assert route.redirect.response_code == code


def test_redirect_fields() -> None:
    full = build(redirect(scheme="https", hostname="example.com", port=8443,
                          path={"type": "ReplaceFullPath", "replaceFullPath": "/new"})).redirect
    assert (full.scheme_redirect, full.host_redirect, full.port_redirect, full.path_redirect) \
        == ("https", "example.com", 8443, "/new")
    prefix = build(redirect(path={"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"})
                   | {"matches": [{"path": {"value": "/v1"}}]}).redirect
    assert prefix.WhichOneof("path_rewrite_specifier") == "regex_rewrite"
    assert prefix.regex_rewrite.pattern.regex == "^/v1(/.*)?$"
    assert not prefix.host_redirect


def headers(kind: str, **changes: Any) -> Manifest:
    field = kind[0].lower() + kind[1:]
    return {"type": kind, field: changes}


OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


def test_header_modifiers() -> None:
    route = build(BACKEND | {"filters": [
        headers("RequestHeaderModifier", set=[{"name": "X-Env", "value": "100%"}],
                add=[{"name": "X-Tag", "value": "%REQ(x)%"}], remove=["X-Debug"]),
        headers("ResponseHeaderModifier", set=[{"name": "Cache-Control", "value": "no"}],
                remove=["Server"])]})
    assert [(o.header.key, o.header.value, o.append_action)
            for o in route.request_headers_to_add] == [
        ("x-env", "100%%", OVERWRITE),  # "%" is literal for Envoy only when doubled
        ("x-tag", "%%REQ(x)%%", APPEND)]
    assert list(route.request_headers_to_remove) == ["x-debug"]
    assert [(o.header.key, o.header.value, o.append_action)
            for o in route.response_headers_to_add] == [("cache-control", "no", OVERWRITE)]
    assert list(route.response_headers_to_remove) == ["server"]


LIMIT = RateLimit(requests=5)
ABORT = FaultInjection(abort=FaultAbort(http_status=503))


@pytest.mark.parametrize(("fault", "rate_limit", "keys"), [
    (None, None, []),
    (ABORT, LIMIT, [FAULT, RATE_LIMIT]),
], ids=["none", "both"])
def test_per_route_policy_configs(fault: FaultInjection | None, rate_limit: RateLimit | None,
                                  keys: list[str]) -> None:
    route = build(BACKEND, fault=fault, rate_limit=rate_limit)
    assert sorted(route.typed_per_filter_config) == sorted(keys)
    if rate_limit is not None:
        config = local_rate_limit_pb2.LocalRateLimit()
        assert route.typed_per_filter_config[RATE_LIMIT].Unpack(config)
        assert config.stat_prefix == "route_ratelimit"


def test_default_route() -> None:
    route = default_route("books.default/default", "outbound|books.default", ABORT,
                          HashKey(cookie="s"))
    assert route.match.prefix == "/"
    assert route.route.cluster == "outbound|books.default"
    assert route.route.retry_policy.retry_on == SAFE_RETRY_ON
    assert route.route.retry_policy.num_retries.value == 2
    assert [p.cookie.name for p in route.route.hash_policy] == ["s"]
    assert list(route.typed_per_filter_config) == [FAULT]


RING_HASH = traffic_policy("lb", to_service(), loadBalancer={
    "algorithm": "RingHash", "hashKey": {"header": "X-User"}})


@pytest.mark.parametrize("manifests", [
    [service("books"), RING_HASH],
    [service("books"), RING_HASH, http_route("r", "books", [rule("books", prefix="/a")])],
], ids=["default route", "HTTPRoute rule"])
def test_ring_hash_policy_reaches_the_routes(manifests: list[Manifest]) -> None:
    snapshot = mesh(1, [], manifests)
    (route,) = routes.service_routes(snapshot.services[BOOKS], snapshot.routes.get(BOOKS, ()))
    assert [p.header.header_name for p in route.route.hash_policy] == ["x-user"]

