"""Gateway API path semantics (paths.py): whole-segment prefixes, prefix rewrites as the RE2
substitutions Envoy applies, and the precedence of matches."""

from __future__ import annotations

from typing import Any

import pytest
import re2

from tulle.model.httproute import HeaderMatch, PathMatch, QueryParamMatch, RouteMatch
from tulle.model.paths import match_precedence, prefix_rewrite, segment_prefix


@pytest.mark.parametrize(("value", "expected"), [
    ("/books//", "/books"),
    ("/", "/"),
    ("//", "/"),
])
def test_segment_prefix(value: str, expected: str) -> None:
    assert segment_prefix(value) == expected


def rewritten(prefix: str, replacement: str, path: str) -> str:
    """The path Envoy forwards: the substitution applied to the whole path (RE2, as Envoy)."""
    pattern, substitution = prefix_rewrite(prefix, replacement)
    return str(re2.sub(pattern, substitution, path))


# The ReplacePrefixMatch table of the Gateway API (HTTPPathModifier), and more.
@pytest.mark.parametrize(("path", "prefix", "replacement", "expected"), [
    ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
    ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
    ("/foo/", "/foo", "/xyz", "/xyz/"),
    ("/foo/bar", "/foo", "/", "/bar"),
    ("/foo", "/foo", "/", "/"),
    ("/", "/", "/v2", "/v2"),
    ("/books/1", "/", "/", "/books/1"),
    ("/books", "/", "/v2/", "/v2/books"),
    ("/axb/c", "/a.b", "/x", "/axb/c"),  # the prefix is a literal, not a pattern
    ("/a+b(1)/c", "/a+b(1)", "/x", "/x/c"),
    ("/foo/bar", "/foo", "/a\\1b", "/a\\1b/bar"),  # a backslash is not a group reference
], ids=lambda value: value or "empty")
def test_prefix_rewrite(path: str, prefix: str, replacement: str, expected: str) -> None:
    assert rewritten(prefix, replacement, path) == expected


def test_prefix_rewrite_of_the_root_prefix() -> None:
    assert rewritten("/", "/v2", "/books") == "/v2/books"


def m(kind: str = "PathPrefix", value: str = "/", **extra: Any) -> RouteMatch:
    return RouteMatch(path=PathMatch(kind, value), **extra)  # type: ignore[arg-type]


H = (HeaderMatch("x-a", "1"),)
Q = (QueryParamMatch("q", "1"),)

# (name, match), listed in the order Gateway API precedence gives them.
ORDERED: list[tuple[str, RouteMatch]] = [
    ("exact long", m("Exact", "/books/1")),
    ("exact short", m("Exact", "/")),
    ("prefix long", m(value="/books/1/")),
    ("regex as long", m("RegularExpression", "/book.*")),
    ("prefix with method", m(value="/books", method="GET")),
    ("prefix with two headers", m(value="/books", headers=(*H, HeaderMatch("x-b", "2")))),
    ("prefix with a header", m(value="/books/", headers=H)),
    ("prefix with a query", m(value="/books", query_params=Q)),
    ("prefix", m(value="/books")),
    ("catch-all", m()),
]


def test_match_precedence_order() -> None:
    # Listed backwards: a key that ranked nothing would keep that order, and fail.
    backwards = list(reversed(ORDERED))
    ranked = sorted(backwards, key=lambda item: match_precedence(item[1]))
    assert [name for name, _ in ranked] == [name for name, _ in ORDERED]


@pytest.mark.parametrize(("match", "expected"), [
    (m("Exact", "/books/"), (0, -7, 1, 0, 0)),  # an exact path keeps its trailing slash
    (m(value="/books/", method="PUT", headers=H, query_params=Q * 2), (1, -6, 0, -1, -2)),
], ids=["exact", "prefix, method, headers, queries"])
def test_match_precedence_key(match: RouteMatch, expected: tuple[int, ...]) -> None:
    assert match_precedence(match) == expected
