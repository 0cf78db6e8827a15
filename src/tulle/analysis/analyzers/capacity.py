"""Protection limits below the traffic telemetry sees: rate limits under the observed request
rate, and circuit-breaker (connection pool) limits under the observed concurrency. With files
overlaid (`-f FILE --live`), this checks a new limit against today's traffic before it bites."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import cast

from tulle.analysis.codes import CIRCUIT_BREAKER_BELOW_CONCURRENCY, RATE_LIMIT_BELOW_TRAFFIC
from tulle.analysis.engine import AnalysisContext
from tulle.analysis.traffic import Traffic, requests
from tulle.model.durations import parse_duration
from tulle.model.httproute import HTTPRouteSpec
from tulle.model.kinds import HTTP_ROUTE, SERVICE, TRAFFIC_POLICY
from tulle.model.mesh import route_parents
from tulle.model.meta import ResourceKey
from tulle.model.policies import resolve
from tulle.model.policy import RateLimit
from tulle.telemetry.schema import rule_key

KINDS = (SERVICE, HTTP_ROUTE, TRAFFIC_POLICY)


def _policy_key(source: str) -> ResourceKey:
    """"TrafficPolicy ns/name" (as policies record where a setting came from) -> its key."""
    kind, _, rest = source.partition(" ")
    namespace, _, name = rest.partition("/")
    return ResourceKey(kind, namespace, name)


def _allowed(limit: RateLimit) -> float:
    return limit.requests / (parse_duration(limit.interval) or 1.0)


def _rate(value: float) -> str:
    return f"{value:.3g}"


def rate_limits(ctx: AnalysisContext) -> None:
    traffic = ctx.traffic()
    resources = ctx.resources(*KINDS)
    resolved = resolve(resources)
    for ref, policy in sorted(resolved.services.items()):
        limit = policy.rate_limit
        source = policy.source_of("rate_limit")
        if limit is None or source is None:
            continue
        per_node: dict[str, dict[str, int]] = {}
        for node, service, values in traffic.inbound():
            if service == ref:
                totals = per_node.setdefault(node, {})
                totals["rq"] = totals.get("rq", 0) + requests(values)
                totals["limited"] = totals.get("limited", 0) + values.get("limited", 0)
        if not per_node:
            continue
        node, totals = max(per_node.items(), key=lambda item: (item[1]["rq"], item[0]))
        _check_rate(ctx, traffic, _policy_key(source), limit, totals["rq"],
                    totals["limited"], f"instance {traffic.nodes[node].name} of {ref.host}",
                    "receives", "per instance")
    routes = {r.key: r for r in resources if r.info is HTTP_ROUTE}
    for (route_key, index), rule_policy in sorted(resolved.rules.items()):
        limit = rule_policy.rate_limit
        source = dict(rule_policy.sources).get("rate_limit")
        if limit is None or source is None:
            continue
        route = routes[route_key]
        rule = cast(HTTPRouteSpec, route.spec).rules[index]
        label = f"{route_key.namespace}/{route_key.name}"
        busiest: tuple[int, str] = (0, "")
        for parent in route_parents(route):
            for node in traffic.callers_of_rule(parent, label, rule_key(index, rule.name)):
                count = requests(traffic.route_rule(node, parent, label,
                                                    rule_key(index, rule.name)))
                busiest = max(busiest, (count, node))
        count, node = busiest
        if count:
            info = traffic.nodes.get(node)
            who = f"caller {info.name if info else node}"
            scope = f"per caller, on HTTPRoute {label} rule {rule.name or index}"
            _check_rate(ctx, traffic, _policy_key(source), limit, count, 0, who, "sends",
                        scope)


def _check_rate(ctx: AnalysisContext, traffic: Traffic, policy: ResourceKey, limit: RateLimit,
                count: int, limited: int, who: str, verb: str, scope: str) -> None:
    observed = count / traffic.seconds
    allowed = _allowed(limit)
    if observed <= allowed:
        return
    evidence = f"; {limited} already got 429 in that window" if limited else ""
    ctx.report(RATE_LIMIT_BELOW_TRAFFIC, policy, "spec.rateLimit.requests", who=who, verb=verb,
               observed=_rate(observed), window=traffic.describe_window(),
               allowed=_rate(allowed), scope=scope,
               share=f"{100 * (1 - allowed / observed):.0f}%", evidence=evidence)


def circuit_breakers(ctx: AnalysisContext) -> None:
    traffic = ctx.traffic()
    resolved = resolve(ctx.resources(*KINDS))
    for ref, policy in sorted(resolved.services.items()):
        pool = policy.connection_pool
        source = policy.source_of("connection_pool")
        if pool is None or source is None:
            continue
        # setting -> (observed, caller, overflows)
        worst: dict[str, tuple[float, str, int]] = {}
        for node, called, values in traffic.outbound():
            if called != ref:
                continue
            observed = _concurrency(traffic, traffic.outbound_gauges(node, ref), values)
            overflows = values.get("overflow", 0) + values.get("cx_overflow", 0)
            for setting, limit in (("maxConnections", pool.max_connections),
                                   ("maxRequests", pool.max_requests)):
                value = observed[setting]
                if limit is not None and value > limit and \
                        value > worst.get(setting, (0.0, "", 0))[0]:
                    worst[setting] = (value, node, overflows)
        for setting, (value, node, overflows) in sorted(worst.items()):
            info = traffic.nodes.get(node)
            limit = getattr(pool, _SNAKE[setting])
            ctx.report(CIRCUIT_BREAKER_BELOW_CONCURRENCY, _policy_key(source),
                       f"spec.connectionPool.{setting}", caller=info.name if info else node,
                       observed=f"{value:.3g}", what=_WHAT[setting], service=ref.host,
                       window=traffic.describe_window(), setting=setting, limit=limit,
                       suggested=math.ceil(value * 2),
                       evidence=f"; {overflows} request(s) already overflowed"
                       if overflows else "")


_SNAKE = {"maxConnections": "max_connections", "maxRequests": "max_requests"}
_WHAT = {"maxConnections": "open connections", "maxRequests": "requests in flight on average"}


def _concurrency(traffic: Traffic, gauges: Mapping[str, int], values: Mapping[str, int]
                 ) -> dict[str, float]:
    """What one caller needs of each limit. Requests in flight follow from Little's law: the
    time all requests spent, over the window. Connections are the caller's open ones now
    (pooled idle connections count against maxConnections too). Requests waiting for a
    connection cannot be told from this data, so maxPendingRequests is not checked."""
    in_flight = values.get("latsum", 0) / 1000 / traffic.seconds
    return {"maxConnections": float(gauges.get("cx", 0)), "maxRequests": in_flight}
