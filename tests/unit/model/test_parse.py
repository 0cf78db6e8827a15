"""Valid documents become typed resources with defaults filled and a canonical manifest."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.model.documents import ROUTE_HEAD, parse, route_yaml
from tulle.model.httproute import (
    BackendRef,
    HTTPRouteSpec,
    ParentRef,
    PathMatch,
    RouteMatch,
    RouteRule,
)
from tulle.model.kinds import HTTP_ROUTE, SERVICE
from tulle.model.meta import ObjectMeta, ResourceKey
from tulle.model.parse import Document, parse_document
from tulle.model.service import ServiceSpec

# (case, YAML, expected typed spec). Every field is spelled out: defaults are part of the contract.
SPECS: list[tuple[str, str, Any]] = [
    ("service without spec: protocol detected",
     "apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {name: books}\n",
     ServiceSpec(protocol=None)),
    ("service with null spec",
     "apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {name: books}\nspec: null\n",
     ServiceSpec(protocol=None)),
    ("service tcp",
     "apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {name: db}\nspec: {protocol: tcp}\n",
     ServiceSpec(protocol="tcp")),
    ("route defaults: PathPrefix /, weight 1, no namespace or port", ROUTE_HEAD + """\
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: books-v1}]
""", HTTPRouteSpec(
        parent_refs=(ParentRef(name="books", kind="Service", group="", namespace=None,
                               port=None),),
        rules=(RouteRule(
            backend_refs=(BackendRef(name="books-v1", kind="Service", group="",
                                     namespace=None, port=None, weight=1),),
            matches=(RouteMatch(path=PathMatch(type="PathPrefix", value="/")),)),),
        hostnames=())),
    ("route with every field set, at the edges of each range", ROUTE_HEAD + """\
spec:
  hostnames: [books.shop]
  parentRefs: [{name: books, kind: Service, group: core, namespace: shop, port: 65535}]
  rules:
  - matches: [{path: {type: Exact, value: /health}}, {path: {}}]
    backendRefs:
    - {name: books-v1, namespace: other, port: 1, weight: 0}
    - {name: books-v2, group: "", weight: 1000000}
""", HTTPRouteSpec(
        parent_refs=(ParentRef(name="books", kind="Service", group="core", namespace="shop",
                               port=65535),),
        rules=(RouteRule(
            backend_refs=(
                BackendRef(name="books-v1", kind="Service", group="", namespace="other",
                           port=1, weight=0),
                BackendRef(name="books-v2", kind="Service", group="", namespace=None,
                           port=None, weight=1_000_000)),
            matches=(RouteMatch(path=PathMatch(type="Exact", value="/health")),
                     RouteMatch(path=PathMatch(type="PathPrefix", value="/")))),),
        hostnames=("books.shop",))),
    ("YAML dates become their ISO text", ROUTE_HEAD + """\
spec:
  hostnames: [2024-01-31, 2024-01-31 10:20:30]
  parentRefs: [{name: books}]
  rules: [{backendRefs: [{name: books}]}]
""", HTTPRouteSpec(
        parent_refs=(ParentRef(name="books"),),
        rules=(RouteRule(backend_refs=(BackendRef(name="books"),)),),
        hostnames=("2024-01-31", "2024-01-31T10:20:30"))),
    ("16 backendRefs, 64 matches and a 1024-character path are the limits", route_yaml({
        "parentRefs": [{"name": "books"}],
        "rules": [{"backendRefs": [{"name": "b"}] * 16,
                   "matches": [{"path": {"value": "/" + "x" * 1023}}] * 64}]}),
     HTTPRouteSpec(
        parent_refs=(ParentRef(name="books"),),
        rules=(RouteRule(
            backend_refs=(BackendRef(name="b"),) * 16,
            matches=(RouteMatch(path=PathMatch(value="/" + "x" * 1023)),) * 64),))),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in SPECS],
                         ids=[case for case, _, _ in SPECS])
def test_valid_spec_is_typed(text: str, expected: Any) -> None:
    (resource,) = parse(text)
    assert resource.spec == expected


# (case, YAML, expected canonical manifest)
MANIFESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("namespace filled in, empty spec kept",
     "apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {name: books}\n",
     {"apiVersion": "tulle.io/v1alpha1", "kind": "Service",
      "metadata": {"name": "books", "namespace": "default"}, "spec": {}}),
    ("status dropped; labels sorted; annotations kept", """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata:
  name: books
  namespace: shop
  labels: {tier: back, app: books, tulle.io/version: v1}
  annotations: {note: kept as written}
spec: {protocol: tcp}
status: {ready: true}
""", {"apiVersion": "tulle.io/v1alpha1", "kind": "Service",
      "metadata": {"name": "books", "namespace": "shop",
                   "labels": {"app": "books", "tier": "back", "tulle.io/version": "v1"},
                   "annotations": {"note": "kept as written"}},
      "spec": {"protocol": "tcp"}}),
    ("older apiVersion accepted and rewritten to the current one; spec kept as written", """\
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: r, labels: null}
spec:
  parentRefs: [{name: books}]
  rules: [{backendRefs: [{name: books}]}]
""", {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
      "metadata": {"name": "r", "namespace": "default"},
      "spec": {"parentRefs": [{"name": "books"}],
               "rules": [{"backendRefs": [{"name": "books"}]}]}}),
    ("dates in the spec become strings in the manifest", ROUTE_HEAD + """\
spec:
  hostnames: [2024-01-31]
  parentRefs: [{name: books}]
  rules: [{backendRefs: [{name: books}]}]
""", {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
      "metadata": {"name": "r", "namespace": "shop"},
      "spec": {"hostnames": ["2024-01-31"], "parentRefs": [{"name": "books"}],
               "rules": [{"backendRefs": [{"name": "books"}]}]}}),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in MANIFESTS],
                         ids=[case for case, _, _ in MANIFESTS])
def test_manifest_is_canonical(text: str, expected: dict[str, Any]) -> None:
    (resource,) = parse(text)
    assert resource.manifest == expected


def test_manifest_parses_back_to_the_same_resource() -> None:
    (resource,) = parse(MANIFESTS[1][1])
    again = parse_document(Document("store", resource.manifest))
    assert again == resource
    assert again.manifest == resource.manifest


def test_identity_and_labels() -> None:
    service, route = parse("""\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books, namespace: shop, labels: {b: "2", a: "1"}}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules: [{backendRefs: [{name: books}]}]
""")
    assert service.info is SERVICE
    assert service.meta == ObjectMeta(name="books", namespace="shop", labels=(("a", "1"),
                                                                              ("b", "2")))
    assert service.key == ResourceKey("Service", "shop", "books")
    assert route.info is HTTP_ROUTE
    assert route.key == ResourceKey("HTTPRoute", "default", "books")


def test_same_name_in_other_kind_or_namespace_is_not_a_duplicate() -> None:
    service = "apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {name: books%s}\n"
    route = ROUTE_HEAD.replace("name: r, namespace: shop", "name: books") + (
        "spec: {parentRefs: [{name: books}], rules: [{backendRefs: [{name: books}]}]}\n")
    resources = parse("---\n".join([service % "", service % ", namespace: shop", route]))
    assert [str(r.key) for r in resources] == [
        "Service default/books", "Service shop/books", "HTTPRoute default/books"]
