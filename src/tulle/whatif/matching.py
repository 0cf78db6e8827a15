"""Which HTTPRoute rule a request matches, decided the way the sidecar's Envoy decides it.

The generators translate every match to Envoy's (xds/generators/matchers.py); this module
evaluates the same matches with the same semantics, so that `tulle what-if` can say which rule
a request would take without sending it:

- the path is matched without its query string: ``Exact`` as is, ``PathPrefix`` by whole
  segments (``/books`` takes ``/books`` and ``/books/1``, not ``/booksx``; a trailing ``/`` in
  the prefix is ignored), ``RegularExpression`` with RE2 on the whole path;
- a header by its name in any case, on its values: exactly or with RE2 on the whole value,
  any one of the values when the name comes several times (verified on Envoy 1.40: two
  x-b headers 1 and 2 match an exact "2", and not "1,2"); an absent header matches nothing;
- a query parameter on the first value of its name, exactly or with RE2;
- the method exactly;
- rules in Gateway API precedence (``match_precedence``), the first that matches wins.

tests/e2e/test_whatif.py holds these against Envoy's own answers on generated routes and
requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tulle.model.httproute import RouteMatch
from tulle.model.mesh import AttachedRoute
from tulle.model.paths import match_precedence, segment_prefix


@dataclass(frozen=True)
class Request:
    """One HTTP request as the caller's sidecar sees it."""

    method: str
    path: str  # with its query string, as in :path
    headers: tuple[tuple[str, str], ...] = ()  # names in any case, in order

    @property
    def bare_path(self) -> str:
        return self.path.split("?", 1)[0]

    def header_values(self, name: str) -> tuple[str, ...]:
        """Every value of a header, in order (names in any case)."""
        return tuple(v for k, v in self.headers if k.lower() == name.lower())

    def query(self, name: str) -> str | None:
        """The first value of a query parameter, or None."""
        query = urlsplit(self.path).query
        return next((v for k, v in parse_qsl(query, keep_blank_values=True) if k == name),
                    None)


@dataclass(frozen=True)
class RuleMatch:
    route: AttachedRoute
    rule: int
    match: int

    @property
    def rule_name(self) -> str:
        rule = self.route.spec.rules[self.rule]
        return rule.name or f"rule{self.rule}"


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> Any:
    import re2

    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


def full_match(pattern: str, value: str) -> bool:
    """RE2 on the whole value, as Envoy's safe_regex matchers."""
    return _compiled(pattern).fullmatch(value) is not None


def path_matches(kind: str, value: str, path: str) -> bool:
    if kind == "Exact":
        return path == value
    if kind == "RegularExpression":
        return full_match(value, path)
    prefix = segment_prefix(value)
    return prefix in ("/", path) or path.startswith(prefix + "/")


def value_matches(kind: str, expected: str, actual: str | None) -> bool:
    if actual is None:
        return False
    return full_match(expected, actual) if kind == "RegularExpression" else actual == expected


def header_matches(kind: str, expected: str, values: tuple[str, ...]) -> bool:
    """Any one of the header's values (none: no match)."""
    return any(value_matches(kind, expected, value) for value in values)


def matches(match: RouteMatch, request: Request) -> bool:
    if not path_matches(match.path.type, match.path.value, request.bare_path):
        return False
    if match.method is not None and request.method != match.method:
        return False
    if not all(header_matches(h.type, h.value, request.header_values(h.name))
               for h in match.headers):
        return False
    return all(value_matches(q.type, q.value, request.query(q.name))
               for q in match.query_params)


def ordered(attached: Sequence[AttachedRoute]) -> list[RuleMatch]:
    """Every match of every rule, in the order the route table holds them."""
    entries: list[tuple[tuple[int, ...], int, RuleMatch]] = []
    for route in attached:
        for r, rule in enumerate(route.spec.rules):
            for m, match in enumerate(rule.matches):
                entries.append((match_precedence(match), len(entries), RuleMatch(route, r, m)))
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    return [entry for _, _, entry in entries]


def rule_for(attached: Sequence[AttachedRoute], request: Request) -> RuleMatch | None:
    """The rule (and match) that takes ``request``, or None: the sidecar answers 404."""
    return first_match(ordered(attached), request)


def first_match(entries: Sequence[RuleMatch], request: Request) -> RuleMatch | None:
    """:func:`rule_for` on routes already :func:`ordered` (for many requests to one table)."""
    for entry in entries:
        rule = entry.route.spec.rules[entry.rule]
        if matches(rule.matches[entry.match], request):
            return entry
    return None

