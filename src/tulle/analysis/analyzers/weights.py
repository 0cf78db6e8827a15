"""Backend weights that probably do not do what was meant.

Every weight 0 is refused at validation (every request would fail), so it never gets here.
"""

from __future__ import annotations

from typing import cast

from tulle.analysis.codes import DUPLICATE_BACKEND, WEIGHTS_NOT_PERCENT, ZERO_WEIGHT_BACKEND
from tulle.analysis.engine import AnalysisContext
from tulle.model.httproute import HTTPRouteSpec
from tulle.model.kinds import HTTP_ROUTE
from tulle.model.meta import ServiceRef
from tulle.model.resource import Resource

KINDS = (HTTP_ROUTE,)
# Weights summing to this close to 100 were most likely meant as percentages.
PERCENT_LOOKALIKE = range(80, 121)


def backend_weights(ctx: AnalysisContext) -> None:
    for route in ctx.resources(*KINDS):
        spec = cast(HTTPRouteSpec, route.spec)
        for r, rule in enumerate(spec.rules):
            if len(rule.backend_refs) > 1:
                _rule(ctx, route, r)


def _rule(ctx: AnalysisContext, route: Resource, r: int) -> None:
    rule = cast(HTTPRouteSpec, route.spec).rules[r]
    base = f"spec.rules[{r}].backendRefs"
    weights = [b.weight for b in rule.backend_refs]
    total = sum(weights)
    if not total:
        return  # a validation error
    refs = [ServiceRef(b.namespace or route.meta.namespace, b.name) for b in rule.backend_refs]
    seen: dict[ServiceRef, int] = {}
    for b, ref in enumerate(refs):
        if ref in seen:
            same = [w for other, w in zip(refs, weights, strict=True) if other == ref]
            if seen[ref] >= 0:
                ctx.report(DUPLICATE_BACKEND, route.key, f"{base}[{b}]", backend=ref.host,
                           count=len(same), weights=" + ".join(map(str, same)),
                           share=_percent(sum(same), total))
                seen[ref] = -1  # once per backend
            continue
        seen[ref] = b
        if weights[b] == 0:
            ctx.report(ZERO_WEIGHT_BACKEND, route.key, f"{base}[{b}].weight", backend=ref.host)
    if total != 100 and total in PERCENT_LOOKALIKE:
        shares = ", ".join(f"{ref.name} {_percent(w, total)}"
                           for ref, w in zip(refs, weights, strict=True))
        ctx.report(WEIGHTS_NOT_PERCENT, route.key, base,
                   weights=" + ".join(map(str, weights)), total=total, shares=shares)


def _percent(part: int, total: int) -> str:
    return f"{100 * part / total:.1f}".removesuffix(".0") + "%"
