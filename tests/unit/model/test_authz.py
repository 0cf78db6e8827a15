"""AuthorizationPolicy: what validation refuses (authz_checks.py), and which rules apply to
which service (authorization.py)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.unit.model.documents import Expected, assert_problems, parse, problems
from tulle.model.authorization import Callers, resolve
from tulle.model.meta import ServiceRef

BOOKS = ServiceRef("default", "books")
TD = "tulle.local"


def policy(spec: dict[str, Any], name: str = "p", namespace: str = "default") -> str:
    return yaml.safe_dump({"apiVersion": "tulle.io/v1alpha1", "kind": "AuthorizationPolicy",
                           "metadata": {"name": name, "namespace": namespace}, "spec": spec})


def on_books(**spec: Any) -> str:
    return policy({"targetRef": {"kind": "Service", "name": "books"}} | spec)


ANY_RULE: list[dict[str, Any]] = [{}]

REFUSED: list[tuple[str, str, list[Expected]]] = [
    ("no action", on_books(rules=ANY_RULE),
     [("spec.action", "set action: ALLOW or DENY", "")]),
    ("action without rules", on_books(action="DENY"),
     [("spec.rules", "needs at least one rule", "defaultAction: DENY")]),
    ("default on a service", on_books(defaultAction="DENY"),
     [("spec.defaultAction", "a default applies to a Namespace or the Mesh",
       "kind: Namespace")]),
    ("default and rules", policy({"targetRef": {"kind": "Namespace"}, "defaultAction": "DENY",
                                  "action": "ALLOW", "rules": ANY_RULE}),
     [("spec.defaultAction", "either a default", "split it")]),
    ("service target without name", policy({"targetRef": {"kind": "Service"},
                                            "action": "DENY", "rules": ANY_RULE}),
     [("spec.targetRef.name", "a Service target needs its name", "")]),
    ("mesh target with a name", policy({"targetRef": {"kind": "Mesh", "name": "x"},
                                        "defaultAction": "DENY"}),
     [("spec.targetRef.name", "a Mesh target has no name", "remove name")]),
    ("two callers in one item", on_books(action="ALLOW", rules=[
        {"from": [{"service": "web", "namespace": "shop"}]}]),
     [("spec.rules[0].from[0]", "exactly one of identity, service or namespace",
       "one caller per list item")]),
    ("not a SPIFFE ID", on_books(action="ALLOW", rules=[{"from": [{"identity": "web"}]}]),
     [("spec.rules[0].from[0].identity", "is not a workload identity", "spiffe://")]),
    ("bad service name", on_books(action="ALLOW", rules=[{"from": [{"service": "Web_1"}]}]),
     [("spec.rules[0].from[0].service", "", "namespace/name")]),
    ("bad regex path", on_books(action="DENY", rules=[{"to": [{"paths": [
        {"type": "RegularExpression", "value": "/a(("}]}]}]),
     [("spec.rules[0].to[0].paths[0].value", "does not compile (RE2", "RE2")]),
    ("relative path", on_books(action="DENY", rules=[{"to": [{"paths": [
        {"type": "Exact", "value": "admin"}]}]}]),
     [("spec.rules[0].to[0].paths[0].value", 'a path must start with "/"', 'write "/admin"')]),
    ("bad header name", on_books(action="DENY", rules=[{"to": [{"headers": [
        {"name": "x y", "value": "1"}]}]}]),
     [("spec.rules[0].to[0].headers[0].name", "is not a valid header name", "")]),
    ("two rules one name", on_books(action="DENY", rules=[{"name": "a"}, {"name": "a"}]),
     [("spec.rules", 'two rules are named "a"', "its own name")]),
]


@pytest.mark.parametrize(("case", "text", "expected"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(case: str, text: str, expected: list[Expected]) -> None:
    assert_problems(problems(text), expected)


def test_unknown_method_and_field_are_schema_errors() -> None:
    found = problems(on_books(action="DENY", rules=[{"to": [{"methods": ["FETCH"]}]}]))
    assert found[0].field.startswith("spec.rules[0].to[0].methods[0]")
    found = problems(on_books(action="DENY", rules=[{"form": []}]))
    assert "form" in found[0].field


def resolved(*texts: str, identities: dict[ServiceRef, tuple[str, ...]] | None = None,
             services: tuple[ServiceRef, ...] = (BOOKS,)) -> Any:
    resources = [r for text in texts for r in parse(text)]
    known = identities or {}
    return resolve(resources, services, TD, lambda ref: known.get(ref, ()))


def test_a_service_policy_covers_its_service_only() -> None:
    other = ServiceRef("default", "authors")
    found = resolved(on_books(action="DENY", rules=ANY_RULE), services=(BOOKS, other))
    assert set(found) == {BOOKS}
    assert found[BOOKS].deny[0].policy == "default/p" and found[BOOKS].deny[0].rule == "0"


def test_callers_by_service_are_its_identities_and_its_default_account() -> None:
    web = ServiceRef("default", "web")
    found = resolved(on_books(action="ALLOW", rules=[{"name": "web", "from": [
        {"service": "web"}, {"service": "shop/cart"}, {"namespace": "ops"}]}]),
        identities={web: (f"spiffe://{TD}/ns/default/sa/web-runner",)})
    callers = found[BOOKS].allow[0].callers
    assert callers == (
        Callers(identities=(f"spiffe://{TD}/ns/default/sa/web",
                            f"spiffe://{TD}/ns/default/sa/web-runner")),
        Callers(identities=(f"spiffe://{TD}/ns/shop/sa/cart",)),
        Callers(namespace="ops"))
    assert found[BOOKS].allow_policies == ("default/p",)


def test_the_namespace_default_overrides_the_mesh_default() -> None:
    mesh_deny = policy({"targetRef": {"kind": "Mesh"}, "defaultAction": "DENY"}, "mesh-deny",
                       "tulle-system")
    open_ns = policy({"targetRef": {"kind": "Namespace"}, "defaultAction": "ALLOW"}, "open")
    shop = ServiceRef("shop", "cart")
    found = resolved(mesh_deny, open_ns, services=(BOOKS, shop))
    assert BOOKS not in found  # its namespace allows by default: nothing to enforce
    assert found[shop].default_deny == "tulle-system/mesh-deny"
    assert found[shop].denies_unmatched


def test_no_policies_resolve_to_nothing() -> None:
    assert resolved() == {}
