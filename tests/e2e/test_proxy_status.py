"""`tulle proxy-status`: every sidecar SYNCED after a change, per xDS type, with versions; a
live NACK with Envoy's own message; PENDING, then STALE, for a proxy that stopped answering.

tulle never sends config Envoy refuses, so the NACK test runs a test-only control plane
(`tests/support/rejecting_controlplane.py`) that corrupts one chosen proxy's route table.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.mesh import Mesh, wait_for
from tests.support.rejecting_controlplane import TRIGGER_ROUTE, RejectingMesh
from tests.support.scenarios import SEARCH_ROUTE, books_and_web

pytestmark = pytest.mark.envoy

TYPES = ("CDS", "EDS", "LDS", "SRDS", "RDS", "SDS")


def test_every_proxy_is_synced_after_a_change(mesh: Mesh) -> None:
    books_and_web(mesh)
    mesh.cli("apply", "-f", "-", stdin=SEARCH_ROUTE)
    mesh.sync()

    views = json.loads(mesh.cli("proxy-status", "-o", "json").stdout)
    assert {v["node"] for v in views} == {"books-1.default", "web-1.default"}
    for view in views:
        assert view["healthy"]
        for name in TYPES:
            status = view["types"][name]
            assert status["state"] == "SYNCED", (view["node"], name, status)
            assert status["sentVersion"] and status["sentVersion"] == status["ackedVersion"]

    summary = mesh.cli("proxy-status").stdout
    assert "web-1.default" in summary and "NACKED" not in summary

    detail = mesh.cli("proxy-status", "web-1").stdout
    assert "Proxy web-1.default" in detail
    web = next(v for v in views if v["node"] == "web-1.default")
    assert web["types"]["RDS"]["ackedVersion"] in detail


def test_unknown_proxy_names_the_connected_ones(mesh: Mesh) -> None:
    books_and_web(mesh)
    result = mesh.cli("proxy-status", "nosuch", "-n", "shop", check=False)
    assert result.returncode != 0
    assert "nosuch.shop" in result.stderr and "books-1.default" in result.stderr


@pytest.fixture
def rejecting_mesh(tmp_path: Path) -> Iterator[RejectingMesh]:
    """A mesh whose web-1 proxy NACKs route tables carrying the test trigger header."""
    instance = RejectingMesh(tmp_path)
    instance.up()
    try:
        yield instance
    finally:
        instance.close()


def envoy_of(mesh: Mesh, name: str) -> psutil.Process:
    (envoy,) = [p for p in psutil.Process(mesh.workload(name)["pid"]).children()
                if p.name() == "envoy"]
    return envoy


def status_json(mesh: Mesh, *args: str) -> tuple[int, Any]:
    result = mesh.cli("proxy-status", *args, "-o", "json", check=False)
    return result.returncode, json.loads(result.stdout)


def test_a_rejected_route_table_is_nacked_with_envoys_message(
        rejecting_mesh: RejectingMesh) -> None:
    mesh = rejecting_mesh
    books_and_web(mesh)
    mesh.cli("apply", "-f", "-", stdin=TRIGGER_ROUTE)

    def nacked() -> dict[str, Any] | None:
        code, views = status_json(mesh)
        web = next(v for v in views if v["node"] == "web-1.default")
        return web if code == 1 and web["types"]["RDS"]["state"] == "NACKED" else None

    web = wait_for("web-1 to NACK its route table", nacked)
    message = web["types"]["RDS"]["nackMessage"]
    # Envoy's own words, whole: the rejected resource, then the reason.
    assert "may not be modified" in message, message
    assert "host" in message
    assert not web["healthy"]
    assert web["types"]["RDS"]["ackedVersion"] != web["types"]["RDS"]["sentVersion"]
    for name in ("CDS", "EDS", "LDS", "SDS"):
        assert web["types"][name]["state"] == "SYNCED", (name, web["types"][name])
    _, views = status_json(mesh)
    books = next(v for v in views if v["node"] == "books-1.default")
    assert books["healthy"], books
    assert {s["state"] for s in books["types"].values()} == {"SYNCED"}

    detail = mesh.cli("proxy-status", "web-1", check=False)
    assert detail.returncode == 1
    assert "RDS NACKED by Envoy:" in detail.stdout and "may not be modified" in detail.stdout
    # The proxy keeps serving its last accepted routes.
    assert mesh.call(mesh.workloads[1], "http://books/")["status"] == 200

    # Taking the change back heals it.
    mesh.cli("delete", "httproute", "books")
    mesh.sync()
    code, views = status_json(mesh)
    assert code == 0 and all(v["healthy"] for v in views)


# A short STALE threshold keeps the test short; the default (10 s) is unit-tested.
@pytest.mark.controlplane_args("--stale-after", "2")
def test_a_proxy_that_stops_acking_goes_stale(mesh: Mesh) -> None:
    books_and_web(mesh)
    envoy = envoy_of(mesh, "web-1")
    os.kill(envoy.pid, signal.SIGSTOP)
    try:
        mesh.cli("apply", "-f", "-", stdin=SEARCH_ROUTE)

        def stale_and_failing() -> dict[str, Any] | None:
            code, views = status_json(mesh)
            web = next(v for v in views if v["node"] == "web-1.default")
            # Exit 1 once a push has waited longer than the threshold (2 s): STALE. Until
            # then it is PENDING; the route table may have been sent after other types.
            return web if code == 1 and web["types"]["RDS"]["state"] == "STALE" else None

        web = wait_for("web-1 to be stale long enough to fail", stale_and_failing,
                       timeout=40, interval=0.5)
        # The new route table is sent but not ACKed, for longer than the limit.
        assert max(t["staleSeconds"] or 0 for t in web["types"].values()) > 2
        assert web["types"]["RDS"]["staleAfterSeconds"] == 2
        assert not web["healthy"]
        _, views = status_json(mesh)
        books = next(v for v in views if v["node"] == "books-1.default")
        assert books["healthy"] and books["types"]["RDS"]["state"] == "SYNCED"
        summary = mesh.cli("proxy-status", check=False).stdout
        assert "STALE (" in summary
    finally:
        os.kill(envoy.pid, signal.SIGCONT)
    mesh.sync()
    code, views = status_json(mesh)
    assert code == 0 and all(v["healthy"] for v in views)
