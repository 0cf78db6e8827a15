"""Analyzers that need nothing but resources (they run on files alone): YAML fixtures mapped
to the (code, resource) pairs they must produce, including fixtures that must produce none."""

from __future__ import annotations

import pytest

from tests.unit.analysis.support import Finding, findings, fixture
from tulle.analysis.engine import Message

ROUTE = "HTTPRoute default/"
POLICY = "TrafficPolicy default/"

CASES: list[tuple[str, list[Finding]]] = [
    ("references", [
        ("TUL0001", ROUTE + "books"),  # backendRefs bookz
        ("TUL0001", ROUTE + "books"),  # mirror books-shadow
        ("TUL0001", "HTTPRoute shop/orphan"),  # parentRefs books in shop
        ("TUL0001", POLICY + "limits"),  # Service authors
        ("TUL0002", POLICY + "limits"),  # HTTPRoute nosuch
        ("TUL0003", POLICY + "limits"),  # rule serch
        ("TUL0027", ROUTE + "edge-routes"),  # Gateway edge
    ]),
    ("references_ok", []),
    ("weights", [
        ("TUL0005", ROUTE + "drained"),
        ("TUL0006", ROUTE + "twice"),
        ("TUL0007", ROUTE + "percent"),
    ]),
    ("weights_ok", []),
    ("shadowing", [
        ("TUL0008", ROUTE + "books"),  # beta-one
        ("TUL0008", ROUTE + "books"),  # /list/ after /list
        ("TUL0009", ROUTE + "books"),  # partly: /v1/x only
    ]),
    ("shadowing_ok", []),
    ("conflicts", [("TUL0010", ROUTE + "books-all")]),  # the one that loses /search
    ("conflicts_ok", []),
    ("retries", [("TUL0011", ROUTE + "books"), ("TUL0011", ROUTE + "books")]),
    ("retries_ok", []),
    ("policy_conflicts", [("TUL0018", POLICY + "b-limit")]),
    ("protocols", [
        ("TUL0019", "Service default/greeter-v2"),  # http subset of a grpc service
        ("TUL0019", "Service default/books-raw"),  # tcp subset of an HTTP service
        ("TUL0020", ROUTE + "lines"),
        ("TUL0021", ROUTE + "legacy"),
        ("TUL0022", ROUTE + "greeter"),  # grpc requests to an http service
        ("TUL0022", ROUTE + "books"),  # HTTP requests to a tcp service
        ("TUL0023", ROUTE + "books"),  # books on 8080 and 9090
    ]),
    ("protocols_ok", []),
    ("authorization", [
        ("TUL0024", "AuthorizationPolicy default/lines-readers"),  # methods on tcp
        ("TUL0025", "AuthorizationPolicy default/books-tools"),  # ops/tools: no-ops denies
        ("TUL0026", "AuthorizationPolicy tulle-system/closed-b"),
    ]),
    ("authorization_ok", []),
]


def analyze_fixture(name: str) -> list[Finding]:
    prefix = "" if name.startswith("references") else fixture("services") + "---\n"
    return findings(prefix + fixture(name))


@pytest.mark.parametrize(("name", "expected"), CASES, ids=[name for name, _ in CASES])
def test_fixture(name: str, expected: list[Finding]) -> None:
    assert analyze_fixture(name) == sorted(expected)


def messages(name: str) -> list[Message]:
    from tests.unit.analysis.support import run

    prefix = "" if name.startswith("references") else fixture("services") + "---\n"
    return list(run(prefix + fixture(name)).messages)


def test_messages_name_file_line_field_and_fix() -> None:
    found = {(m.code, m.field): m for m in messages("references")}
    backend = found[("TUL0001", "spec.rules[0].backendRefs[0].name")]
    assert backend.source == "t.yaml:2"  # the route is the second document
    assert str(backend.level) == "error" and backend.docs == "docs/diagnostics/TUL0001.md"
    assert 'unknown service "bookz" in namespace "default"' in backend.message
    assert "not declared in the files analyzed" in backend.message
    assert 'did you mean "books"?' in backend.fix
    mirror = "spec.rules[1].filters[0].requestMirror.backendRef.name"
    assert ("TUL0001", mirror) in found
    orphan = found[("TUL0001", "spec.parentRefs[0].name")]
    assert "exists in namespace default" in orphan.fix
    rule = found[("TUL0003", "spec.targetRefs[2].sectionName")]
    assert 'no rule named "serch"' in rule.message and "search" in rule.fix
    assert ("TUL0002", "spec.targetRefs[1].name") in found


@pytest.mark.parametrize(("name", "code", "field", "says"), [
    ("weights", "TUL0005", "spec.rules[0].backendRefs[1].weight", "books-v2.default"),
    ("weights", "TUL0006", "spec.rules[0].backendRefs[1]", "10 + 30): its share is their "
                                                            "sum, 97.6%"),
    ("weights", "TUL0007", "spec.rules[0].backendRefs", "books-v1 81.8%, books-v2 18.2%"),
    ("shadowing", "TUL0008", "spec.rules[1]", "x-beta~.*"),
    ("shadowing", "TUL0008", "spec.rules[5]", "PathPrefix /list"),
    ("shadowing", "TUL0009", "spec.rules[3].matches[0]", "RegularExpression /v1.*"),
    ("conflicts", "TUL0010", "spec.rules[0].matches[0]",
     "both match /search (and below): HTTPRoute default/books-search rules[0]"),
    ("retries", "TUL0011", "spec.rules[0].retry.attempts",
     "4 attempts of up to 1s each need 4s, but the whole request may take 2s: only 2"),
    ("retries", "TUL0011", "spec.rules[1].retry.attempts", "Envoy's default"),
    ("policy_conflicts", "TUL0018", "spec.rateLimit", "from TrafficPolicy default/a-limit"),
    ("protocols", "TUL0019", "spec.protocol",
     "subset greeter-v2.default declares protocol http, but its instances are workloads of "
     "greeter.default, which declares grpc: calls to the subset cross the mesh as http"),
    ("protocols", "TUL0019", "spec.protocol", "which declares no protocol (HTTP, in the "
                                              "version each caller speaks): callers"),
    ("protocols", "TUL0020", "spec.parentRefs[0]",
     "route's matches, backendRefs, retries and timeouts never apply"),
    ("protocols", "TUL0021", "spec.rules[0].retry.grpcCodes",
     "[unavailable] never trigger for legacy.default: declared http"),
    ("protocols", "TUL0022", "spec.rules[0].backendRefs[0].name",
     "requests to greeter.default (grpc) are routed to legacy.default, declared http"),
    ("protocols", "TUL0022", "spec.rules[0].backendRefs[0].name",
     "routed to lines.default, declared tcp: the requests reach lines.default's application"),
    ("protocols", "TUL0023", "spec.parentRefs[0].port",
     "books.default is referenced with ports 8080, 9090 (8080 in HTTPRoute default/books "
     "spec.parentRefs[0].port; 9090 in HTTPRoute default/books-admin "
     "spec.rules[0].backendRefs[0].port)"),
])
def test_message_text(name: str, code: str, field: str, says: str) -> None:
    found = [m for m in messages(name) if (m.code, m.field) == (code, field)]
    assert found, [(m.code, m.field) for m in messages(name)]
    assert any(says in m.message for m in found), [m.message for m in found]
