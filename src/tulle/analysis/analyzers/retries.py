"""Retries that cannot happen (they do not fit in the request timeout) and retries that
multiply across hops (A retries B, B retries C: C sees the product)."""

from __future__ import annotations

import math
from typing import cast

from tulle.analysis.codes import RETRIES_EXCEED_TIMEOUT, RETRY_AMPLIFICATION
from tulle.analysis.engine import AnalysisContext
from tulle.analysis.traffic import requests
from tulle.model.durations import parse_duration
from tulle.model.httproute import HTTPRouteSpec, RouteRule
from tulle.model.kinds import HTTP_ROUTE
from tulle.model.mesh import route_parents
from tulle.model.meta import ResourceKey, ServiceRef
from tulle.model.resource import Resource

KINDS = (HTTP_ROUTE,)
ENVOY_ROUTE_TIMEOUT_S = 15.0  # a route without timeouts.request
# Above this many attempts reaching one service for one original request, retries are a
# load amplifier rather than a cure.
AMPLIFICATION_LIMIT = 10
MAX_HOPS = 8


def retry_timeouts(ctx: AnalysisContext) -> None:
    for route in ctx.resources(*KINDS):
        spec = cast(HTTPRouteSpec, route.spec)
        for r, rule in enumerate(spec.rules):
            _rule_timeouts(ctx, route, r, rule)


def _rule_timeouts(ctx: AnalysisContext, route: Resource, r: int, rule: RouteRule) -> None:
    if rule.retry is None or not rule.retry.attempts or rule.timeouts is None:
        return
    per_try = parse_duration(rule.timeouts.backend_request or "")
    if not per_try:
        return  # without a per-try timeout each attempt may take the whole request
    if rule.timeouts.request is None:
        timeout, origin = ENVOY_ROUTE_TIMEOUT_S, " (Envoy's default: timeouts.request is not set)"
    else:
        timeout, origin = parse_duration(rule.timeouts.request) or 0.0, ""
        if not timeout:
            return  # "0s": no limit
    attempts = rule.retry.attempts + 1
    needed = attempts * per_try
    if needed <= timeout + 1e-9:
        return
    fit = max(1, math.floor(timeout / per_try + 1e-9))
    ctx.report(RETRIES_EXCEED_TIMEOUT, route.key, f"spec.rules[{r}].retry.attempts",
               attempts=attempts, per_try=_seconds(per_try), needed=_seconds(needed),
               timeout=_seconds(timeout), timeout_origin=origin, fit=fit,
               retries_fit=fit - 1)


def _seconds(value: float) -> str:
    return f"{value * 1000:g}ms" if value < 1 else f"{value:g}s"


def retry_amplification(ctx: AnalysisContext) -> None:
    traffic = ctx.traffic()
    attempts = _attempts_by_service(ctx.resources(*KINDS))
    graph: dict[ServiceRef, set[ServiceRef]] = {}
    for node, called, values in traffic.outbound():
        caller = traffic.service_of(node)
        if caller is not None and caller != called and requests(values):
            graph.setdefault(caller, set()).add(called)
    worst: dict[tuple[ResourceKey, int], tuple[int, list[ServiceRef]]] = {}

    def walk(path: list[ServiceRef], total: int) -> None:
        for called in sorted(graph.get(path[-1], ())):
            if called in path or len(path) > MAX_HOPS:
                continue
            count, where = attempts.get(called, (1, None))
            product = total * count
            if product > AMPLIFICATION_LIMIT and len(path) >= 2 and where is not None \
                    and product > worst.get(where, (0, []))[0]:
                worst[where] = (product, [*path, called])
            walk([*path, called], product)

    for start in sorted(graph):
        walk([start], 1)
    for (route, rule), (total, path) in sorted(worst.items()):
        factors = " x ".join(f"{attempts.get(s, (1, None))[0]} at {s.host}" for s in path[1:])
        ctx.report(RETRY_AMPLIFICATION, route, f"spec.rules[{rule}].retry.attempts",
                   path=" -> ".join(s.host for s in path), service=path[-1].host,
                   total=total, factors=factors, limit=AMPLIFICATION_LIMIT)


def _attempts_by_service(routes: list[Resource]
                         ) -> dict[ServiceRef, tuple[int, tuple[ResourceKey, int] | None]]:
    """The most attempts a caller makes per request to each service (1 + retry.attempts of
    its routes' most retrying rule), and that rule. The retries every route makes on
    connection failures alone are left out: they do not repeat a request a service saw."""
    out: dict[ServiceRef, tuple[int, tuple[ResourceKey, int] | None]] = {}
    for route in routes:
        spec = cast(HTTPRouteSpec, route.spec)
        for r, rule in enumerate(spec.rules):
            if rule.retry is None:
                continue
            count = rule.retry.attempts + 1
            for parent in route_parents(route):
                if count > out.get(parent, (1, None))[0]:
                    out[parent] = (count, (route.key, r))
    return out
