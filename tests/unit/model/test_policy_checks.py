"""TrafficPolicy checks beyond the schema (policy_checks.py): which settings fit which target,
durations Envoy accepts, hash keys and fault matches."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.model.documents import Expected, assert_problems, parse, problems
from tests.unit.model.traffic import policy_yaml, to_route, to_service, traffic_policy
from tulle.model.durations import DURATION_HINT

TO_SERVICE = [to_service()]
LIMIT = {"requests": 10}
FAULT = {"abort": {"httpStatus": 503}}
ONE_KEY = "set one of header, cookie or sourceIP: true"
TO_BACKEND = "target the route's backend Service in a separate TrafficPolicy"


def on_service(**settings: Any) -> str:
    return policy_yaml({"targetRefs": TO_SERVICE} | settings)


def on_route(*targets: dict[str, Any], **settings: Any) -> str:
    return policy_yaml({"targetRefs": list(targets) or [to_route()]} | settings)


def ring_hash(**key: Any) -> str:
    return on_service(loadBalancer={"algorithm": "RingHash", "hashKey": key})


# (case, YAML, expected problems in order)
REFUSED: list[tuple[str, str, list[Expected]]] = [
    ("sets nothing", on_service(),
     [("spec", "the policy sets nothing", "add connectionPool, rateLimit")]),
    # Targets.
    ("route target without group", on_route({"kind": "HTTPRoute", "name": "r"},
                                            rateLimit=LIMIT),
     [("spec.targetRefs[0].group", "an HTTPRoute target needs group gateway.networking.k8s.io",
       "")]),
    ("service targets: group, sectionName", policy_yaml({
        "targetRefs": [to_service(), to_service("b", group="gateway.networking.k8s.io",
                                                sectionName="x")],
        "rateLimit": LIMIT}),
     [("spec.targetRefs[1].group", 'a Service target needs group "" (core)', ""),
      ("spec.targetRefs[1].sectionName", "sectionName selects a rule of an HTTPRoute",
       "remove it, or target the HTTPRoute")]),
    ("service settings on a route", on_route(
        connectionPool={"maxConnections": 1}, loadBalancer={}, timeouts={"idle": "1m"},
        rateLimit=LIMIT),
     [("spec.connectionPool", "connectionPool applies to a Service, not to an HTTPRoute",
       TO_BACKEND),
      ("spec.loadBalancer", "loadBalancer applies to a Service, not to an HTTPRoute",
       TO_BACKEND),
      ("spec.timeouts", "timeouts applies to a Service, not to an HTTPRoute", TO_BACKEND)]),
    # Load balancing.
    ("RingHash without a key", on_service(loadBalancer={"algorithm": "RingHash"}),
     [("spec.loadBalancer.hashKey", "RingHash needs exactly one hash key", ONE_KEY)]),
    ("RingHash with sourceIP false", ring_hash(sourceIP=False),
     [("spec.loadBalancer.hashKey", "RingHash needs exactly one hash key", ONE_KEY)]),
    ("hash key without RingHash", on_service(loadBalancer={"algorithm": "LeastRequest",
                                                           "hashKey": {"cookie": "c"}}),
     [("spec.loadBalancer.hashKey", "a hash key is used only with RingHash",
       "set algorithm: RingHash, or remove hashKey")]),
    # Fault injection.
    ("fault injecting nothing", on_service(faultInjection={"match": {"headers": [
        {"name": "x-chaos", "value": "on"}]}}),
     [("spec.faultInjection", "set delay, abort, or both", "")]),
    ("fault match header checks", on_service(faultInjection=FAULT | {"match": {"headers": [
        {"name": "x-ok", "value": "("},
        {"name": "x/bad", "value": "(", "type": "RegularExpression"}]}}),
     [("spec.faultInjection.match.headers[1].name", '"x/bad" is not a valid header name', ""),
      ("spec.faultInjection.match.headers[1].value", "does not compile (RE2, as in Envoy)",
       "check the pattern's syntax (RE2)")]),
    # Durations.
    ("rate limit refill under 50ms", on_service(rateLimit=LIMIT | {"interval": "49ms"}),
     [("spec.rateLimit.interval", "must be at least 50ms, got 49ms",
       "Envoy refills token buckets at most every 50 ms; raise requests instead")]),
    ("durations of 0", on_service(outlierDetection={"interval": "0ms",
                                                    "baseEjectionTime": "0s"},
                                  rateLimit=LIMIT | {"interval": "0s"}),
     [("spec.outlierDetection.interval", "must be more than 0", ""),
      ("spec.outlierDetection.baseEjectionTime", "must be more than 0", ""),
      ("spec.rateLimit.interval", "must be more than 0", "")]),  # not also "at least 50ms"
    ("connect timeout 0", on_service(timeouts={"connect": "0s", "idle": "0s"}),
     [("spec.timeouts.connect", "must be more than 0", "")]),
    ("durations without units", on_service(
        timeouts={"idle": "300"}, faultInjection={"delay": {"fixedDelay": "2 s"}}),
     [("spec.faultInjection.delay.fixedDelay", '"2 s" is not a duration', DURATION_HINT),
      ("spec.timeouts.idle", '"300" is not a duration', DURATION_HINT)]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_policy_refused(text: str, expected: list[Expected]) -> None:
    found = problems(text)
    assert_problems(found, expected)
    assert {p.resource for p in found} == {"TrafficPolicy shop/p"}


DOCUMENTED = on_service(
    connectionPool={"maxConnections": 100, "maxPendingRequests": 50, "maxRequests": 200},
    retryBudget={"percent": 20, "minRetryConcurrency": 3},
    outlierDetection={"consecutive5xx": 5, "interval": "10s", "baseEjectionTime": "30s",
                      "maxEjectionPercent": 50},
    loadBalancer={"algorithm": "RingHash", "hashKey": {"header": "x-user"}},
    rateLimit={"requests": 100, "interval": "1s", "burst": 200},
    faultInjection={"delay": {"fixedDelay": "2s", "percent": 10},
                    "abort": {"httpStatus": 503, "percent": 5},
                    "match": {"headers": [{"name": "x-chaos", "value": "on"}]}},
    timeouts={"connect": "1s", "idle": "5m"})


@pytest.mark.parametrize("text", [
    DOCUMENTED,
    on_route(to_route(), to_route("r2", "fast"), rateLimit=LIMIT, faultInjection=FAULT),
    on_service(rateLimit=LIMIT | {"interval": "50ms"}),
], ids=["the documented example", "route targets", "50ms refill"])
def test_policy_accepted(text: str) -> None:
    assert len(parse(text)) == 1



def test_zero_fault_delay_is_refused() -> None:
    found = problems(on_service(faultInjection={"delay": {"fixedDelay": "0s"}}))
    assert [p.field for p in found] == ["spec.faultInjection.delay.fixedDelay"]


@pytest.mark.parametrize(("case", "text", "expected"), [
    ("dry run of more than a rate limit", on_service(
        mode="DryRun", rateLimit=LIMIT, connectionPool={"maxConnections": 1}),
     [("spec.mode", "a dry run applies to a rateLimit alone, not to connectionPool",
       "a TrafficPolicy of its own")]),
    ("dry run without a rate limit", on_service(mode="DryRun", faultInjection=FAULT),
     [("spec.mode", "a dry run applies to a rateLimit alone, not to faultInjection",
       "a TrafficPolicy of its own")]),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "")
def test_dry_run_refused(case: str, text: str, expected: list[Expected]) -> None:
    assert_problems(problems(text), expected)


def test_a_route_rules_limit_can_run_in_dry_run() -> None:
    [policy] = parse(on_route(mode="DryRun", rateLimit=LIMIT))
    assert policy.spec.mode == "DryRun"


def test_a_dry_run_limit_resolves_apart_from_the_enforced_one() -> None:
    from tests.unit.xds.meshes import parse as parse_manifests
    from tulle.model.meta import ServiceRef
    from tulle.model.policies import resolve

    trial = traffic_policy("trial", to_service(), mode="DryRun", rateLimit=LIMIT)
    enforced = traffic_policy("enforced", to_service(), rateLimit={"requests": 99})
    books = resolve(parse_manifests(trial, enforced)).services[ServiceRef("default", "books")]
    assert books.rate_limit is not None and books.rate_limit.requests == 99
    assert books.dry_run_rate_limit is not None and books.dry_run_rate_limit.requests == 10
