"""Route matches compared: does one cover the other, can one request select both?"""

from __future__ import annotations

from typing import Any

import pytest

from tulle.analysis.analyzers.matching import covers, overlap
from tulle.model.httproute import HeaderMatch, PathMatch, QueryParamMatch, RouteMatch


def m(path: str = "/", kind: str = "PathPrefix", method: Any = None,
      headers: tuple[tuple[str, str, str], ...] = (),
      query: tuple[tuple[str, str, str], ...] = ()) -> RouteMatch:
    return RouteMatch(PathMatch(kind, path),  # type: ignore[arg-type]
                      tuple(HeaderMatch(n, v, t) for n, v, t in headers),  # type: ignore[arg-type]
                      tuple(QueryParamMatch(n, v, t) for n, v, t in query),  # type: ignore[arg-type]
                      method)


EXACT = "Exact"
REGEX = "RegularExpression"


@pytest.mark.parametrize(("earlier", "later", "expected"), [
    (m("/"), m("/books"), True),
    (m("/"), m("/x", REGEX), True),
    (m("/books"), m("/books/1"), True),
    (m("/books"), m("/booksx"), False),
    (m("/books/"), m("/books"), True),
    (m("/books"), m("/books/1", EXACT), True),
    (m("/books"), m("/books", EXACT), True),
    (m("/books", EXACT), m("/books"), False),
    (m("/books", EXACT), m("/books", EXACT), True),
    (m("/b/[0-9]+", REGEX), m("/b/12", EXACT), True),
    (m("/b/[0-9]+", REGEX), m("/b/x", EXACT), False),
    (m("/b.*", REGEX), m("/b/x"), True),
    (m("/b[a-z]*", REGEX), m("/b/x"), False),
    (m("/books"), m("/books", method="GET"), True),
    (m("/books", method="GET"), m("/books"), False),
    (m("/books", method="GET"), m("/books", method="POST"), False),
    (m(headers=(("x-a", "1", EXACT),)), m(headers=(("X-A", "1", EXACT), ("b", "2", EXACT))),
     True),
    (m(headers=(("x-a", "1", EXACT),)), m(headers=(("x-a", "2", EXACT),)), False),
    (m(headers=(("x-a", "[0-9]", REGEX),)), m(headers=(("x-a", "7", EXACT),)), True),
    (m(headers=(("x-a", "1", EXACT),)), m(), False),
    (m(query=(("q", "1", EXACT),)), m(query=(("Q", "1", EXACT),)), False),
    (m(query=(("q", "1", EXACT),)), m(query=(("q", "1", EXACT),)), True),
])
def test_covers(earlier: RouteMatch, later: RouteMatch, expected: bool) -> None:
    assert covers(earlier, later) is expected


@pytest.mark.parametrize(("a", "b", "expected"), [
    (m("/"), m("/search"), True),
    (m("/a"), m("/ab"), False),
    (m("/a/b", EXACT), m("/a"), True),
    (m("/a", EXACT), m("/b", EXACT), False),
    (m("/a", method="GET"), m("/a", method="POST"), False),
    (m("/a", method="GET"), m("/a"), True),
    (m(headers=(("x", "1", EXACT),)), m(headers=(("X", "2", EXACT),)), False),
    (m(headers=(("x", "1", EXACT),)), m(headers=(("y", "2", EXACT),)), True),
    (m("/a/[0-9]+", REGEX), m("/a/[a-z]+", REGEX), False),  # cannot tell: no
    (m("/a/.*", REGEX), m("/a/1", EXACT), True),
])
def test_overlap(a: RouteMatch, b: RouteMatch, expected: bool) -> None:
    assert overlap(a, b) is expected
    assert overlap(b, a) is expected
