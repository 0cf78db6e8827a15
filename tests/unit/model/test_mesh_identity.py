"""The snapshot's identity view: which SPIFFE IDs each service may present, and its mTLS mode."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from tests.unit.model.documents import parse
from tests.unit.model.workloads import workload
from tulle.model.mesh import NO_IDENTITY, MeshIdentity, build_mesh
from tulle.model.meshconfig import CertificateSettings, MeshSpec
from tulle.model.meta import ServiceRef
from tulle.model.service import MtlsSettings
from tulle.model.workload import Workload, WorkloadState

TD = "example.org"
IDENTITY = MeshIdentity(TD, "BUNDLE", MappingProxyType({}))
BOOKS, DB = ServiceRef("default", "books"), ServiceRef("default", "db")


def sid(namespace: str, account: str) -> str:
    return f"spiffe://{TD}/ns/{namespace}/sa/{account}"


def as_account(w: Workload, account: str) -> Workload:
    return replace(w, service_account=account)


def test_identities_are_the_accounts_of_a_services_workloads() -> None:
    mesh = build_mesh(1, [], [
        workload("books-1", "books"),  # no account: the service's name
        as_account(workload("books-2", "books"), "books-admin"),
        as_account(workload("books-3", "books", state=WorkloadState.STARTING), "books-admin"),
        workload("books-1", "books", namespace="shop"),
        workload("web-1", "web", inbound_port=None, upstreams=(("default", "authors"),)),
    ], IDENTITY)
    identities = {ref: s.identities for ref, s in mesh.services.items()}
    assert identities == {
        BOOKS: (sid("default", "books"), sid("default", "books-admin")),
        ServiceRef("shop", "books"): (sid("shop", "books"),),
        ServiceRef("default", "web"): (sid("default", "web"),),
        ServiceRef("default", "authors"): (),  # no instance yet
    }
    assert mesh.identity is IDENTITY


def test_declared_and_routed_services_get_their_identities_too() -> None:
    resources = parse("""\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: db}
spec: {protocol: tcp}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: books}]
  rules: [{backendRefs: [{name: books-v2}]}]
""")
    mesh = build_mesh(1, resources, [as_account(workload("db-1", "db"), "dba"),
                                     workload("books-v2-1", "books-v2")], IDENTITY)
    assert mesh.services[DB].identities == (sid("default", "dba"),)
    assert mesh.services[ServiceRef("default", "books-v2")].identities == (
        sid("default", "books-v2"),)
    assert mesh.services[BOOKS].identities == ()


def test_without_a_trust_domain_there_are_no_identities() -> None:
    mesh = build_mesh(1, [], [workload("books-1", "books")])
    assert mesh.identity == NO_IDENTITY
    assert mesh.services[BOOKS].identities == ()


MESH_PERMISSIVE = """\
apiVersion: tulle.io/v1alpha1
kind: Mesh
metadata: {name: default}
spec:
  mtls: {mode: PERMISSIVE}
  certificates: {workloadLifetime: 1h}
"""


def service(name: str, mode: str | None) -> str:
    mtls = f"spec: {{mtls: {{mode: {mode}}}}}\n" if mode else ""
    return f"---\napiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {{name: {name}}}\n{mtls}"


# (case, resources YAML, the mode of: books (declared), web (derived))
MODES = [
    ("no Mesh: STRICT", service("books", None), "STRICT", "STRICT"),
    ("Mesh PERMISSIVE", MESH_PERMISSIVE + service("books", None), "PERMISSIVE", "PERMISSIVE"),
    ("Service STRICT overrides the Mesh", MESH_PERMISSIVE + service("books", "STRICT"),
     "STRICT", "PERMISSIVE"),
    ("Service PERMISSIVE overrides the default", service("books", "PERMISSIVE"),
     "PERMISSIVE", "STRICT"),
]


@pytest.mark.parametrize(("text", "books", "web"), [m[1:] for m in MODES],
                         ids=[m[0] for m in MODES])
def test_mtls_mode_comes_from_the_service_or_the_mesh(text: str, books: str, web: str) -> None:
    mesh = build_mesh(1, parse(text.removeprefix("---\n")),
                      [workload("books-1", "books"), workload("web-1", "web")], IDENTITY)
    assert mesh.services[BOOKS].mtls_mode == books
    assert mesh.services[ServiceRef("default", "web")].mtls_mode == web


def test_settings_come_from_the_mesh_resource() -> None:
    mesh = build_mesh(1, parse(MESH_PERMISSIVE), [], IDENTITY)
    assert mesh.settings == MeshSpec(MtlsSettings("PERMISSIVE"), CertificateSettings("1h"))
    assert mesh.settings.workload_lifetime_s == 3600.0
    assert build_mesh(1, [], []).settings == MeshSpec()
    assert build_mesh(1, [], []).settings.workload_lifetime_s == 86400.0
