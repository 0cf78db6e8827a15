"""whatif.matching: the rule a request takes, table by table (Envoy's answers on generated
cases are in tests/e2e/test_whatif_matching.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.xds.meshes import http_route, mesh
from tulle.model.meta import ServiceRef
from tulle.whatif.matching import Request, path_matches, rule_for

BOOKS = ServiceRef("default", "books")


@pytest.mark.parametrize(("kind", "value", "path", "expected"), [
    ("Exact", "/a", "/a", True), ("Exact", "/a", "/a/", False), ("Exact", "/a", "/A", False),
    ("PathPrefix", "/a", "/a", True), ("PathPrefix", "/a", "/a/b", True),
    ("PathPrefix", "/a", "/ab", False), ("PathPrefix", "/a/", "/a", True),
    ("PathPrefix", "/", "/anything", True),
    ("RegularExpression", "/a/[0-9]+", "/a/12", True),
    ("RegularExpression", "/a/[0-9]+", "/a/12/x", False),  # the whole path
])
def test_paths(kind: str, value: str, path: str, expected: bool) -> None:
    assert path_matches(kind, value, path) is expected


def rule(name: str, **match: Any) -> dict[str, Any]:
    return {"name": name, "matches": [match] if match else [{}],
            "backendRefs": [{"name": "books"}]}


def taken(rules: list[dict[str, Any]], request: Request) -> str | None:
    snapshot = mesh(1, [], [http_route("r", "books", rules)])
    found = rule_for(snapshot.routes[BOOKS], request)
    return None if found is None else found.rule_name


RULES = [rule("catch-all"),
         rule("prefix", path={"type": "PathPrefix", "value": "/api"}),
         rule("exact", path={"type": "Exact", "value": "/api/v1"}),
         rule("post", path={"type": "PathPrefix", "value": "/api"}, method="POST"),
         rule("header", path={"type": "PathPrefix", "value": "/api"},
              headers=[{"name": "X-User", "value": "alice"}]),
         rule("query", path={"type": "PathPrefix", "value": "/q"},
              queryParams=[{"name": "page", "type": "RegularExpression", "value": "[0-9]+"}])]


@pytest.mark.parametrize(("request_", "expected"), [
    (Request("GET", "/"), "catch-all"),
    (Request("GET", "/api/v1"), "exact"),  # exact before any prefix
    (Request("GET", "/api/v1?x=1"), "exact"),  # the query is not part of the path
    (Request("POST", "/api/x"), "post"),  # a method before headers
    (Request("GET", "/api/x", (("x-user", "alice"),)), "header"),  # names in any case
    # Any one of a header's values (verified on Envoy 1.40).
    (Request("GET", "/api/x", (("x-user", "bob"), ("X-User", "alice"))), "header"),
    (Request("GET", "/api/x", (("x-user", "bob"), ("x-user", "carol"))), "prefix"),
    (Request("GET", "/api/x"), "prefix"),
    (Request("GET", "/q?page=12"), "query"),
    (Request("GET", "/q?page=x&page=1"), "catch-all"),  # the first value only
])
def test_precedence_and_matches(request_: Request, expected: str) -> None:
    assert taken(RULES, request_) == expected


def test_no_rule_is_a_404() -> None:
    assert taken([rule("only", path={"type": "Exact", "value": "/a"})], Request("GET", "/b")) \
        is None
