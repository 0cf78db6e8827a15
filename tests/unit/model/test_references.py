"""References across resources: every parent and backend must name a known service."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.model.documents import parse, route_yaml
from tests.unit.model.workloads import workload
from tulle.model.meta import ResourceKey, ServiceRef
from tulle.model.references import known_services, reference_problems

SHOP_BOOKS = ServiceRef("shop", "books")
KNOWN = frozenset({SHOP_BOOKS, ServiceRef("shop", "authors"), ServiceRef("lib", "catalog")})
ROUTE_KEY = ResourceKey("HTTPRoute", "shop", "r")


def route(parent: dict[str, Any], *backends: dict[str, Any]) -> str:
    return route_yaml({"parentRefs": [parent], "rules": [{"backendRefs": list(backends)}]})


# (case, route YAML (namespace shop), expected (field, message, hint parts))
CASES: list[tuple[str, str, list[tuple[str, str, list[str]]]]] = [
    ("all known, including another namespace named explicitly",
     route({"name": "books"}, {"name": "authors"}, {"name": "catalog", "namespace": "lib"}), []),
    ("misspelt backend in the route's namespace",
     route({"name": "books"}, {"name": "bookz"}),
     [("spec.rules[0].backendRefs[0].name", 'unknown service "bookz" in namespace "shop"',
       ['did you mean "books"? ', "known services in shop: authors, books. ",
        "Apply a Service named bookz in namespace shop, or start a workload with "
        "`tulle run --service bookz --namespace shop`"])]),
    ("unknown parent", route({"name": "shelves"}, {"name": "books"}),
     [("spec.parentRefs[0].name", 'unknown service "shelves" in namespace "shop"',
       ["known services in shop: authors, books. ", "`tulle run --service shelves"])]),
    ("backend left in the route's namespace but living in another",
     route({"name": "books"}, {"name": "books"}, {"name": "catalog"}),
     [("spec.rules[0].backendRefs[1].name", 'unknown service "catalog" in namespace "shop"',
       ['"catalog" exists in namespace lib: set spec.rules[0].backendRefs[1].namespace. '])]),
    ("explicit namespace with no services at all",
     route({"name": "books", "namespace": "nowhere"}, {"name": "books"}),
     [("spec.parentRefs[0].name", 'unknown service "books" in namespace "nowhere"',
       ['"books" exists in namespace shop: set spec.parentRefs[0].namespace. ',
        "--namespace nowhere`"])]),
    ("parents before backends, backends in rule order", route_yaml({
        "parentRefs": [{"name": "x1"}, {"name": "books"}, {"name": "x2"}],
        "rules": [{"backendRefs": [{"name": "books"}, {"name": "y1"}]},
                  {"backendRefs": [{"name": "y2"}]}]}),
     [("spec.parentRefs[0].name", '"x1"', []), ("spec.parentRefs[2].name", '"x2"', []),
      ("spec.rules[0].backendRefs[1].name", '"y1"', []),
      ("spec.rules[1].backendRefs[0].name", '"y2"', [])]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_reference_problems(text: str, expected: list[tuple[str, str, list[str]]]) -> None:
    batch = parse(text)
    found = reference_problems(batch, KNOWN, {ROUTE_KEY: "routes.yaml:3"})
    rendered = "\n".join(p.render() for p in found)
    assert len(found) == len(expected), rendered
    for problem, (field, message, hint_parts) in zip(found, expected, strict=True):
        assert problem.field == field, rendered
        assert message in problem.message, rendered
        for part in hint_parts:
            assert part in problem.hint, rendered
        assert (problem.source, problem.resource) == ("routes.yaml:3", "HTTPRoute shop/r")


def test_no_guess_when_nothing_is_close() -> None:
    (problem,) = reference_problems(parse(route({"name": "books"}, {"name": "zzz"})), KNOWN, {})
    assert not problem.hint.startswith("did you mean")
    assert problem.source == ""


def test_services_are_not_checked_and_routes_are_not_services() -> None:
    batch = parse("""\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books, namespace: shop}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: shop}
spec:
  parentRefs: [{name: books}]
  rules: [{backendRefs: [{name: reviews}]}]
""")
    known = known_services(batch, [])
    assert known == {SHOP_BOOKS}
    (problem,) = reference_problems(batch, known, {})
    assert problem.field == "spec.rules[0].backendRefs[0].name"


def test_known_services_come_from_resources_and_workloads() -> None:
    (service,) = parse("apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {name: a}\n")
    known = known_services([service], [ServiceRef("shop", "books"), ServiceRef("shop", "books")])
    assert known == {ServiceRef("default", "a"), SHOP_BOOKS}


def test_service_known_only_from_a_workload_satisfies_a_route() -> None:
    batch = parse(route({"name": "books"}, {"name": "books"}))
    assert reference_problems(batch, known_services([], []), {})
    from_workload = known_services([], [workload("books-1", "books", namespace="shop")
                                        .service_ref])
    assert reference_problems(batch, from_workload, {}) == []
