"""Route rules that never match, and HTTPRoutes that fight over one service.

Callers' sidecars try the matches of every route attached to a service in one order (Gateway
API precedence, as ``tulle.xds.generators.routes`` builds it). A match is dead when an earlier
match selects every request it would; two routes conflict when one request could go to either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from tulle.analysis.analyzers.matching import covers, describe, example, overlap
from tulle.analysis.codes import CONFLICTING_ROUTES, MATCH_NEVER_MATCHES, RULE_NEVER_MATCHES
from tulle.analysis.engine import AnalysisContext
from tulle.model.httproute import HTTPRouteSpec, RouteMatch
from tulle.model.kinds import HTTP_ROUTE
from tulle.model.mesh import route_parents
from tulle.model.meta import ResourceKey, ServiceRef
from tulle.model.paths import match_precedence
from tulle.model.resource import Resource

KINDS = (HTTP_ROUTE,)


@dataclass(frozen=True)
class Entry:
    """One match of one rule, where callers try it."""

    route: ResourceKey
    rule: int
    rule_name: str | None
    index: int
    match: RouteMatch

    @property
    def field(self) -> str:
        return f"spec.rules[{self.rule}].matches[{self.index}]"

    def where(self) -> str:
        rule = f'rule "{self.rule_name}"' if self.rule_name else f"rules[{self.rule}]"
        return f"HTTPRoute {self.route.namespace}/{self.route.name} {rule}"


def match_order(routes: list[Resource]) -> list[Entry]:
    """Every match of these routes (attached to one service) in the order callers try them:
    precedence, then route key, rule and match (the order of service_routes)."""
    entries = []
    for route in sorted(routes, key=lambda r: r.key):
        spec = cast(HTTPRouteSpec, route.spec)
        for r, rule in enumerate(spec.rules):
            for m, match in enumerate(rule.matches):
                entries.append(Entry(route.key, r, rule.name, m, match))
    return sorted(entries, key=lambda e: match_precedence(e.match))  # stable: ties keep order


def _by_parent(ctx: AnalysisContext) -> dict[ServiceRef, list[Resource]]:
    out: dict[ServiceRef, list[Resource]] = {}
    for route in ctx.resources(*KINDS):
        for parent in dict.fromkeys(route_parents(route)):
            out.setdefault(parent, []).append(route)
    return out


def shadowed_rules(ctx: AnalysisContext) -> None:
    for parent, routes in _by_parent(ctx).items():
        entries = match_order(routes)
        dead: dict[tuple[ResourceKey, int], list[tuple[Entry, Entry]]] = {}
        for i, entry in enumerate(entries):
            # A match hidden by another match of its own rule costs nothing: the rule still
            # gets those requests.
            earlier = next((e for e in entries[:i] if (e.route, e.rule) != (entry.route,
                            entry.rule) and covers(e.match, entry.match)), None)
            if earlier is not None:
                dead.setdefault((entry.route, entry.rule), []).append((entry, earlier))
        for (route, rule), hidden in dead.items():
            total = sum(1 for e in entries if (e.route, e.rule) == (route, rule))
            if len(hidden) == total:
                entry, earlier = hidden[0]
                ctx.report(RULE_NEVER_MATCHES, route, f"spec.rules[{rule}]",
                           reason=_reason(parent, hidden))
                continue
            for entry, earlier in hidden:
                ctx.report(MATCH_NEVER_MATCHES, route, entry.field,
                           reason=_reason(parent, [(entry, earlier)]))


def _reason(parent: ServiceRef, hidden: list[tuple[Entry, Entry]]) -> str:
    parts = [f"{earlier.where()} ({describe(earlier.match)}) takes every request of "
             f"{describe(entry.match)}" for entry, earlier in hidden]
    return "; ".join(parts) + f" to {parent.host} first"


def conflicting_routes(ctx: AnalysisContext) -> None:
    for parent, routes in _by_parent(ctx).items():
        if len(routes) < 2:
            continue
        entries = match_order(routes)
        reported: set[frozenset[ResourceKey]] = set()
        for i, entry in enumerate(entries):
            for earlier in entries[:i]:
                pair = frozenset((earlier.route, entry.route))
                if earlier.route == entry.route or pair in reported or \
                        not overlap(earlier.match, entry.match):
                    continue
                reported.add(pair)
                ctx.report(CONFLICTING_ROUTES, entry.route, entry.field,
                           first=_name(earlier.route), second=_name(entry.route),
                           service=parent.host,
                           example=example(earlier.match, entry.match),
                           winner=f"{earlier.where()} ({describe(earlier.match)})")


def _name(key: ResourceKey) -> str:
    return f"{key.namespace}/{key.name}"
