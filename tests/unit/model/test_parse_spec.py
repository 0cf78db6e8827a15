"""Problems inside the spec: strict types, enums, ranges, list limits, semantic checks."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.model.documents import ROUTE_HEAD, Expected, assert_problems, problems, route_yaml

PARENT = [{"name": "books"}]


def backends(*refs: dict[str, Any]) -> str:
    """A route with one rule whose backendRefs are ``refs``."""
    return route_yaml({"parentRefs": PARENT, "rules": [{"backendRefs": list(refs)}]})


def matches(*paths: dict[str, Any]) -> str:
    """A route with one rule, one backend and these path matches."""
    return route_yaml({"parentRefs": PARENT, "rules": [{
        "backendRefs": [{"name": "books"}], "matches": [{"path": p} for p in paths]}]})


W0 = "spec.rules[0].backendRefs[0]"
NAME = "is not a valid name"
FIELDS_OF_BACKEND = "known fields here: name, kind, group, namespace, port, weight"

# (case, YAML, expected problems)
CASES: list[tuple[str, str, list[Expected]]] = [
    # Strict types: YAML's "80" is a string and 1.5 is not a whole number.
    ("weight as a string", backends({"name": "a", "weight": "80"}),
     [(f"{W0}.weight", 'expected an integer, got string "80"',
       "write it without quotes: 80")]),
    ("weight fractional", backends({"name": "a", "weight": 1.5}),
     [(f"{W0}.weight", "expected an integer, got number 1.5", "")]),
    ("weight whole float", backends({"name": "a", "weight": 2.0}),
     [(f"{W0}.weight", "expected an integer, got number 2.0", "")]),
    ("weight boolean", backends({"name": "a", "weight": True}),
     [(f"{W0}.weight", "expected an integer, got boolean true", "")]),
    ("YAML 1e6 is a string", ROUTE_HEAD + """\
spec:
  parentRefs: [{name: books}]
  rules: [{backendRefs: [{name: a, weight: 1e6}]}]
""", [(f"{W0}.weight", 'expected an integer, got string "1e6"',
       "write it as a whole number: 1000000")]),
    ("port as a string", backends({"name": "a", "port": "8080"}),
     [(f"{W0}.port", 'got string "8080"', "without quotes: 8080")]),
    ("name a number", backends({"name": 5}),
     [(f"{W0}.name", "expected a string, got number 5", "")]),
    ("backendRefs a mapping", route_yaml({"parentRefs": PARENT,
                                          "rules": [{"backendRefs": {"name": "a"}}]}),
     [("spec.rules[0].backendRefs", 'expected a list, got mapping {"name": "a"}', "")]),
    ("hostnames a string", route_yaml({"parentRefs": PARENT, "hostnames": "books",
                                       "rules": [{"backendRefs": [{"name": "a"}]}]}),
     [("spec.hostnames", 'expected a list, got string "books"', "")]),
    # Enums.
    ("backend kind", backends({"name": "a", "kind": "Pod"}),
     [(f"{W0}.kind", "must be one of 'Service', got \"Pod\"", "")]),
    ("backend group", backends({"name": "a", "group": "apps"}),
     [(f"{W0}.group", "must be one of '' or 'core', got \"apps\"", "")]),
    ("path type", matches({"type": "Regex", "value": "/"}),
     [("spec.rules[0].matches[0].path.type",
       "must be one of 'Exact', 'PathPrefix' or 'RegularExpression', got \"Regex\"", "")]),
    # Ranges.
    ("weight negative", backends({"name": "a", "weight": -1}),
     [(f"{W0}.weight", "must be at least 0, got -1", "")]),
    ("weight above a million", backends({"name": "a", "weight": 1_000_001}),
     [(f"{W0}.weight", "must be at most 1000000, got 1000001", "")]),
    ("weight huge", backends({"name": "a", "weight": 10**30}),
     [(f"{W0}.weight", f"must be at most 1000000, got {10**30}", "")]),
    ("port zero", backends({"name": "a", "port": 0}),
     [(f"{W0}.port", "must be at least 1, got 0", "")]),
    ("parent port too high", route_yaml({"parentRefs": [{"name": "b", "port": 65536}],
                                         "rules": [{"backendRefs": [{"name": "a"}]}]}),
     [("spec.parentRefs[0].port", "must be at most 65535, got 65536", "")]),
    # List and string lengths.
    ("no rules", route_yaml({"parentRefs": PARENT, "rules": []}),
     [("spec.rules", "must have at least 1 item(s)", "")]),
    ("no backendRefs", backends(),
     [("spec.rules[0].backendRefs", "a rule needs backendRefs or a RequestRedirect filter",
       "add backendRefs")]),
    ("17 backendRefs", backends(*[{"name": "a"}] * 17),
     [("spec.rules[0].backendRefs", "must have at most 16 item(s)", "")]),
    ("33 parentRefs", route_yaml({"parentRefs": PARENT * 33,
                                  "rules": [{"backendRefs": [{"name": "a"}]}]}),
     [("spec.parentRefs", "must have at most 32 item(s)", "")]),
    ("65 rules", route_yaml({"parentRefs": PARENT,
                             "rules": [{"backendRefs": [{"name": "a"}]}] * 65}),
     [("spec.rules", "must have at most 64 item(s)", "")]),
    ("no matches", route_yaml({"parentRefs": PARENT,
                               "rules": [{"backendRefs": [{"name": "a"}], "matches": []}]}),
     [("spec.rules[0].matches", "must have at least 1 item(s)", "")]),
    ("empty path", matches({"value": ""}),
     [("spec.rules[0].matches[0].path.value", "must have at least 1 characters", "")]),
    ("path too long", matches({"value": "/" + "x" * 1024}),
     [("spec.rules[0].matches[0].path.value", "must have at most 1024 characters", "")]),
    # Required and unknown fields, with suggestions at the right level.
    ("spec missing", ROUTE_HEAD,
     [("spec.parentRefs", "required field is missing", ""),
      ("spec.rules", "required field is missing", "")]),
    ("backend name missing", backends({"weight": 1}),
     [(f"{W0}.name", "required field is missing", "")]),
    ("misspelt spec field", route_yaml({"parentRef": PARENT, "parentRefs": PARENT,
                                        "rules": [{"backendRefs": [{"name": "a"}]}]}),
     [("spec.parentRef", 'unknown field "parentRef"',
       'did you mean "parentRefs"? known fields here: parentRefs, rules, hostnames')]),
    ("snake_case rule field", route_yaml({"parentRefs": PARENT, "rules": [
        {"backendRefs": [{"name": "a"}], "backend_refs": []}]}),
     [("spec.rules[0].backend_refs", 'unknown field "backend_refs"',
       'did you mean "backendRefs"? known fields here: backendRefs, matches')]),
    ("misspelt backend field", backends({"name": "a"}, {"name": "b", "wieght": 2}),
     [("spec.rules[0].backendRefs[1].wieght", 'unknown field "wieght"',
       f'did you mean "weight"? {FIELDS_OF_BACKEND}')]),
    ("unknown path field, nothing close", matches({"regex": "^/x"}),
     [("spec.rules[0].matches[0].path.regex", 'unknown field "regex"',
       "known fields here: type, value")]),
    # Checks a schema cannot express.
    ("path without leading slash", matches({"value": "/ok"}, {"value": "books"}),
     [("spec.rules[0].matches[1].path.value", 'a path must start with "/", got "books"',
       'write "/books"')]),
    ("every weight zero", backends({"name": "a", "weight": 0}, {"name": "b", "weight": 0}),
     [("spec.rules[0].backendRefs", "every backendRef has weight 0",
       "give at least one backendRef a weight above 0")]),
    ("one zero weight is fine; the zero rule is named", route_yaml({"parentRefs": PARENT, "rules": [
        {"backendRefs": [{"name": "a", "weight": 0}, {"name": "b"}]},
        {"backendRefs": [{"name": "a", "weight": 0}]}]}),
     [("spec.rules[1].backendRefs", "every backendRef has weight 0", "weight above 0")]),
    ("reference names are DNS labels", route_yaml({
        "parentRefs": [{"name": "books", "namespace": "Shop"}],
        "rules": [{"backendRefs": [{"name": "ok"}, {"name": "Books_v1"}]}]}),
     [("spec.parentRefs[0].namespace", f'"Shop" {NAME}', ""),
      ("spec.rules[0].backendRefs[1].name", f'"Books_v1" {NAME}', "")]),
    # A bad item must not also claim its non-empty list is too short.
    ("every problem of a spec, and only those", route_yaml({
        "parentRefs": [{"name": "books", "kind": "Ingress"}],
        "rules": [{"backendRefs": [{"name": "a", "weight": "1"}, {"name": "b", "port": -1}]},
                  {"backendRefs": [{"name": "c"}], "matches": [{"path": {"type": "Regex"}}]}]}),
     [("spec.parentRefs[0].kind", "must be one of 'Service' or 'Gateway'", ""),
      ("spec.rules[0].backendRefs[0].weight", "expected an integer", "without quotes: 1"),
      ("spec.rules[0].backendRefs[1].port", "must be at least 1, got -1", ""),
      ("spec.rules[1].matches[0].path.type", "must be one of", "")]),
    # Service.
    ("service protocol enum is case sensitive",
     "apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {name: a}\nspec: {protocol: HTTP}\n",
     [("spec.protocol", "must be one of 'http', 'http2', 'grpc' or 'tcp', got \"HTTP\"", "")]),
    ("service protocol a number",
     "apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {name: a}\nspec: {protocol: 7}\n",
     [("spec.protocol", "must be one of 'http', 'http2', 'grpc' or 'tcp', got 7", "")]),
    # Values JSON cannot carry are named, not a crash.
    ("YAML binary and set", ROUTE_HEAD + """\
spec:
  parentRefs: [{name: books}]
  hostnames: [!!binary aGk=]
  rules: [{backendRefs: !!set {a}}]
""",
     [("spec.hostnames[0]", "expected a string, number, list or mapping, got bytes", ""),
      ("spec.rules[0].backendRefs", "got set", "")]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_spec_problem(text: str, expected: list[Expected]) -> None:
    found = problems(text)
    assert_problems(found, expected)
    resource = "Service default/a" if "kind: Service" in text else "HTTPRoute shop/r"
    assert {p.resource for p in found} == {resource}
