"""ServiceLevelObjective: what validation refuses (slo.py, references.py), how an SLO resolves,
and the burn-rate arithmetic."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.unit.model.documents import Expected, assert_problems, parse, problems
from tulle.model.meta import ServiceRef
from tulle.model.references import reference_problems
from tulle.model.slo import (
    BURN_ALERTS,
    BURNING,
    BURNING_FAST,
    MEETS,
    NO_TRAFFIC,
    Burn,
    mesh_slos,
    verdict,
    window_text,
)

BOOKS = {"kind": "Service", "name": "books"}


def slo(spec: dict[str, Any], name: str = "books", namespace: str = "shop") -> str:
    return yaml.safe_dump({"apiVersion": "tulle.io/v1alpha1", "kind": "ServiceLevelObjective",
                           "metadata": {"name": name, "namespace": namespace}, "spec": spec})


REFUSED: list[tuple[str, dict[str, Any], list[Expected]]] = [
    ("no objective", {"targetRef": BOOKS}, [("spec", "no objective", "success: {objective")]),
    ("route without a rule", {"targetRef": {"kind": "HTTPRoute", "name": "books"},
                              "success": {"objective": 99}},
     [("spec.targetRef.sectionName", "about one rule", "name the rule")]),
    ("service with a section", {"targetRef": {**BOOKS, "sectionName": "x"},
                                "success": {"objective": 99}},
     [("spec.targetRef.sectionName", "no sections", "remove sectionName")]),
    ("window too short", {"targetRef": BOOKS, "window": "1d", "success": {"objective": 99}},
     [("spec.window", "between 7d and 90d", "28d")]),
    ("window not a duration", {"targetRef": BOOKS, "window": "month",
                               "success": {"objective": 99}},
     [("spec.window", "is not a duration", "units")]),
    ("threshold between bounds", {"targetRef": BOOKS,
                                  "latency": {"threshold": "250ms", "objective": 99}},
     [("spec.latency.threshold", "not a bound", "use 200ms or 300ms")]),
    ("threshold not a duration", {"targetRef": BOOKS,
                                  "latency": {"threshold": "fast", "objective": 99}},
     [("spec.latency.threshold", "is not a duration", "units")]),
]


@pytest.mark.parametrize(("case", "spec", "expected"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(case: str, spec: dict[str, Any], expected: list[Expected]) -> None:
    assert_problems(problems(slo(spec)), expected)


@pytest.mark.parametrize("objective", [100, 0, 100.5, "99.9"])
def test_an_objective_is_a_number_above_0_and_below_100(objective: Any) -> None:
    found = problems(slo({"targetRef": BOOKS, "success": {"objective": objective}}))
    assert [p.field for p in found] == ["spec.success.objective"]


def test_references_name_what_is_missing() -> None:
    on_service, on_route, on_rule = (parse(slo(spec, name=n))[0] for n, spec in (
        ("a", {"targetRef": {"kind": "Service", "name": "bookz"},
               "success": {"objective": 99}}),
        ("b", {"targetRef": {"kind": "HTTPRoute", "name": "nope", "sectionName": "x"},
               "success": {"objective": 99}}),
        ("c", {"targetRef": {"kind": "HTTPRoute", "name": "r", "sectionName": "nope"},
               "success": {"objective": 99}})))
    (route,) = parse("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
                     "metadata: {name: r, namespace: shop}\nspec:\n"
                     "  parentRefs: [{kind: Service, name: books}]\n"
                     "  rules: [{name: search, backendRefs: [{name: books, port: 80}]}]\n")
    proposed = {r.key: r for r in (on_service, on_route, on_rule, route)}
    found = reference_problems([on_service, on_route, on_rule],
                               frozenset({ServiceRef("shop", "books")}), {}, proposed)
    assert [(p.resource, p.field) for p in found] == [
        ("ServiceLevelObjective shop/a", "spec.targetRef.name"),
        ("ServiceLevelObjective shop/b", "spec.targetRef.name"),
        ("ServiceLevelObjective shop/c", "spec.targetRef.sectionName")], found
    assert 'did you mean "books"' in found[0].hint
    assert "routes in shop: r" in found[1].hint
    assert "its named rules: search" in found[2].hint


def test_an_slo_resolves_to_what_the_series_name() -> None:
    resources = parse(slo({"targetRef": BOOKS, "window": "30d", "success": {"objective": 99.9},
                           "latency": {"threshold": "1s", "objective": 99}}) + "---\n" +
                      slo({"targetRef": {"kind": "HTTPRoute", "name": "books",
                                         "sectionName": "v2.canary"},
                           "success": {"objective": 99}}, name="canary"))
    books, canary = mesh_slos((r.key, r.spec) for r in resources)
    assert (books.service, books.route, books.window_s) == (ServiceRef("shop", "books"), None,
                                                            30 * 86400)
    assert [(i.sli, i.threshold_ms) for i in books.indicators] == [("success", None),
                                                                   ("latency", 1000.0)]
    assert abs(books.indicators[0].budget - 0.001) < 1e-12
    assert books.target == "service/books"
    # A rule's dots are "_" in route series (telemetry.schema.rule_key).
    assert (canary.service, canary.route, canary.rule) == (None, "shop/books", "v2_canary")
    assert canary.target == "httproute/books#v2_canary"


def test_the_workbooks_burn_rates_for_30_days() -> None:
    thirty = 30 * 86400
    assert [round(a.factor(thirty), 2) for a in BURN_ALERTS] == [14.4, 6.0, 3.0, 1.0]
    assert [round(a.factor(28 * 86400), 2) for a in BURN_ALERTS] == [13.44, 5.6, 2.8, 0.93]


@pytest.mark.parametrize(("seen", "recent", "expected"), [
    (Burn(0, 0, 0.001), Burn(0, 0, 0.001), NO_TRAFFIC),
    (Burn(1000, 0, 0.001), Burn(100, 0, 0.001), MEETS),
    (Burn(1000, 1, 0.001), Burn(100, 0, 0.001), MEETS),  # exactly the budget
    (Burn(1000, 5, 0.001), Burn(100, 0, 0.001), BURNING),
    (Burn(1000, 20, 0.001), Burn(100, 2, 0.001), BURNING_FAST),
    # Burned fast earlier in the window, stopped in the last minutes: not fast now.
    (Burn(1000, 20, 0.001), Burn(100, 0, 0.001), BURNING),
], ids=["no traffic", "none bad", "at budget", "over budget", "fast", "stopped"])
def test_verdicts(seen: Burn, recent: Burn, expected: str) -> None:
    assert verdict(seen, recent, 28 * 86400) == expected


def test_budget_left_goes_below_zero_once_overspent() -> None:
    over = Burn(1000, 5, 0.001)
    assert (over.ratio, round(over.rate or 0, 6), round(over.budget_left or 0, 6)) == (
        0.005, 5.0, -4.0)
    assert Burn(0, 0, 0.001).budget_left is None


@pytest.mark.parametrize(("seconds", "text"), [(300, "5m"), (7200, "2h"), (86400, "1d"),
                                               (28 * 86400, "28d"), (90, "90s")])
def test_window_text(seconds: float, text: str) -> None:
    assert window_text(seconds) == text
