"""Bad input is refused with an error naming file, resource and field, and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.mesh import Mesh

pytestmark = pytest.mark.envoy

GOOD_SERVICE = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: authors}
spec: {protocol: http}
"""

# (case, file content, text the error must contain)
CASES = [
    ("malformed yaml", "apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata:\n  name: [x\n",
     ["bad.yaml:5", "malformed YAML", "starts at line 4"]),
    ("unknown kind", "apiVersion: tulle.io/v1alpha1\nkind: Servce\nmetadata: {name: x}\n",
     ["bad.yaml:2:1", 'unknown kind "Servce"', 'did you mean "Service"']),
    ("mistyped field", GOOD_SERVICE.replace("protocol: http", "protocl: http"),
     ["bad.yaml:4:8", "Service default/authors", "spec.protocl", 'did you mean "protocol"']),
    ("wrong type", GOOD_SERVICE.replace("protocol: http", "protocol: 7"),
     ["Service default/authors", "spec.protocol", "must be one of"]),
    ("missing field", """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r1}
spec:
  rules:
  - backendRefs: [{name: books}]
""", ["bad.yaml:4:1", "HTTPRoute default/r1", "spec.parentRefs",
      "required field is missing"]),
    ("missing name", "apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {}\n",
     ["metadata.name", "required field is missing"]),
    ("negative weight", """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r1}
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: books, weight: -1}]
""", ["bad.yaml:7:33", "HTTPRoute default/r1", "spec.rules[0].backendRefs[0].weight",
      "at least 0"]),
    ("unknown service", """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r1}
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: bookz}]
""", ["HTTPRoute default/r1", "spec.rules[0].backendRefs[0].name", 'unknown service "bookz"',
      'did you mean "books"']),
    ("regex that does not compile", """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r1}
spec:
  parentRefs: [{name: books}]
  rules:
  - matches: [{path: {type: RegularExpression, value: "/items/([0-9]+"}}]
    backendRefs: [{name: books}]
""", ["HTTPRoute default/r1", "spec.rules[0].matches[0].path.value", "does not compile",
      "missing )"]),
    ("percentage above 100", """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: chaos}
spec:
  targetRefs: [{kind: Service, name: books}]
  faultInjection: {abort: {httpStatus: 503, percent: 150}}
""", ["TrafficPolicy default/chaos", "spec.faultInjection.abort.percent", "at most 100"]),
    ("a string for an integer", """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: pool}
spec:
  targetRefs: [{kind: Service, name: books}]
  connectionPool:
    maxConnections: "ten"
""", ["bad.yaml:7:5", "spec.connectionPool.maxConnections", "expected an integer",
      "write a number"]),
    ("zero-size pool", """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: pool}
spec:
  targetRefs: [{kind: Service, name: books}]
  connectionPool: {maxConnections: 0}
""", ["TrafficPolicy default/pool", "spec.connectionPool.maxConnections", "at least 1"]),
    ("unknown mirror backend", """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r1}
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: books}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadowz}}
""", ["spec.rules[0].filters[0].requestMirror.backendRef.name", 'unknown service "shadowz"']),
    ("policy for an unknown route", """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: limit}
spec:
  targetRefs: [{kind: HTTPRoute, group: gateway.networking.k8s.io, name: nosuch}]
  rateLimit: {requests: 10}
""", ["spec.targetRefs[0].name", 'unknown HTTPRoute "nosuch"']),
    ("duplicate names", GOOD_SERVICE + "---\n" + GOOD_SERVICE,
     ["bad.yaml:8:12", "duplicate name", "Service default/authors"]),
    ("one good, one bad: nothing applied", GOOD_SERVICE + "---\n" +
     GOOD_SERVICE.replace("authors", "Bad_Name"),
     ["bad.yaml:8:12", "metadata.name", "is not a valid name"]),
]


def test_bad_input_is_refused_and_changes_nothing(mesh: Mesh, tmp_path: Path) -> None:
    mesh.run("books", name="books-1")
    mesh.run("web", name="web-1")
    mesh.wait_endpoints("web-1", "books", {"books-1"})
    mesh.sync()
    status = mesh.status()
    proxies = {p["node"]: p for p in mesh.api.get("/v1/proxies")}
    bad = tmp_path / "bad.yaml"

    for case, content, expected in CASES:
        bad.write_text(content)
        result = mesh.cli("apply", "-f", str(bad), check=False)
        assert result.returncode != 0, f"{case}: accepted"
        for text in expected:
            assert text in result.stderr, f"{case}: {text!r} not in:\n{result.stderr}"
        assert "nothing was applied" in result.stderr or "malformed" in result.stderr, case

    after = mesh.status()
    assert after["storeRevision"] == status["storeRevision"]
    assert after["meshVersion"] == status["meshVersion"], "nothing may be pushed"
    assert mesh.cli("get", "services", "-o", "json").stdout.count('"declared": true') == 0
    for node, proxy in ((p["node"], p) for p in mesh.api.get("/v1/proxies")):
        assert {t: s["ackedVersion"] for t, s in proxy["types"].items()} == {
            t: s["ackedVersion"] for t, s in proxies[node]["types"].items()}, node


def test_valid_apply_then_unchanged(mesh: Mesh, tmp_path: Path) -> None:
    (tmp_path / "manifests").mkdir()
    good = tmp_path / "manifests" / "good.yaml"
    good.write_text(GOOD_SERVICE)
    assert "service/authors (default) created" in mesh.cli("apply", "-f", str(good)).stdout
    assert "unchanged" in mesh.cli("apply", "-f", str(good)).stdout
    dry = mesh.cli("apply", "-f", str(good.parent), "--dry-run").stdout
    assert "unchanged (dry run)" in dry
    assert "authors" in mesh.cli("get", "services").stdout
    assert mesh.cli("delete", "service", "authors").returncode == 0
    missing = mesh.cli("delete", "service", "authors", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr
