"""The Mesh kind (one per mesh, not namespaced) and a Service's mTLS override."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.model.documents import Expected, assert_problems, parse, problems
from tulle.model.meshconfig import CertificateSettings, MeshSpec
from tulle.model.meta import ResourceKey
from tulle.model.service import MtlsSettings, ServiceSpec

MESH_HEAD = "apiVersion: tulle.io/v1alpha1\nkind: Mesh\n"
LIFETIME = "spec.certificates.workloadLifetime"
NOT_A_DURATION = "write numbers with units (ms, s, m, h, d)"


def mesh_yaml(spec: Any, metadata: Any = None) -> str:
    return (MESH_HEAD + "metadata: " + json.dumps(metadata or {"name": "default"}) + "\n"
            + ("" if spec is None else "spec: " + json.dumps(spec) + "\n"))


def service_yaml(spec: Any) -> str:
    return ("apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {name: books}\n"
            "spec: " + json.dumps(spec) + "\n")


def lifetime(value: Any) -> str:
    return mesh_yaml({"certificates": {"workloadLifetime": value}})


# (case, YAML, the parsed spec, its workload lifetime in seconds)
VALID: list[tuple[str, str, Any, float | None]] = [
    ("no spec: STRICT, 24h", mesh_yaml(None), MeshSpec(), 86400.0),
    ("empty parts", mesh_yaml({"certificates": {}}), MeshSpec(), 86400.0),
    ("permissive", mesh_yaml({"mtls": {"mode": "PERMISSIVE"}}),
     MeshSpec(mtls=MtlsSettings("PERMISSIVE")), 86400.0),
    ("lower bound", lifetime("2s"), MeshSpec(certificates=CertificateSettings("2s")), 2.0),
    ("lower bound in ms", lifetime("2000ms"), None, 2.0),
    ("upper bound", lifetime("90d"), None, 90 * 86400.0),
    ("minutes", lifetime("90m"), None, 5400.0),
    ("fractional", lifetime("1.5h"), None, 5400.0),
    ("an empty namespace is no namespace", mesh_yaml(None, {"name": "default", "namespace": ""}),
     MeshSpec(), None),
    ("service mtls", service_yaml({"mtls": {"mode": "PERMISSIVE"}}),
     ServiceSpec(mtls=MtlsSettings("PERMISSIVE")), None),
    ("service mtls strict, tcp", service_yaml({"protocol": "tcp", "mtls": {"mode": "STRICT"}}),
     ServiceSpec("tcp", MtlsSettings("STRICT")), None),
    ("service without mtls follows the mesh", service_yaml({}), ServiceSpec(mtls=None), None),
]


@pytest.mark.parametrize(("text", "spec", "seconds"), [c[1:] for c in VALID],
                         ids=[c[0] for c in VALID])
def test_valid(text: str, spec: Any, seconds: float | None) -> None:
    [resource] = parse(text)
    if spec is not None:
        assert resource.spec == spec
    if seconds is not None:
        assert resource.spec.workload_lifetime_s == pytest.approx(seconds)
    if resource.kind == "Mesh":
        assert resource.key == ResourceKey("Mesh", "", "default")
        assert "namespace" not in resource.manifest["metadata"]


MODES = "must be one of 'STRICT' or 'PERMISSIVE'"
# (case, YAML, resource every problem names, expected problems)
INVALID: list[tuple[str, str, str, list[Expected]]] = [
    ("namespaced", mesh_yaml(None, {"name": "default", "namespace": "shop"}), "Mesh default",
     [("metadata.namespace", "Mesh is not namespaced", "remove metadata.namespace")]),
    ("another name", mesh_yaml(None, {"name": "prod"}), "Mesh prod",
     [("metadata.name", "there is one Mesh, named default", "set metadata.name: default")]),
    ("name not a DNS label", mesh_yaml(None, {"name": "Default"}), "Mesh Default",
     [("metadata.name", "is not a valid name", "")]),
    ("apiVersion of a route", "apiVersion: gateway.networking.k8s.io/v1\nkind: Mesh\n",
     "kind Mesh", [("apiVersion", "Mesh needs apiVersion tulle.io/v1alpha1",
                    "set apiVersion: tulle.io/v1alpha1")]),
    ("mode in lower case", mesh_yaml({"mtls": {"mode": "strict"}}), "Mesh default",
     [("spec.mtls.mode", f'{MODES}, got "strict"', "")]),
    ("mode DISABLE", mesh_yaml({"mtls": {"mode": "DISABLE"}}), "Mesh default",
     [("spec.mtls.mode", MODES, "")]),
    ("mode missing", mesh_yaml({"mtls": {}}), "Mesh default",
     [("spec.mtls.mode", "required field is missing", "")]),
    ("mtls a string", mesh_yaml({"mtls": "STRICT"}), "Mesh default",
     [("spec.mtls", 'expected a mapping, got string "STRICT"', "")]),
    ("misspelt mtls field", mesh_yaml({"mtls": {"mod": "STRICT"}}), "Mesh default",
     [("spec.mtls.mode", "required field is missing", ""),
      ("spec.mtls.mod", 'unknown field "mod"', 'did you mean "mode"?')]),
    ("misspelt lifetime field", mesh_yaml({"certificates": {"lifetime": "1h"}}), "Mesh default",
     [("spec.certificates.lifetime", 'unknown field "lifetime"',
       'did you mean "workloadLifetime"?')]),
    ("lifetime a number", lifetime(24), "Mesh default",
     [(LIFETIME, "expected a string, got number 24", "")]),
    ("lifetime without a unit", lifetime("24"), "Mesh default",
     [(LIFETIME, '"24" is not a duration', NOT_A_DURATION)]),
    ("lifetime unit in upper case", lifetime("24H"), "Mesh default",
     [(LIFETIME, "is not a duration", NOT_A_DURATION)]),
    ("lifetime negative", lifetime("-5m"), "Mesh default",
     [(LIFETIME, "is not a duration", NOT_A_DURATION)]),
    ("lifetime with a trailing newline", lifetime("24h\n"), "Mesh default",
     [(LIFETIME, "is not a duration", NOT_A_DURATION)]),
    ("lifetime empty", lifetime(""), "Mesh default",
     [(LIFETIME, "must have at least 2 characters", "")]),
    ("lifetime below 2s", lifetime("1999ms"), "Mesh default",
     [(LIFETIME, "must be between 2s and 90d, got 1999ms", "")]),
    ("lifetime above 90d", lifetime("2161h"), "Mesh default",
     [(LIFETIME, "must be between 2s and 90d, got 2161h", "")]),
    ("service mode unknown", service_yaml({"mtls": {"mode": "OFF"}}), "Service default/books",
     [("spec.mtls.mode", f'{MODES}, got "OFF"', "")]),
    ("service mtls null mode", service_yaml({"mtls": {"mode": None}}), "Service default/books",
     [("spec.mtls.mode", MODES, "")]),
    ("service lifetime belongs to the Mesh", service_yaml({"certificates": {}}),
     "Service default/books",
     [("spec.certificates", 'unknown field "certificates"', "known fields here")]),
]


@pytest.mark.parametrize(("text", "resource", "expected"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid(text: str, resource: str, expected: list[Expected]) -> None:
    found = problems(text)
    assert_problems(found, expected)
    assert {p.resource for p in found} == {resource}


def test_there_is_only_one_mesh_per_batch() -> None:
    found = problems(mesh_yaml(None) + "---\n" + mesh_yaml({"mtls": {"mode": "PERMISSIVE"}}))
    assert_problems(found, [("metadata.name", "t.yaml#1 already defines Mesh default",
                             "unique name")])
    assert found[0].source == "t.yaml#2"
