"""Routing by service name across namespaces, HTTPRoutes, and TCP services."""

from __future__ import annotations

import socket
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.support.mesh import Mesh, wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.envoy

APPS = Path(__file__).resolve().parent.parent / "apps"

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books-route}
spec:
  parentRefs: [{name: books}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: books-v2}]
  - matches: [{path: {type: Exact, value: /only-v1}}]
    backendRefs: [{name: books}]
  - backendRefs: [{name: books, weight: 50}, {name: books-v2, weight: 50}]
"""


def served_by(mesh: Mesh, client: object, path: str) -> str:
    result = mesh.call(client, f"http://books{path}")  # type: ignore[arg-type]
    assert result["status"] == 200, result
    return str(result["body"]["workload"])


def test_httproute_paths_and_weights_apply_live(mesh: Mesh, tmp_path: Path) -> None:
    mesh.run("books", name="books-1")
    mesh.run("books-v2", name="books-v2-1")
    client = mesh.run("web", name="web-1")
    mesh.wait_endpoints("web-1", "books-v2", {"books-v2-1"})
    (tmp_path / "route.yaml").write_text(ROUTE)
    mesh.cli("apply", "-f", str(tmp_path / "route.yaml"))
    mesh.sync()

    assert served_by(mesh, client, "/v2/list") == "books-v2-1"
    assert served_by(mesh, client, "/v2") == "books-v2-1"
    assert served_by(mesh, client, "/only-v1") == "books-1"
    split = Counter(served_by(mesh, client, "/v2x") for _ in range(60))  # not a /v2 segment
    assert set(split) == {"books-1", "books-v2-1"}, split
    services = {s["name"]: s for s in mesh.api.get("/v1/services")}
    assert services["books"]["routes"] == ["default/books-route"]

    mesh.cli("delete", "httproute", "books-route")
    mesh.sync()
    assert {served_by(mesh, client, "/v2/list") for _ in range(10)} == {"books-1"}


def test_services_are_namespaced(mesh: Mesh) -> None:
    mesh.run("books", name="books-1", namespace="shop")
    client = mesh.run("web", name="web-1")
    wait_for("web-1 to see books.shop", lambda: mesh.call(
        client, "http://books.shop/")["status"] == 200)
    assert mesh.call(client, "http://books.shop/")["body"]["workload"] == "books-1"
    # The short name means "in my namespace": there is no books in default.
    assert mesh.call(client, "http://books/")["status"] == 502
    names = {(w["namespace"], w["name"]) for w in mesh.api.get("/v1/workloads")}
    assert names == {("shop", "books-1"), ("default", "web-1")}


def test_tcp_service_through_an_upstream_bind(mesh: Mesh, tmp_path: Path) -> None:
    (tmp_path / "kv.yaml").write_text(
        "apiVersion: tulle.io/v1alpha1\nkind: Service\nmetadata: {name: kv}\n"
        "spec: {protocol: tcp}\n")
    mesh.cli("apply", "-f", str(tmp_path / "kv.yaml"))
    port = free_port()
    mesh.run("kv", name="kv-1", port=port,
             command=[sys.executable, str(APPS / "tcp_echo.py"), str(port)])
    local = free_port()
    client = mesh.run("web", name="web-1", extra=("--upstream", f"kv:{local}"))
    mesh.wait_endpoints("web-1", "kv", {"kv-1"})

    with socket.create_connection(("127.0.0.1", local), timeout=5) as conn:
        conn.sendall(b"hello\n")
        assert conn.makefile("rb").readline() == b"kv-1:hello\n"
    # Asking for a TCP service by HTTP name explains how to reach it instead.
    result = mesh.call(client, "http://kv/")
    assert result["status"] == 400
    assert "--upstream" in result["body"]
