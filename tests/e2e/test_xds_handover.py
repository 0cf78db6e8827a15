"""An Envoy that restarts takes its ADS stream back: the control plane admits one stream per
proxy, and the new Envoy's stream may arrive before the old one's end has been processed. It
must converge at once, and never count as someone else presenting the credential."""

from __future__ import annotations

import json
from typing import Any

import psutil
import pytest

from tests.support.mesh import Mesh, wait_for
from tests.support.scenarios import books_and_web

pytestmark = pytest.mark.envoy

BOOKS = "books-1.default"


def proxy_view(mesh: Mesh, node: str) -> dict[str, Any] | None:
    return next((p for p in mesh.api.get("/v1/proxies") if p["node"] == node), None)


def envoy_of(mesh: Mesh, name: str) -> psutil.Process:
    (envoy,) = [p for p in psutil.Process(mesh.workload(name)["pid"]).children()
                if p.name() == "envoy"]
    return envoy


def restart_envoy(mesh: Mesh) -> None:
    """Kill books-1's Envoy (its agent restarts it with the same bootstrap, so the same
    credential) and wait until the new one holds a synced stream."""
    before = proxy_view(mesh, BOOKS)
    assert before is not None
    envoy = envoy_of(mesh, "books-1")
    envoy.kill()

    def new_stream_synced() -> bool:
        view = proxy_view(mesh, BOOKS)
        return (view is not None and view["connectedAt"] != before["connectedAt"]
                and view["state"] == "SYNCED" and envoy_of(mesh, "books-1").pid != envoy.pid)

    wait_for("books-1's restarted Envoy to hold a new, synced stream", new_stream_synced,
             timeout=30)


def test_a_restarted_envoy_gets_its_stream_back_and_raises_no_alarm(mesh: Mesh) -> None:
    books_and_web(mesh)
    web = mesh.workloads[1]
    for _ in range(3):
        restart_envoy(mesh)
        mesh.wait_ready(mesh.workloads[0])
    mesh.wait_endpoints("web-1", "books", {"books-1"})
    assert mesh.call(web, "http://books/")["status"] == 200
    refused = [e for e in mesh.api.get("/v1/xds/stream-events")
               if e["kind"] == "duplicate"]
    assert refused == [], "an Envoy restart is not a copied credential"
    result = mesh.cli("check", "--proxy", "-o", "json", check=False, timeout=120)
    checks = {c["id"]: c["status"] for c in json.loads(result.stdout)["checks"]}
    assert checks["proxies-streams"] == "ok"
