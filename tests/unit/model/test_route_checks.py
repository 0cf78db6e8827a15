"""HTTPRoute checks beyond the schema (route_checks.py): regexes as Envoy compiles them, header
names, filters, rewrites, timeouts and retries. Everything accepted must be something Envoy
accepts; everything refused names the field to fix."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.model.documents import Expected, assert_problems, parse, problems, route_yaml
from tulle.model.durations import DURATION_HINT
from tulle.model.route_checks import (
    MAX_REGEX_PROGRAM_SIZE,
    duration_problem,
    header_name_problem,
    regex_problem,
)

PARENT = [{"name": "books"}]
BACKEND = [{"name": "a"}]
R0 = "spec.rules[0]"
F0 = f"{R0}.filters[0]"
RE2_HINT = "check the pattern's syntax (RE2)"
NOT_COMPILED = "does not compile (RE2, as in Envoy)"


def rules(*bodies: dict[str, Any]) -> str:
    return route_yaml({"parentRefs": PARENT, "rules": list(bodies)})


def rule(**fields: Any) -> str:
    """A route with one rule: backend "a" unless ``fields`` say otherwise."""
    return rules({"backendRefs": BACKEND} | fields)


def path(kind: str, value: str) -> dict[str, Any]:
    return {"path": {"type": kind, "value": value}}


def headers_filter(kind: str, **changes: Any) -> dict[str, Any]:
    field = kind[0].lower() + kind[1:]
    return {"type": kind, field: changes}


def rewrite(modifier: dict[str, Any]) -> dict[str, Any]:
    return {"type": "URLRewrite", "urlRewrite": {"path": modifier}}


def redirect(**fields: Any) -> dict[str, Any]:
    return {"type": "RequestRedirect", "requestRedirect": fields}


def mirror(**fields: Any) -> dict[str, Any]:
    return {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m"}} | fields}


PREFIX_V2 = {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}

# (case, YAML, expected problems in order)
REFUSED: list[tuple[str, str, list[Expected]]] = [
    # Rule names are unique within the route.
    ("rule names repeated", rules({"backendRefs": BACKEND, "name": "x"},
                                  {"backendRefs": BACKEND, "name": "y"},
                                  {"backendRefs": BACKEND, "name": "x"}),
     [("spec.rules[2].name", 'rules[0] is also named "x"', "give each rule a unique name")]),
    # Regular expressions, compiled with RE2 as Envoy does.
    ("path regex unbalanced", rule(matches=[path("RegularExpression", "/books/(")]),
     [(f"{R0}.matches[0].path.value", f"{NOT_COMPILED}: missing ): /books/(", RE2_HINT)]),
    ("path regex too complex", rule(matches=[path("RegularExpression", "/x{200}")]),
     [(f"{R0}.matches[0].path.value", "too complex for Envoy (RE2 program size 2", RE2_HINT)]),
    # Header names are HTTP tokens, never pseudo-headers.
    ("header regex and name, second match", rule(matches=[
        {}, {"headers": [{"name": "x-a", "value": "ok"},
                         {"name": ":path", "value": "[z-a]", "type": "RegularExpression"}]}]),
     [(f"{R0}.matches[1].headers[1].name", '":path" is not a valid header name', ""),
      (f"{R0}.matches[1].headers[1].value", "invalid character class range: z-a", RE2_HINT)]),
    ("query regex", rule(matches=[{"queryParams": [
        {"name": "page", "value": "a{1001}", "type": "RegularExpression"}]}]),
     [(f"{R0}.matches[0].queryParams[0].value", "invalid repetition size", RE2_HINT)]),
    # Backends and redirects.
    ("redirect with backends", rule(filters=[redirect(hostname="example.com")]),
     [(f"{R0}.backendRefs", "a rule that redirects cannot also have backendRefs",
       "remove the backendRefs, or the RequestRedirect filter")]),
    # Filters: type names the one field set.
    ("filter field of another type", rule(filters=[
        {"type": "URLRewrite", "requestHeaderModifier": {"remove": ["x-a"]}}]),
     [(f"{F0}.requestHeaderModifier",
       "requestHeaderModifier does not belong in a URLRewrite filter",
       "move it into a filter of its own"),
      (f"{F0}.urlRewrite", "a URLRewrite filter needs urlRewrite", "")]),
    ("filter twice", rule(filters=[headers_filter("RequestHeaderModifier", remove=["a"]),
                                   headers_filter("ResponseHeaderModifier", remove=["b"]),
                                   headers_filter("RequestHeaderModifier", remove=["c"])]),
     [(f"{R0}.filters[2].type", "the rule already has a RequestHeaderModifier filter",
       "merge the two filters into one")]),
    ("redirect and rewrite", rules({"filters": [
        redirect(hostname="example.com"), {"type": "URLRewrite", "urlRewrite": {
            "hostname": "b"}}]}),
     [(f"{R0}.filters", "a rule cannot both redirect and rewrite",
       "keep one of RequestRedirect and URLRewrite")]),
    # Header modifiers.
    ("set Host, remove Connection", rule(filters=[headers_filter(
        "RequestHeaderModifier", set=[{"name": "Host", "value": "b"}],
        remove=["x-fine", "Connection"])]),
     [(f"{F0}.requestHeaderModifier.set[0]", 'the "Host" header cannot be modified here',
       "use URLRewrite to change the host"),
      (f"{F0}.requestHeaderModifier.remove[1]",
       'the "Connection" header cannot be modified here', "")]),
    # Mirrors.
    ("mirror percent and fraction", rule(filters=[
        mirror(percent=10, fraction={"numerator": 1})]),
     [(f"{F0}.requestMirror", "set percent or fraction, not both", "")]),
    ("mirror fraction above 1", rule(filters=[
        mirror(fraction={"numerator": 3, "denominator": 2})]),
     [(f"{F0}.requestMirror.fraction", "the numerator must not exceed the denominator", "")]),
    # Path modifiers.
    ("ReplacePrefixMatch without value", rule(filters=[rewrite({"type": "ReplacePrefixMatch"})]),
     [(f"{F0}.urlRewrite.path.replacePrefixMatch",
       "ReplacePrefixMatch needs replacePrefixMatch", "")]),
    ("ReplacePrefixMatch on an Exact match", rule(
        matches=[path("PathPrefix", "/a"), path("Exact", "/b")], filters=[rewrite(PREFIX_V2)]),
     [(f"{F0}.urlRewrite.path.type",
       "ReplacePrefixMatch needs every match of the rule to be a PathPrefix",
       "use ReplaceFullPath, or PathPrefix matches")]),
    ("rewritten path without slash", rule(filters=[
        rewrite({"type": "ReplaceFullPath", "replaceFullPath": "v2/books"})]),
     [(f"{F0}.urlRewrite.path.replaceFullPath", 'a path must start with "/", got "v2/books"', "")]),
    # Timeouts and retries.
    ("request timeout not a duration", rule(timeouts={"request": "5 seconds"}),
     [(f"{R0}.timeouts.request", '"5 seconds" is not a duration', DURATION_HINT)]),
    ("attempt outlasts the request", rule(timeouts={"request": "5s", "backendRequest": "1m"}),
     [(f"{R0}.timeouts.backendRequest", "an attempt (1m) cannot outlast the whole request (5s)",
       "make backendRequest at most request")]),
    ("retry backoff not a duration", rule(retry={"attempts": 2, "backoff": "fast"}),
     [(f"{R0}.retry.backoff", '"fast" is not a duration', DURATION_HINT)]),
    # Problems of several rules, in order.
    ("problems of every rule", rules(
        {"backendRefs": BACKEND, "timeouts": {"request": "x1"}},
        {"backendRefs": [{"name": "a", "weight": 0}]},
        {"matches": [path("PathPrefix", "books")]}),
     [("spec.rules[0].timeouts.request", '"x1" is not a duration', DURATION_HINT),
      ("spec.rules[1].backendRefs", "every backendRef has weight 0", "weight above 0"),
      ("spec.rules[2].matches[0].path.value", 'a path must start with "/", got "books"',
       'write "/books"'),
      ("spec.rules[2].backendRefs", "a rule needs backendRefs or a RequestRedirect filter",
       "add backendRefs")]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_route_refused(text: str, expected: list[Expected]) -> None:
    found = problems(text)
    assert_problems(found, expected)
    assert {p.resource for p in found} == {"HTTPRoute shop/r"}


ACCEPTED: list[tuple[str, str]] = [
    ("regex path needs no leading slash", rule(matches=[path("RegularExpression", "api/.*")])),
    ("token characters", rule(filters=[headers_filter(
        "RequestHeaderModifier", set=[{"name": "X-Custom_1.v~2", "value": "100%"}])])),
    ("two mirrors, a whole fraction", rule(filters=[
        mirror(percent=10), mirror(fraction={"numerator": 7, "denominator": 7})])),
    ("ReplacePrefixMatch on prefixes", rule(
        matches=[path("PathPrefix", "/a"), path("PathPrefix", "/b/")],
        filters=[rewrite(PREFIX_V2)])),
    ("request 0s: no limit", rule(timeouts={"request": "0s", "backendRequest": "1h"},
                                  retry={"attempts": 3, "codes": [503], "backoff": "1.5s"})),
]


@pytest.mark.parametrize("text", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_route_accepted(text: str) -> None:
    assert len(parse(text)) == 1


@pytest.mark.parametrize(("pattern", "expected"), [
    ("a{96}", None),  # program size exactly 100: still accepted
    ("a{97}", f"too complex for Envoy (RE2 program size 101 > {MAX_REGEX_PROGRAM_SIZE})"),
    ("(?P<id>[0-9]+)(?i)x", None),  # RE2 has named groups and inline flags
    ("[0-9]++", f"{NOT_COMPILED}: bad repetition operator: ++"),  # possessive: PCRE only
    ("/books\\Z", f"{NOT_COMPILED}: invalid escape sequence: \\Z"),  # RE2 spells it \z
], ids=["size 100", "size 101", "named group and flags", "possessive", "Python end anchor"])
def test_regex_problem(pattern: str, expected: str | None) -> None:
    found = regex_problem(pattern)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert expected in found


@pytest.mark.parametrize(("name", "modifying", "expected"), [
    ("X_Weird.Name~1", True, None),
    ("host", False, None),
    ("Host", True, 'the "Host" header cannot be modified here'),
    ("te", True, 'the "te" header cannot be modified here'),
    (":authority", False, '":authority" is not a valid header name'),
], ids=lambda value: repr(value) if isinstance(value, str) else None)
def test_header_name_problem(name: str, modifying: bool, expected: str | None) -> None:
    assert header_name_problem(name, modifying=modifying) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (None, None),  # an optional duration left out
    ("10", '"10" is not a duration'),
])
def test_duration_problem(value: str | None, expected: str | None) -> None:
    assert duration_problem(value) == expected


# Suspected bugs: the checks let through what Envoy refuses, or name the wrong field.

def test_prefix_with_query_or_fragment_is_refused() -> None:
    found = problems(rule(matches=[path("PathPrefix", "/books?page=1")]))
    assert [p.field for p in found] == [f"{R0}.matches[0].path.value"]


def test_header_value_with_newline_is_refused() -> None:
    found = problems(rule(filters=[headers_filter(
        "RequestHeaderModifier", set=[{"name": "x-a", "value": "a\r\nx-injected: 1"}])]))
    assert [p.field for p in found] == [f"{F0}.requestHeaderModifier.set[0].value"]


def test_mirror_backend_name_field_path() -> None:
    found = problems(rule(filters=[{"type": "RequestMirror",
                                    "requestMirror": {"backendRef": {"name": "Mirror_1"}}}]))
    assert [p.field for p in found] == [f"{F0}.requestMirror.backendRef.name"]


def test_path_modifier_with_the_other_type_field_is_refused() -> None:
    found = problems(rule(filters=[rewrite(PREFIX_V2 | {"replaceFullPath": "/x"})]))
    assert [p.field for p in found] == [f"{F0}.urlRewrite.path.replaceFullPath"]
