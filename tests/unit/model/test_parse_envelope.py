"""Problems outside the spec: document shape, kind, apiVersion, metadata, top-level fields."""

from __future__ import annotations

import pytest

from tests.unit.model.documents import Expected, assert_problems, problems

SERVICE = "apiVersion: tulle.io/v1alpha1\nkind: Service\n"
INVALID_NAME = "is not a valid name: use lower-case letters, digits and"

# (case, YAML, resource every problem names, expected problems)
CASES: list[tuple[str, str, str, list[Expected]]] = [
    ("document is a list", "- apiVersion: tulle.io/v1alpha1\n", "",
     [("", "expected a mapping with apiVersion, kind, metadata and spec, got list",
       "each YAML document must be one resource")]),
    ("document is a string", "hello\n", "",
     [("", "got string", "each YAML document must be one resource")]),
    ("kind missing", "apiVersion: tulle.io/v1alpha1\nmetadata: {name: a}\n", "",
     [("kind", "required field is missing", "known kinds: Service, HTTPRoute")]),
    ("kind not a string", "apiVersion: tulle.io/v1alpha1\nkind: [Service]\n", "",
     [("kind", "expected a string, got list", "known kinds: Service, HTTPRoute")]),
    ("kind misspelt", "apiVersion: tulle.io/v1alpha1\nkind: Servise\n", "kind Servise",
     [("kind", 'unknown kind "Servise"', 'did you mean "Service"? known kinds')]),
    ("kind in the wrong case", "apiVersion: tulle.io/v1alpha1\nkind: httproute\n",
     "kind httproute", [("kind", 'unknown kind "httproute"', 'did you mean "HTTPRoute"?')]),
    ("kind given by its plural", "apiVersion: tulle.io/v1alpha1\nkind: services\n",
     "kind services", [("kind", 'unknown kind "services"', 'did you mean "Service"?')]),
    ("kind unrelated: no guess", "apiVersion: v1\nkind: Deployment\n", "kind Deployment",
     [("kind", 'unknown kind "Deployment"', "known kinds: Service, HTTPRoute")]),
    ("apiVersion missing", "kind: Service\nmetadata: {name: a}\n", "kind Service",
     [("apiVersion", "Service needs apiVersion tulle.io/v1alpha1, got missing",
       "set apiVersion: tulle.io/v1alpha1")]),
    ("apiVersion of another kind", "apiVersion: gateway.networking.k8s.io/v1\nkind: Service\n",
     "kind Service",
     [("apiVersion", 'got "gateway.networking.k8s.io/v1"', "set apiVersion: tulle.io/v1alpha1")]),
    ("route apiVersion from Kubernetes core", "apiVersion: v1\nkind: HTTPRoute\n",
     "kind HTTPRoute",
     [("apiVersion", "HTTPRoute needs apiVersion gateway.networking.k8s.io/v1, got \"v1\"",
       "set apiVersion: gateway.networking.k8s.io/v1")]),
    ("metadata missing", SERVICE, "Service (unnamed)",
     [("metadata", "required field is missing", "add metadata: {name: NAME}")]),
    ("metadata not a mapping", SERVICE + "metadata: books\n", "Service (unnamed)",
     [("metadata", "expected a mapping, got string", "add metadata")]),
    ("name missing", SERVICE + "metadata: {namespace: shop}\n", "Service (unnamed)",
     [("metadata.name", "required field is missing", "add metadata.name")]),
    ("name is a number", SERVICE + "metadata: {name: 42}\n", "Service (unnamed)",
     [("metadata.name", "must be a string, got number", "")]),
    ("name empty", SERVICE + "metadata: {name: ''}\n", "Service default/",
     [("metadata.name", "must not be empty", "")]),
    ("name upper case", SERVICE + "metadata: {name: Books}\n", "Service default/Books",
     [("metadata.name", f'"Books" {INVALID_NAME}', "")]),
    ("name ends with a dash", SERVICE + "metadata: {name: books-}\n", "Service default/books-",
     [("metadata.name", f'"books-" {INVALID_NAME}', "")]),
    ("name with a dot", SERVICE + "metadata: {name: books.v1}\n", "Service default/books.v1",
     [("metadata.name", f'"books.v1" {INVALID_NAME}', "")]),
    ("name too long", SERVICE + f"metadata: {{name: {'a' * 64}}}\n", f"Service default/{'a' * 64}",
     [("metadata.name", "must be at most 63 characters, got 64", "")]),
    ("namespace invalid", SERVICE + "metadata: {name: books, namespace: My_Shop}\n",
     "Service My_Shop/books", [("metadata.namespace", f'"My_Shop" {INVALID_NAME}', "")]),
    ("namespace null", SERVICE + "metadata: {name: books, namespace: null}\n",
     "Service books", [("metadata.namespace", "must be a string, got null", "")]),
    ("annotations not a mapping", SERVICE + "metadata: {name: a, annotations: [x]}\n",
     "Service default/a", [("metadata.annotations", "expected a mapping, got list", "")]),
    ("annotation values must be strings", SERVICE + "metadata: {name: a, annotations: {n: 2}}\n",
     "Service default/a", [("metadata.annotations.n", "got number", "quote the value")]),
    ("labels not a mapping", SERVICE + "metadata: {name: a, labels: [app]}\n", "Service default/a",
     [("metadata.labels", "expected a mapping, got list", "")]),
    ("labels an empty string", SERVICE + "metadata: {name: a, labels: ''}\n", "Service default/a",
     [("metadata.labels", "expected a mapping, got string", "")]),
    ("label values must be strings", SERVICE + "metadata: {name: a, labels: {v: 2, beta: true}}\n",
     "Service default/a",
     [("metadata.labels.v", "label v=2: the value must be a string", ""),
      ("metadata.labels.beta", "label beta=True: the value must be a string", "")]),
    ("label key and value syntax", SERVICE + """\
metadata:
  name: a
  labels: {"app name": x, "-x": y, ok: "has space", "tulle.io/": z}
""", "Service default/a",
     [("metadata.labels.app name", "label key 'app name' is not valid", ""),
      ("metadata.labels.-x", "label key '-x' is not valid", ""),
      ("metadata.labels.ok", "label ok='has space': the value must be a string", ""),
      ("metadata.labels.tulle.io/", "label key 'tulle.io/' is not valid", "")]),
    ("unknown metadata field", SERVICE + "metadata: {name: a, nmespace: shop, uid: x}\n",
     "Service default/a",
     [("metadata.nmespace", 'unknown field "nmespace"', 'did you mean "namespace"?'),
      ("metadata.uid", 'unknown field "uid"', "known fields here: name, namespace, labels")]),
    ("unknown top-level field", SERVICE + "metadata: {name: a}\nspecs: {}\ndata: 1\n",
     "Service default/a",
     [("specs", 'unknown field "specs"', 'did you mean "spec"?'),
      ("data", 'unknown field "data"', "known fields here: apiVersion, kind, metadata, spec")]),
    ("spec not a mapping", SERVICE + "metadata: {name: a}\nspec: [protocol]\n",
     "Service default/a", [("spec", "expected a mapping, got list", "")]),
    ("metadata and spec problems reported together", SERVICE + """\
metadata: {name: Books, labels: {v: 1}}
extra: true
spec: {protocol: smtp, portt: 80}
""", "Service default/Books",
     [("metadata.name", INVALID_NAME, ""),
      ("metadata.labels.v", "the value must be a string", ""),
      ("extra", 'unknown field "extra"', "known fields here: apiVersion"),
      ("spec.protocol", "must be one of 'http', 'http2', 'grpc' or 'tcp', got \"smtp\"", ""),
      ("spec.portt", 'unknown field "portt"', "known fields here: protocol")]),
    ("spec checked when metadata is missing", SERVICE + "spec: {protocl: tcp}\n",
     "Service (unnamed)",
     [("metadata", "required field is missing", "add metadata"),
      ("spec.protocl", 'unknown field "protocl"', 'did you mean "protocol"?')]),
]


@pytest.mark.parametrize(("text", "resource", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_envelope_problem(text: str, resource: str, expected: list[Expected]) -> None:
    found = problems(text)
    assert_problems(found, expected)
    assert {p.resource for p in found} == {resource}
    assert {p.source for p in found} == {"t.yaml#1"}
    assert {p.level for p in found} == {"error"}


def test_status_is_ignored_whatever_it_holds() -> None:
    text = SERVICE + "metadata: {name: a}\nstatus: [anything, {at: all}]\nspec: {protocol: tcp}\n"
    found = problems(text + "bogus: 1\n")
    assert [p.field for p in found] == ["bogus"]
