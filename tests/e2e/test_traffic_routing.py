"""HTTPRoute behaviour through real sidecars: matches, subsets, weighted splits, mirroring."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.support.http import control, counter, request
from tests.support.mesh import Mesh, wait_for
from tests.support.ports import free_port
from tests.support.scenarios import BOOKS_VERSIONS

pytestmark = pytest.mark.envoy

SUBSETS = BOOKS_VERSIONS

MATCHES = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - matches:
    - headers: [{name: x-canary, value: "yes"}]
    - path: {type: PathPrefix, value: /v2}
    - path: {type: RegularExpression, value: "/items/[0-9]+/beta"}
    - method: DELETE
    - queryParams: [{name: track, value: beta}]
    backendRefs: [{name: books-v2}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-served-by-rule, value: canary}]}
  - backendRefs: [{name: books-v1}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: x-route, value: stable}], remove: [x-secret]}
"""

SPLIT = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: books}}
spec:
  parentRefs: [{{name: books}}]
  rules:
  - backendRefs: [{{name: books-v1, weight: {v1}}}, {{name: books-v2, weight: {v2}}}]
"""


def start(mesh: Mesh) -> int:
    """books v1 and v2, their subsets, and a client whose local port leads to books."""
    mesh.cli("apply", "-f", "-", stdin=SUBSETS)
    mesh.run("books", name="books-1", extra=("--version", "v1"))
    mesh.run("books", name="books-2", extra=("--version", "v2"))
    port = free_port()
    mesh.run("web", name="web-1", extra=("--upstream", f"books:{port}"))
    mesh.wait_endpoints("web-1", "books-v2", {"books-2"})
    return port


def test_matches_route_to_the_right_subset(mesh: Mesh) -> None:
    port = start(mesh)
    mesh.cli("apply", "-f", "-", stdin=MATCHES)
    mesh.sync()
    v2 = [request(port, "/", headers={"x-canary": "yes"}), request(port, "/v2/list"),
          request(port, "/items/42/beta"), request(port, "/", method="DELETE"),
          request(port, "/?track=beta")]
    assert [r.workload for r in v2] == ["books-2"] * 5, [r.body for r in v2]
    assert all(r.headers.get("x-served-by-rule") == "canary" for r in v2)
    v1 = [request(port, "/", headers={"x-canary": "no", "x-secret": "s3cret"}),
          request(port, "/v2x"), request(port, "/items/42"), request(port, "/?track=stable")]
    assert [r.workload for r in v1] == ["books-1"] * 4, [r.body for r in v1]
    headers = {k.lower(): v for k, v in v1[0].body["headers"].items()}
    assert headers["x-route"] == "stable" and "x-secret" not in headers


def test_weighted_split_lands_within_tolerance_and_shifts_live(mesh: Mesh) -> None:
    port = start(mesh)
    mesh.cli("apply", "-f", "-", stdin=SPLIT.format(v1=90, v2=10))
    mesh.sync()
    pids = {w["name"]: w["pid"] for w in mesh.api.get("/v1/workloads")}
    seen = Counter(request(port, f"/{i}").workload for i in range(1000))
    # Binomial(1000, 0.1): mean 100, sd 9.5; +-4 sd keeps false alarms below 1e-4.
    print(f"measured: 90/10 split over 1000 requests: {dict(seen)}")
    assert 62 <= seen["books-2"] <= 138, seen
    assert seen["books-1"] + seen["books-2"] == 1000
    mesh.cli("apply", "-f", "-", stdin=SPLIT.format(v1=0, v2=100))
    mesh.sync()
    assert {request(port, "/").workload for _ in range(50)} == {"books-2"}
    assert {w["name"]: w["pid"] for w in mesh.api.get("/v1/workloads")} == pids


MIRROR = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: books-v1}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow}}
"""


def test_mirror_gets_copies_and_its_failures_never_reach_the_caller(mesh: Mesh) -> None:
    port = start(mesh)
    shadow = mesh.run("shadow", name="shadow-1")
    mesh.cli("apply", "-f", "-", stdin=MIRROR)
    mesh.wait_endpoints("web-1", "shadow", {"shadow-1"})
    mesh.sync()
    assert shadow.app_port is not None
    control(shadow.app_port, reset=1)
    replies = [request(port, f"/copy/{i}") for i in range(20)]
    assert {r.workload for r in replies} == {"books-1"}
    wait_for("the copies to reach the mirror", lambda: counter(shadow.app_port) >= 20)
    assert counter(shadow.app_port) == 20  # every request was copied
    # The mirror now fails, slowly: callers see neither. A caller that waited for the mirror
    # would take its 5 s; half of that leaves room for a loaded machine.
    control(shadow.app_port, fail=500, every=1, delay=5000)
    replies = [request(port, "/after") for _ in range(5)]
    assert all(r.status == 200 and r.workload == "books-1" for r in replies)
    assert max(r.seconds for r in replies) < 2.5, [r.seconds for r in replies]


POLICY = """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-pool}
spec:
  targetRefs: [{kind: Service, name: books}]
  connectionPool: {maxConnections: 50}
  outlierDetection: {consecutive5xx: 3}
---
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-pool-2}
spec:
  targetRefs: [{kind: Service, name: books}]
  connectionPool: {maxConnections: 10}
"""


def test_describe_shows_routes_policies_and_their_sources(mesh: Mesh) -> None:
    start(mesh)
    mesh.cli("apply", "-f", "-", stdin=MATCHES)
    applied = mesh.cli("apply", "-f", "-", "-o", "json", stdin=POLICY)
    # The apply goes through with the analyzer's message, worded as `tulle analyze` words it
    # (on stderr) and shaped as `tulle analyze -o json` shapes it.
    [warning] = json.loads(applied.stdout)["warnings"]
    assert (warning["code"], warning["level"], warning["resource"], warning["field"]) == (
        "TUL0018", "warning", {"kind": "TrafficPolicy", "namespace": "default",
                               "name": "books-pool-2"}, "spec.connectionPool")
    assert warning["docs"] == "docs/diagnostics/TUL0018.md" and warning["fix"]
    assert "warning: this apply introduces 1 analyzer message" in applied.stderr
    assert "WARNING TUL0018  TrafficPolicy default/books-pool-2  <stdin>:9  " \
        "spec.connectionPool\n" in applied.stderr  # the second document, from its "---"
    assert "Service default/books already gets connectionPool from TrafficPolicy " \
        "default/books-pool; this policy's connectionPool is ignored" in applied.stderr
    again = json.loads(mesh.cli("apply", "-f", "-", "-o", "json", stdin=POLICY).stdout)
    assert again["warnings"] == []  # still true, but not introduced by this apply
    described = json.loads(mesh.cli("describe", "service", "books", "-o", "json").stdout)
    assert [i["name"] for i in described["instances"]] == ["books-1", "books-2"]
    assert [r["from"] for r in described["routes"]] == ["HTTPRoute default/books"] * 6
    assert described["routes"][-1]["backends"] == [{"service": "books-v1", "weight": 1}]
    policy = {p["setting"]: p for p in described["policy"]}
    assert policy["connectionPool"]["from"] == "TrafficPolicy default/books-pool"
    assert policy["connectionPool"]["value"] == {"maxConnections": 50}
    assert policy["outlierDetection"]["value"]["consecutive5xx"] == 3
    assert described["conflicts"][0]["ignored"] == "TrafficPolicy default/books-pool-2"
    assert {s["name"] for s in described["subsets"]} == {"books-v1", "books-v2"}
    text = mesh.cli("describe", "service", "books").stdout
    assert "TrafficPolicy default/books-pool" in text and "Routes, in match order" in text
    v2 = json.loads(mesh.cli("describe", "service", "books-v2", "-o", "json").stdout)
    assert v2["endpoints"] == ["books-2"] and v2["backendOf"] == ["HTTPRoute default/books"]
