"""HTTP filters of the connection managers, and their per-route configuration.

A connection manager's chain is: fault injection and local rate limit where they are used,
gRPC statistics, router. Envoy applies a route's per-filter config (``per_route``) only when
the filter is in the chain, so a listener whose routes inject faults or limit rates carries
those filters (doing nothing by default; the route switches them on), and one whose routes do
not, does not: a request then crosses two filters fewer. A policy that starts or stops using
one changes the listener too (``optional_filters`` in routes.py decides which).
"""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.grpc_stats.v3 import config_pb2 as grpc_stats_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.type.v3 import percent_pb2, token_bucket_pb2
from google.protobuf import wrappers_pb2

from tulle.model.durations import parse_duration
from tulle.model.policy import FaultInjection, RateLimit
from tulle.xds.generators.common import pack, seconds
from tulle.xds.generators.matchers import header_matcher

FAULT = "envoy.filters.http.fault"
RATE_LIMIT = "envoy.filters.http.local_ratelimit"
ROUTER = "envoy.filters.http.router"
GRPC_STATS = "envoy.filters.http.grpc_stats"
# A second local rate limit, for a DryRun TrafficPolicy: its own name, so that it has its own
# bucket, and its own stat prefix (rate_limited there is what it would have refused).
DRY_RUN_RATE_LIMIT = "tulle.dry_run.local_ratelimit"
DRY_RUN_STAT_PREFIX = "inbound_ratelimit_dry_run"


def http_filters(service_rate_limit: RateLimit | None = None,
                 optional: frozenset[str] = frozenset(),
                 dry_run_rate_limit: RateLimit | None = None) -> list[hcm.HttpFilter]:
    """The chain: fault (when ``optional`` holds FAULT), local rate limit (on for a whole
    service when ``service_rate_limit`` is given; off but present for routes to switch on
    when ``optional`` holds RATE_LIMIT), a dry-run rate limit (counts, never refuses; off but
    present for routes when ``optional`` holds DRY_RUN_RATE_LIMIT), gRPC statistics, router."""
    chain = []
    if dry_run_rate_limit is not None:
        # Before the enforced limit: it sees every request the service would get.
        chain.append(hcm.HttpFilter(name=DRY_RUN_RATE_LIMIT, typed_config=pack(
            local_rate_limit(dry_run_rate_limit, DRY_RUN_STAT_PREFIX, enforced=False))))
    elif DRY_RUN_RATE_LIMIT in optional:  # off, for route rules' dry-run limits
        chain.append(hcm.HttpFilter(name=DRY_RUN_RATE_LIMIT, typed_config=pack(
            local_rate_limit_pb2.LocalRateLimit(stat_prefix="http_local_rate_limiter_dry_run"))))
    if FAULT in optional:
        chain.append(hcm.HttpFilter(name=FAULT, typed_config=pack(fault_pb2.HTTPFault())))
    if service_rate_limit is not None:
        chain.append(hcm.HttpFilter(name=RATE_LIMIT, typed_config=pack(
            local_rate_limit(service_rate_limit, "inbound_ratelimit"))))
    elif RATE_LIMIT in optional:
        chain.append(hcm.HttpFilter(name=RATE_LIMIT, typed_config=pack(
            local_rate_limit_pb2.LocalRateLimit(stat_prefix="http_local_rate_limiter"))))
    return [
        *chain,
        # gRPC calls succeed or fail by their grpc-status, which HTTP 200 hides: counted per
        # called cluster (cluster.X.grpc.success|failure), not per method (bounded stats).
        hcm.HttpFilter(name=GRPC_STATS, typed_config=pack(grpc_stats_pb2.FilterConfig(
            stats_for_all_methods=wrappers_pb2.BoolValue(value=False)))),
        hcm.HttpFilter(name=ROUTER, typed_config=pack(router_pb2.Router())),
    ]


def per_route(fault: FaultInjection | None, rate_limit: RateLimit | None,
              dry_run_rate_limit: RateLimit | None = None, dry_run_prefix: str = ""
              ) -> dict[str, Any]:
    """typed_per_filter_config entries for one route. ``dry_run_prefix``: the stat prefix of
    the rule's dry-run limit, which counts per rule (schema.route_dry_run_prefix)."""
    configs: dict[str, Any] = {}
    if fault is not None:
        configs[FAULT] = pack(fault_config(fault))
    if rate_limit is not None:
        configs[RATE_LIMIT] = pack(local_rate_limit(rate_limit, "route_ratelimit"))
    if dry_run_rate_limit is not None:
        configs[DRY_RUN_RATE_LIMIT] = pack(local_rate_limit(
            dry_run_rate_limit, dry_run_prefix or "route_ratelimit_dry_run", enforced=False))
    return configs


def fault_config(fault: FaultInjection) -> fault_pb2.HTTPFault:
    config = fault_pb2.HTTPFault()
    if fault.delay is not None:
        config.delay.CopyFrom(common_fault_pb2.FaultDelay(
            fixed_delay=seconds(parse_duration(fault.delay.fixed_delay) or 0.0),
            percentage=_percent(fault.delay.percent)))
    if fault.abort is not None:
        config.abort.CopyFrom(fault_pb2.FaultAbort(
            http_status=fault.abort.http_status, percentage=_percent(fault.abort.percent)))
    for header in fault.match.headers if fault.match else ():
        config.headers.append(header_matcher(header.name, header.value, header.type))
    return config


def local_rate_limit(limit: RateLimit, stat_prefix: str, enforced: bool = True
                     ) -> local_rate_limit_pb2.LocalRateLimit:
    """A token bucket that is on and enforced (both default to 0 % in Envoy), answering 429
    with x-ratelimit-* headers. ``enforced`` False: on, counting what it would refuse
    (``rate_limited``), refusing nothing (a dry run)."""
    always = base_pb2.RuntimeFractionalPercent(default_value=_percent(100),
                                               runtime_key=f"{stat_prefix}_enabled")
    enforce = base_pb2.RuntimeFractionalPercent(default_value=_percent(100 if enforced else 0),
                                                runtime_key=f"{stat_prefix}_enforced")
    return local_rate_limit_pb2.LocalRateLimit(
        stat_prefix=stat_prefix,
        token_bucket=token_bucket_pb2.TokenBucket(
            max_tokens=limit.burst or limit.requests,
            tokens_per_fill=wrappers_pb2.UInt32Value(value=limit.requests),
            fill_interval=seconds(parse_duration(limit.interval) or 1.0)),
        filter_enabled=always,
        filter_enforced=enforce,
        # A dry run adds no header either: it changes no response.
        enable_x_ratelimit_headers=ratelimit_pb2.DRAFT_VERSION_03 if enforced else
        ratelimit_pb2.OFF,
    )


def _percent(value: float) -> percent_pb2.FractionalPercent:
    # Millionths: fractions like 0.5 % survive.
    return percent_pb2.FractionalPercent(numerator=round(value * 10_000),
                                         denominator=percent_pb2.FractionalPercent.MILLION)
