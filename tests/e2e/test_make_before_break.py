"""Make-before-break through real sidecars under steady traffic: one apply that adds subset
Services and a route to them (new clusters and the route that uses them, together) never
answers a caller 503 while the caller's Envoy warms the new clusters."""

from __future__ import annotations

import json

import pytest

from tests.support.load import Load
from tests.support.mesh import Mesh, wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.envoy

ROUND = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {{name: books-r{n}-a}}
spec: {{selector: {{service: books, version: v1}}}}
---
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {{name: books-r{n}-b}}
spec: {{selector: {{service: books, version: v2}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: books}}
spec:
  parentRefs: [{{name: books}}]
  rules:
  - backendRefs: [{{name: books-r{n}-a, weight: 50}}, {{name: books-r{n}-b, weight: 50}}]
"""

ROUNDS = 15


def acked_route_to(mesh: Mesh, node: str, cluster: str) -> bool:
    """Whether ``node``'s Envoy runs a route to ``cluster`` (its own config_dump)."""
    dump = json.loads(mesh.cli("proxy-config", "routes", node, "-o", "json").stdout)
    return cluster in json.dumps(dump)


def test_new_subsets_and_the_route_to_them_in_one_apply_fail_no_request(mesh: Mesh) -> None:
    mesh.run("books", name="books-1", extra=("--version", "v1"))
    mesh.run("books", name="books-2", extra=("--version", "v2"))
    port = free_port()
    mesh.run("web", name="web-1", extra=("--upstream", f"books:{port}"))
    load = Load(port, rate=200, threads=8, path="/").start()
    try:
        wait_for("traffic through web-1", lambda: load.result.ok > 50, timeout=30)
        for n in range(ROUNDS):
            before = load.result.sent
            mesh.cli("apply", "-f", "-", stdin=ROUND.format(n=n))
            mesh.sync()
            wait_for(f"web-1 to route to books-r{n}-b",
                     lambda n=n: acked_route_to(mesh, "web-1", f"books-r{n}-b"), timeout=30)
            # Traffic went on through the change: the round is judged on requests sent
            # across it, not on an idle moment.
            wait_for("requests after the change", lambda b=before: load.result.sent > b + 100,
                     timeout=30)
    finally:
        result = load.stop()
        result.report(f"200 req/s through {ROUNDS} applies of new subsets with their route")
    assert result.failures == [], result.failures[:5]
