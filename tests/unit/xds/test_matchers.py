"""Gateway API matches to Envoy matchers (matchers.py)."""

from __future__ import annotations

import pytest

from tulle.model.httproute import HeaderMatch, PathMatch, QueryParamMatch, RouteMatch
from tulle.xds.generators.matchers import (
    full_path_rewrite,
    header_matcher,
    path_match,
    prefix_rewrite_regex,
    route_match,
)


@pytest.mark.parametrize(("kind", "value", "field", "envoy_value"), [
    ("Exact", "/books/", "path", "/books/"),  # an exact path keeps its trailing slash
    ("PathPrefix", "/", "prefix", "/"),
    ("PathPrefix", "/books", "path_separated_prefix", "/books"),
    ("PathPrefix", "/books/", "path_separated_prefix", "/books"),
    ("RegularExpression", "/books/[0-9]+", "safe_regex", "/books/[0-9]+"),
])
def test_path_match(kind: str, value: str, field: str, envoy_value: str) -> None:
    match = path_match(PathMatch(kind, value))  # type: ignore[arg-type]
    assert match.WhichOneof("path_specifier") == field
    got = match.safe_regex.regex if field == "safe_regex" else getattr(match, field)
    assert got == envoy_value


@pytest.mark.parametrize(("kind", "field"), [("Exact", "exact"),
                                             ("RegularExpression", "safe_regex")])
def test_header_matcher(kind: str, field: str) -> None:
    matcher = header_matcher("X-User", "Bob.*", kind)
    assert matcher.name == "x-user"  # Envoy keeps header names in lower case
    string_match = matcher.string_match
    assert string_match.WhichOneof("match_pattern") == field
    assert (string_match.exact if field == "exact" else string_match.safe_regex.regex) == "Bob.*"


def test_route_match_headers_method_and_queries() -> None:
    match = route_match(RouteMatch(
        path=PathMatch("Exact", "/search"),
        headers=(HeaderMatch("X-Tenant", "acme"),),
        query_params=(QueryParamMatch("Page", "[0-9]+", "RegularExpression"),),
        method="POST"))
    assert match.path == "/search"
    assert [(h.name, h.string_match.exact) for h in match.headers] == [
        ("x-tenant", "acme"), (":method", "POST")]
    (query,) = match.query_parameters
    assert query.name == "Page"  # query parameter names are case-sensitive: kept as written
    assert query.string_match.safe_regex.regex == "[0-9]+"



@pytest.mark.parametrize(("prefix", "replacement", "pattern", "substitution"), [
    ("/a.b/", "/c\\d/", "^/a\\.b(/.*)?$", "/c\\\\d\\1"),
    ("/books/", "/", "^/books/?(.*)$", "/\\1"),
], ids=["escaped", "to the root"])
def test_prefix_rewrite_regex(prefix: str, replacement: str, pattern: str,
                              substitution: str) -> None:
    rewrite = prefix_rewrite_regex(prefix, replacement)
    assert (rewrite.pattern.regex, rewrite.substitution) == (pattern, substitution)


def test_full_path_rewrite() -> None:
    rewrite = full_path_rewrite("/a\\1")
    # A backslash in the path is not a group reference for Envoy.
    assert (rewrite.pattern.regex, rewrite.substitution) == ("^.*$", "/a\\\\1")
