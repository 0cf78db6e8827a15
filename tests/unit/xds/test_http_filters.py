"""HTTP filter chain and per-route configs (http_filters.py): fault injection and local rate
limits, switched on per route or per service."""

from __future__ import annotations

import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.type.v3 import percent_pb2

from tulle.model.httproute import HeaderMatch
from tulle.model.policy import FaultAbort, FaultDelay, FaultInjection, FaultMatch, RateLimit
from tulle.xds.generators.http_filters import (
    FAULT,
    GRPC_STATS,
    RATE_LIMIT,
    ROUTER,
    fault_config,
    http_filters,
    local_rate_limit,
    per_route,
)

MILLION = percent_pb2.FractionalPercent.MILLION


def limiter(chain: list[hcm.HttpFilter]) -> local_rate_limit_pb2.LocalRateLimit:
    config = local_rate_limit_pb2.LocalRateLimit()
    [found] = [f for f in chain if f.name == RATE_LIMIT]
    assert found.typed_config.Unpack(config)
    return config


@pytest.mark.parametrize(("service_limit", "optional", "expected"), [
    (None, frozenset(), [GRPC_STATS, ROUTER]),
    (None, frozenset({FAULT}), [FAULT, GRPC_STATS, ROUTER]),
    (None, frozenset({RATE_LIMIT}), [RATE_LIMIT, GRPC_STATS, ROUTER]),
    (None, frozenset({RATE_LIMIT, FAULT}), [FAULT, RATE_LIMIT, GRPC_STATS, ROUTER]),
    (RateLimit(requests=1), frozenset(), [RATE_LIMIT, GRPC_STATS, ROUTER]),
    (RateLimit(requests=1), frozenset({RATE_LIMIT}), [RATE_LIMIT, GRPC_STATS, ROUTER]),
], ids=["bare", "fault", "rate limit", "both", "service limit", "service and route limits"])
def test_chain_holds_what_is_used(service_limit: RateLimit | None, optional: frozenset[str],
                                  expected: list[str]) -> None:
    assert [f.name for f in http_filters(service_limit, optional)] == expected


def test_a_chain_for_route_rate_limits_is_off_until_a_route_switches_it_on() -> None:
    config = limiter(http_filters(None, frozenset({RATE_LIMIT})))
    assert config.stat_prefix == "http_local_rate_limiter"
    assert not config.HasField("token_bucket")


def test_service_rate_limit_is_on_in_the_chain() -> None:
    config = limiter(http_filters(RateLimit(requests=100, interval="1m")))
    assert config.stat_prefix == "inbound_ratelimit"
    assert config.token_bucket.max_tokens == 100
    assert config.token_bucket.fill_interval.seconds == 60


@pytest.mark.parametrize(("limit", "max_tokens", "per_fill", "interval"), [
    (RateLimit(requests=10, burst=25), 25, 10, (1, 0)),
    (RateLimit(requests=3, interval="250ms"), 3, 3, (0, 250_000_000)),
    (RateLimit(requests=1000, interval="1h", burst=1), 1, 1000, (3600, 0)),
], ids=["burst", "fractional interval", "burst below requests"])
def test_token_bucket(limit: RateLimit, max_tokens: int, per_fill: int,
                      interval: tuple[int, int]) -> None:
    bucket = local_rate_limit(limit, "x").token_bucket
    assert bucket.max_tokens == max_tokens
    assert bucket.tokens_per_fill.value == per_fill
    assert (bucket.fill_interval.seconds, bucket.fill_interval.nanos) == interval


def test_rate_limit_is_enabled_and_enforced_with_headers() -> None:
    config = local_rate_limit(RateLimit(requests=1), "route_ratelimit")
    for field in ("filter_enabled", "filter_enforced"):
        runtime = getattr(config, field)
        assert runtime.runtime_key == f"route_ratelimit_{field.removeprefix('filter_')}"
        assert (runtime.default_value.numerator, runtime.default_value.denominator) == (
            1_000_000, MILLION)  # Envoy's default is 0 %: nothing limited
    assert config.enable_x_ratelimit_headers == ratelimit_pb2.DRAFT_VERSION_03


def test_fault_delay_and_abort() -> None:
    config = fault_config(FaultInjection(delay=FaultDelay("1.5s", percent=10),
                                         abort=FaultAbort(503, percent=5)))
    delay, abort = config.delay, config.abort
    assert (delay.fixed_delay.seconds, delay.fixed_delay.nanos) == (1, 500_000_000)
    assert (delay.percentage.numerator, delay.percentage.denominator) == (100_000, MILLION)
    assert abort.http_status == 503
    assert (abort.percentage.numerator, abort.percentage.denominator) == (50_000, MILLION)
    assert list(config.headers) == []


def test_fault_sets_only_what_is_given() -> None:
    config = fault_config(FaultInjection(delay=FaultDelay("2s")))
    assert [f.name for f, _ in config.ListFields()] == ["delay"]
    assert config.delay.percentage.numerator == 1_000_000  # default percent: every request


def test_fault_only_for_matching_headers() -> None:
    config = fault_config(FaultInjection(abort=FaultAbort(500), match=FaultMatch((
        HeaderMatch("X-Chaos", "on"), HeaderMatch("x-user", "test-.*", "RegularExpression")))))
    assert [(h.name, h.string_match.WhichOneof("match_pattern")) for h in config.headers] == [
        ("x-chaos", "exact"), ("x-user", "safe_regex")]


def test_per_route_packs_the_configs() -> None:
    configs = per_route(FaultInjection(abort=FaultAbort(503)), RateLimit(requests=7))
    fault = fault_pb2.HTTPFault()
    assert configs[FAULT].Unpack(fault)
    assert fault.abort.http_status == 503
    limit = local_rate_limit_pb2.LocalRateLimit()
    assert configs[RATE_LIMIT].Unpack(limit)
    assert (limit.stat_prefix, limit.token_bucket.max_tokens) == ("route_ratelimit", 7)
    assert per_route(None, None) == {}

