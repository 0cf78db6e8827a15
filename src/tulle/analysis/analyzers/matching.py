"""Which requests a route match selects, compared between two matches: does one cover the
other (every request the second selects, the first selects too), or can one request select
both? Answers are conservative: "no" when tulle cannot tell (two different regexes)."""

from __future__ import annotations

from collections.abc import Sequence

from tulle.model.httproute import HeaderMatch, PathMatch, QueryParamMatch, RouteMatch
from tulle.model.paths import segment_prefix

ValueMatch = HeaderMatch | QueryParamMatch


def covers(earlier: RouteMatch, later: RouteMatch) -> bool:
    """Whether every request ``later`` selects is also selected by ``earlier``."""
    return (_path_covers(earlier.path, later.path)
            and (earlier.method is None or earlier.method == later.method)
            and _conditions_cover(earlier.headers, later.headers, fold=True)
            and _conditions_cover(earlier.query_params, later.query_params, fold=False))


def overlap(a: RouteMatch, b: RouteMatch) -> bool:
    """Whether tulle can name a request that both select."""
    return (_paths_overlap(a.path, b.path)
            and (a.method is None or b.method is None or a.method == b.method)
            and _conditions_overlap(a.headers, b.headers, fold=True)
            and _conditions_overlap(a.query_params, b.query_params, fold=False))


def describe(match: RouteMatch) -> str:
    text = f"{match.path.type} {match.path.value}"
    if match.method:
        text = f"{match.method} {text}"
    for header in match.headers:
        text += f" {header.name}{'~' if header.type != 'Exact' else '='}{header.value}"
    if match.query_params:
        text += " ?" + "&".join(f"{q.name}{'~' if q.type != 'Exact' else '='}{q.value}"
                                for q in match.query_params)
    return text


def example(a: RouteMatch, b: RouteMatch) -> str:
    """A request both ``a`` and ``b`` select (call only when they overlap)."""
    paths = sorted((a.path, b.path), key=lambda p: (p.type != "Exact",
                                                    p.type == "RegularExpression",
                                                    -len(p.value)))
    path = paths[0]
    text = path.value if path.type != "RegularExpression" else f"a path matching {path.value}"
    if path.type == "PathPrefix":
        text = f"{segment_prefix(path.value)} (and below)"
    method = a.method or b.method
    if method:
        text = f"{method} {text}"
    conditions = {f"{h.name.lower()}: {h.value}" for h in (*a.headers, *b.headers)
                  if h.type == "Exact"}
    conditions |= {f"?{q.name}={q.value}" for q in (*a.query_params, *b.query_params)
                   if q.type == "Exact"}
    if conditions:
        text += " with " + ", ".join(sorted(conditions))
    return text


def _prefix_selects(prefix: str, path: str) -> bool:
    base = segment_prefix(prefix)
    return base in ("/", path) or path.startswith(base + "/")


def _fullmatch(pattern: str, text: str) -> bool:
    import re2

    try:
        return re2.fullmatch(pattern, text) is not None
    except re2.error:
        return False


def _path_covers(earlier: PathMatch, later: PathMatch) -> bool:
    if earlier.type == "PathPrefix":
        if segment_prefix(earlier.value) == "/":
            return True
        if later.type == "RegularExpression":
            return False
        value = segment_prefix(later.value) if later.type == "PathPrefix" else later.value
        return _prefix_selects(earlier.value, value)
    if earlier.type == "Exact":
        return later.type == "Exact" and later.value == earlier.value
    # A regular expression covers an exact path it matches, itself, and the prefixes a
    # "literal.*" pattern starts every path of.
    if later.type == "Exact":
        return _fullmatch(earlier.value, later.value)
    if later.type == "PathPrefix":
        literal = _literal_prefix(earlier.value)
        return literal is not None and segment_prefix(later.value).startswith(literal)
    return later.value == earlier.value


_REGEX_SYNTAX = frozenset(".^$*+?()[]{}|\\")


def _literal_prefix(pattern: str) -> str | None:
    """"/books.*" -> "/books": the text every match starts with, when that is all it says."""
    literal = pattern.removesuffix(".*")
    if literal == pattern or any(c in _REGEX_SYNTAX for c in literal):
        return None
    return literal


def _paths_overlap(a: PathMatch, b: PathMatch) -> bool:
    return _path_covers(a, b) or _path_covers(b, a) or (
        a.type == "RegularExpression" and b.type == "PathPrefix"
        and _fullmatch(a.value, segment_prefix(b.value))) or (
        b.type == "RegularExpression" and a.type == "PathPrefix"
        and _fullmatch(b.value, segment_prefix(a.value)))


def _value_covers(earlier: ValueMatch, later: ValueMatch) -> bool:
    if earlier.type == "Exact":
        return later.type == "Exact" and later.value == earlier.value
    if later.type == "Exact":
        return _fullmatch(earlier.value, later.value)
    return later.value == earlier.value


def _name(condition: ValueMatch, fold: bool) -> str:
    return condition.name.lower() if fold else condition.name


def _conditions_cover(earlier: Sequence[ValueMatch], later: Sequence[ValueMatch], *,
                      fold: bool) -> bool:
    """Every condition of ``earlier`` holds whenever all of ``later``'s hold."""
    return all(any(_name(e, fold) == _name(x, fold) and _value_covers(e, x) for x in later)
               for e in earlier)


def _conditions_overlap(a: Sequence[ValueMatch], b: Sequence[ValueMatch], *,
                        fold: bool) -> bool:
    """No condition on one name contradicts another: a request can satisfy both lists."""
    for x in a:
        for y in b:
            if _name(x, fold) == _name(y, fold) and not (
                    _value_covers(x, y) or _value_covers(y, x)):
                return False
    return True
