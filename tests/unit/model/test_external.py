"""ExternalService: what validation refuses (external.py), host collisions (references.py),
and which one a snapshot keeps for a host (mesh.py)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support.outside import server_cert
from tests.unit.model.documents import Expected, assert_problems, parse, problems
from tulle.model.mesh import build_mesh
from tulle.model.meta import ServiceRef
from tulle.model.references import reference_problems


def external(spec: dict[str, Any], name: str = "api", namespace: str = "default") -> str:
    return yaml.safe_dump({"apiVersion": "tulle.io/v1alpha1", "kind": "ExternalService",
                           "metadata": {"name": name, "namespace": namespace}, "spec": spec})


HTTP = [{"port": 80, "protocol": "http"}]

REFUSED: list[tuple[str, dict[str, Any], list[Expected]]] = [
    ("single label host", {"host": "payments", "ports": HTTP},
     [("spec.host", "is a single label", "api.example.com")]),
    ("capitals", {"host": "Api.example.com", "ports": HTTP},
     [("spec.host", "has capitals", "api.example.com")]),
    ("bad label", {"host": "api-.example.com", "ports": HTTP},
     [("spec.host", 'label "api-"', "api.example.com")]),
    ("trailing dot", {"host": "api.example.com.", "ports": HTTP},
     [("spec.host", "ends with a dot", "api.example.com")]),
    ("bad address", {"host": "api.example.com", "ports": HTTP, "address": "db_1"},
     [("spec.address", "single label", "IP address")]),
    ("port twice", {"host": "api.example.com", "ports": [*HTTP, {"port": 80,
                                                                 "protocol": "tcp"}]},
     [("spec.ports[1].port", "port 80 is listed twice", "")]),
    ("two http ports", {"host": "api.example.com", "ports": [*HTTP, {"port": 8080}]},
     [("spec.ports[1].protocol", "one port may speak http", "its own ExternalService")]),
    ("origination without http port", {"host": "api.example.com",
                                       "ports": [{"port": 443, "protocol": "tls"}],
                                       "tls": {"caBundle": server_cert("a.b").ca_pem}},
     [("spec.tls", "applies to an http port", "protocol: http")]),
    ("bundle not PEM", {"host": "api.example.com", "ports": HTTP,
                        "tls": {"caBundle": "not a certificate"}},
     [("spec.tls.caBundle", "is not PEM certificates", "BEGIN CERTIFICATE")]),
    ("bad sni", {"host": "api.example.com", "ports": HTTP,
                 "tls": {"caBundle": server_cert("a.b").ca_pem, "sni": "x"}},
     [("spec.tls.sni", "single label", "")]),
]


@pytest.mark.parametrize(("case", "spec", "expected"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(case: str, spec: dict[str, Any], expected: list[Expected]) -> None:
    assert_problems(problems(external(spec)), expected)


def test_schema_refuses_an_unknown_protocol_and_a_port_out_of_range() -> None:
    found = problems(external({"host": "a.example", "ports": [{"port": 0, "protocol": "udp"}]}))
    assert {p.field for p in found} == {"spec.ports[0].port", "spec.ports[0].protocol"}


def test_accepted_forms() -> None:
    for spec in ({"host": "10.1.2.3", "ports": [{"port": 5432, "protocol": "tcp"}]},
                 {"host": "api.example.com", "ports": [{"port": 443, "protocol": "http"}],
                  "tls": {"caBundle": server_cert("api.example.com").ca_pem}},
                 {"host": "api.example.com", "address": "127.0.0.1",
                  "ports": [{"port": 443, "protocol": "tls"}, {"port": 80}]}):
        (resource,) = parse(external(spec))
        assert resource.spec.host == spec["host"]


def test_a_host_is_declared_once_and_never_as_a_mesh_service() -> None:
    first, second, as_service = (
        parse(external({"host": h, "ports": HTTP}, name=n))[0]
        for h, n in (("api.example.com", "a"), ("api.example.com", "b"),
                     ("books.shop", "c")))
    proposed = {r.key: r for r in (first, second, as_service)}
    found = reference_problems([first, second, as_service],
                               frozenset({ServiceRef("shop", "books")}), {}, proposed)
    assert [(p.resource, p.field) for p in found] == [
        ("ExternalService default/a", "spec.host"), ("ExternalService default/b", "spec.host"),
        ("ExternalService default/c", "spec.host")], found
    assert "already declares host" in found[1].message
    assert "how the mesh names service shop/books" in found[2].message


def test_the_snapshot_keeps_one_external_per_host_and_leaves_service_hosts_alone() -> None:
    resources = [parse(external({"host": h, "ports": HTTP}, name=n))[0]
                 for h, n in (("api.example.com", "b"), ("api.example.com", "a"),
                              ("books.default", "c"))]
    services = parse("apiVersion: tulle.io/v1alpha1\nkind: Service\n"
                     "metadata: {name: books, namespace: default}\nspec: {}\n")
    mesh = build_mesh(1, [*resources, *services], [])
    assert list(mesh.externals) == ["api.example.com"]
    assert mesh.externals["api.example.com"].ref == ServiceRef("default", "a")
