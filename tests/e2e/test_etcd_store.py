"""The control plane on etcd (`tulle up --store etcd://...`): resources, history and
workloads live in etcd, not in the state directory; a restart without --store opens etcd
again; `tulle check` checks etcd; bad --store values and a lost etcd are clear errors that
change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.etcd import etcd_server
from tests.support.mesh import Mesh
from tests.support.ports import free_port

pytestmark = pytest.mark.envoy

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: books}]
    timeouts: {request: 3s}
"""


@pytest.fixture
def etcd() -> Iterator[str]:
    with etcd_server() as url:
        yield url


def test_a_control_plane_on_etcd_keeps_everything_there(tmp_path: Path, etcd: str) -> None:
    mesh = Mesh(tmp_path)
    store = "etcd://" + etcd.removeprefix("http://")
    try:
        mesh.up("--store", store)
        books = mesh.run("books", name="books-1")
        web = mesh.run("web", name="web-1")
        mesh.cli("apply", "-f", "-", stdin=ROUTE)
        mesh.sync()
        assert mesh.call(web, "http://books/")["status"] == 200
        assert not mesh.paths.database.exists(), "nothing in SQLite: the store is etcd"

        mesh.cli("down")
        mesh.up()  # no --store: the last run's store, etcd
        assert json.loads(mesh.cli("get", "httproutes", "books", "-o", "json").stdout)[
            "spec"]["rules"][0]["timeouts"] == {"request": "3s"}
        history = json.loads(mesh.cli("history", "-o", "json").stdout)
        assert any(c["kind"] == "HTTPRoute" and c["name"] == "books"
                   for c in history), history
        mesh.sync()
        assert mesh.call(web, "http://books/")["status"] == 200
        assert books.process.poll() is None

        checks = {c["id"]: c for c in json.loads(
            mesh.cli("check", "-o", "json", check=False).stdout)["checks"]}
        assert checks["store-integrity"]["status"] == "ok", checks["store-integrity"]
        assert "etcd answers" in checks["store-integrity"]["message"]
        assert checks["store-readable"]["status"] == "ok", checks["store-readable"]
        assert not mesh.paths.database.exists()
    finally:
        mesh.close()


def test_bad_store_values_change_nothing(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    try:
        for store, says in (("etcd://10.1.2.3:2379", "not a loopback address"),
                            ("mysql://db", "unknown store scheme"),
                            ("etcds://127.0.0.1:2379", "needs --etcd-ca")):
            result = mesh.cli("up", *mesh.port_flags(), "--store", store, check=False)
            assert result.returncode == 2, result
            assert says in result.stderr and "hint:" in result.stderr, result.stderr
            assert not mesh.paths.endpoint_file.exists()
        # etcd not running: the control plane does not start, and says where it looked.
        dead = f"etcd://127.0.0.1:{free_port()}"
        result = mesh.cli("up", *mesh.port_flags(), "--store", dead, check=False,
                          timeout=60)
        assert result.returncode != 0
        assert "no etcd endpoint answered" in result.stderr + result.stdout
        assert not (mesh.state_dir / "store.json").exists(), "a store never opened is not kept"
    finally:
        mesh.close()
