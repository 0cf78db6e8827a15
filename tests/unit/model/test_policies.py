"""Effective TrafficPolicy settings (policies.resolve): per service and per route rule, the
first policy by (namespace, name) wins each setting, later ones are conflicts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.model.traffic import Manifest, to_route, to_service, traffic_policy
from tests.unit.xds.meshes import http_route, parse, rule
from tulle.model.kinds import HTTP_ROUTE
from tulle.model.meta import ResourceKey, ServiceRef
from tulle.model.policies import Conflict, ResolvedPolicies, resolve
from tulle.model.policy import ConnectionPool, FaultAbort, FaultInjection, RateLimit

BOOKS = ServiceRef("default", "books")
ROUTE = ResourceKey(HTTP_ROUTE.kind, "default", "r")
POOL = {"maxConnections": 10}
LIMIT = {"requests": 5}
ABORT = {"abort": {"httpStatus": 503}}
# Route r on books: rule 0 "fast", rule 1 unnamed, rule 2 "slow".
BOOKS_ROUTE = http_route("r", "books", [rule("books", prefix="/a") | {"name": "fast"},
                                        rule("books", prefix="/b"),
                                        rule("books", prefix="/c") | {"name": "slow"}])


def resolved(*manifests: Manifest) -> ResolvedPolicies:
    return resolve(parse(*manifests))


def test_a_service_gets_each_setting_with_its_source() -> None:
    result = resolved(traffic_policy("p", to_service(), connectionPool=POOL, rateLimit=LIMIT,
                                     faultInjection=ABORT))
    policy = result.services[BOOKS]
    assert policy.connection_pool == ConnectionPool(max_connections=10)
    assert policy.rate_limit == RateLimit(requests=5)
    assert policy.fault_injection == FaultInjection(abort=FaultAbort(http_status=503))
    assert policy.load_balancer is None
    assert policy.source_of("connection_pool") == "TrafficPolicy default/p"
    assert policy.source_of("load_balancer") is None
    assert result.rules == {}
    assert result.conflicts == []


@pytest.mark.parametrize(("policy_namespace", "target", "expected"), [
    ("shop", to_service(), ServiceRef("shop", "books")),
    ("shop", to_service(namespace="default"), BOOKS),
], ids=["the policy's namespace by default", "explicit namespace"])
def test_target_namespace(policy_namespace: str, target: dict[str, Any],
                          expected: ServiceRef) -> None:
    result = resolved(traffic_policy("p", target, namespace=policy_namespace, rateLimit=LIMIT))
    assert list(result.services) == [expected]


def test_first_policy_by_namespace_then_name_wins() -> None:
    # Declared in reverse order: resolution does not depend on the order of the batch.
    result = resolved(
        traffic_policy("a", to_service(namespace="default"), namespace="zeta",
                       connectionPool={"maxConnections": 3}),
        traffic_policy("b", to_service(), connectionPool={"maxConnections": 2}),
        traffic_policy("a", to_service(), connectionPool={"maxConnections": 1},
                       rateLimit=LIMIT),
    )
    policy = result.services[BOOKS]
    assert policy.connection_pool == ConnectionPool(max_connections=1)
    assert policy.sources == (("connection_pool", "TrafficPolicy default/a"),
                              ("rate_limit", "TrafficPolicy default/a"))
    assert result.conflicts == [
        Conflict("connection_pool", "Service default/books", "TrafficPolicy default/a",
                 "TrafficPolicy default/b"),
        Conflict("connection_pool", "Service default/books", "TrafficPolicy default/a",
                 "TrafficPolicy zeta/a"),
    ]


def test_different_settings_merge_without_conflict() -> None:
    result = resolved(traffic_policy("a", to_service(), connectionPool=POOL),
                      traffic_policy("b", to_service(), rateLimit=LIMIT))
    policy = result.services[BOOKS]
    assert (policy.connection_pool, policy.rate_limit) == (ConnectionPool(max_connections=10),
                                                           RateLimit(requests=5))
    assert policy.source_of("rate_limit") == "TrafficPolicy default/b"
    assert result.conflicts == []


@pytest.mark.parametrize(("target", "rules"), [
    (to_route(), [0, 1, 2]),
    (to_route(section="slow"), [2]),
    (to_route("nosuch"), []),  # reported by the reference checks, not here
], ids=["whole route", "one rule by name", "unknown route"])
def test_route_targets_select_rules(target: dict[str, Any], rules: list[int]) -> None:
    result = resolved(BOOKS_ROUTE, traffic_policy("p", target, rateLimit=LIMIT))
    assert sorted(index for _, index in result.rules) == rules
    assert {key for key, _ in result.rules} <= {ROUTE}
    assert all(p.rate_limit == RateLimit(requests=5) for p in result.rules.values())
    assert BOOKS not in result.services  # a route policy is not a service policy


def test_rule_policies_merge_and_conflict_per_rule() -> None:
    result = resolved(BOOKS_ROUTE,
                      traffic_policy("a", to_route(section="fast"), rateLimit=LIMIT),
                      traffic_policy("b", to_route(), rateLimit={"requests": 9},
                                     faultInjection=ABORT))
    fast, plain = result.rules[(ROUTE, 0)], result.rules[(ROUTE, 1)]
    assert fast.rate_limit == RateLimit(requests=5)
    assert fast.fault_injection == FaultInjection(abort=FaultAbort(http_status=503))
    assert dict(fast.sources) == {"rate_limit": "TrafficPolicy default/a",
                                  "fault_injection": "TrafficPolicy default/b"}
    assert plain.rate_limit == RateLimit(requests=9)
    assert result.conflicts == [Conflict("rate_limit", "HTTPRoute default/r rule fast",
                                         "TrafficPolicy default/a", "TrafficPolicy default/b")]


def test_a_policy_does_not_conflict_with_itself() -> None:
    result = resolved(BOOKS_ROUTE, traffic_policy("p", to_route(), to_route(section="fast"),
                                                  rateLimit=LIMIT))
    assert result.conflicts == []


def test_a_dry_run_on_a_rule_is_its_dry_run_limit_beside_an_enforced_one() -> None:
    result = resolved(BOOKS_ROUTE,
                      traffic_policy("a-enforced", to_route("r", "fast"), rateLimit=LIMIT),
                      traffic_policy("b-trial", to_route("r", "fast"), mode="DryRun",
                                     rateLimit={"requests": 2}))
    fast = result.rules[(ROUTE, 0)]
    assert fast.rate_limit == RateLimit(requests=5)
    assert fast.dry_run_rate_limit == RateLimit(requests=2)
    assert dict(fast.sources)["dry_run_rate_limit"] == "TrafficPolicy default/b-trial"
    assert result.conflicts == []
    assert (ROUTE, 1) not in result.rules
