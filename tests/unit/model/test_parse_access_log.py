"""A Service's spec.accessLog switch and the Mesh's spec.accessLog.redactHeaders."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.model.documents import Expected, assert_problems, parse, problems
from tulle.model.access_log import MeshAccessLog, ServiceAccessLog
from tulle.model.mesh import build_mesh
from tulle.model.meta import ServiceRef


def mesh_yaml(access_log: Any) -> str:
    return ("apiVersion: tulle.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\n"
            "spec: " + json.dumps({"accessLog": access_log}) + "\n")


def service_yaml(spec: Any) -> str:
    return ("apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {name: books}\n"
            "spec: " + json.dumps(spec) + "\n")


def test_valid() -> None:
    [mesh] = parse(mesh_yaml({"redactHeaders": ["X-Api-Key", "x-session_id.v2"]}))
    assert mesh.spec.access_log == MeshAccessLog(("X-Api-Key", "x-session_id.v2"))
    assert mesh.spec.access_log.redacted() == (
        "authorization", "cookie", "set-cookie", "x-api-key", "x-session_id.v2")
    [service] = parse(service_yaml({"accessLog": {"enabled": True}}))
    assert service.spec.access_log == ServiceAccessLog(enabled=True)


def test_the_switch_reaches_the_snapshot() -> None:
    snapshot = build_mesh(1, parse(service_yaml({"accessLog": {"enabled": True}})
                                   + "---\n" + service_yaml({}).replace("books", "authors")),
                          [])
    assert snapshot.services[ServiceRef("default", "books")].access_log is True
    assert snapshot.services[ServiceRef("default", "authors")].access_log is False
    assert build_mesh(1, (), []).settings.access_log.redacted() == (
        "authorization", "cookie", "set-cookie")


FIELD = "spec.accessLog.redactHeaders"
# (case, YAML, expected problems)
INVALID: list[tuple[str, str, list[Expected]]] = [
    ("pseudo-header", mesh_yaml({"redactHeaders": [":path"]}),
     [(f"{FIELD}[0]", 'not a header name tulle can redact', "pseudo-headers")]),
    ("quote", mesh_yaml({"redactHeaders": ["x-a'b"]}),
     [(f"{FIELD}[0]", "not a header name", "letters, digits")]),
    ("percent", mesh_yaml({"redactHeaders": ["x-%REQ"]}),
     [(f"{FIELD}[0]", "not a header name", "letters, digits")]),
    ("built in", mesh_yaml({"redactHeaders": ["Authorization"]}),
     [(f"{FIELD}[0]", "Authorization is always redacted", "remove it")]),
    ("twice", mesh_yaml({"redactHeaders": ["x-key", "X-Key"]}),
     [(f"{FIELD}[1]", "listed twice", "remove one")]),
    ("too many", mesh_yaml({"redactHeaders": [f"x-{i}" for i in range(33)]}),
     [(FIELD, "at most 32 item(s), got 33", "")]),
    ("not a list", mesh_yaml({"redactHeaders": "x-key"}),
     [(FIELD, "expected a list", "")]),
    ("misspelt", mesh_yaml({"redact": ["x-key"]}),
     [("spec.accessLog.redact", 'unknown field "redact"', 'did you mean "redactHeaders"?')]),
    ("switch not a boolean", service_yaml({"accessLog": {"enabled": "yes"}}),
     [("spec.accessLog.enabled", "expected true or false", "")]),
    ("switch on a subset", service_yaml({"selector": {"service": "books"},
                                          "accessLog": {"enabled": True}}),
     [("spec.accessLog", "a subset (a Service with a selector) has no instances",
       "on the Service its workloads register under")]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid(text: str, expected: list[Expected]) -> None:
    assert_problems(problems(text), expected)


def test_a_subset_may_say_it_does_not_log() -> None:
    [service] = parse(service_yaml({"selector": {"service": "books"},
                                    "accessLog": {"enabled": False}}))
    assert service.spec.access_log == ServiceAccessLog(enabled=False)
