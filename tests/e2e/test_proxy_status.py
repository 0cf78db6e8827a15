"""`tulle proxy-status`: every sidecar SYNCED after a change, per xDS type, with versions.

NACKED is covered by the unit tests (from tracker data): there is no clean way to make Envoy
refuse config the control plane validated.
"""

from __future__ import annotations

import json

import pytest

from tests.support.mesh import Mesh
from tests.support.scenarios import SEARCH_ROUTE, books_and_web

pytestmark = pytest.mark.envoy

TYPES = ("CDS", "EDS", "LDS", "RDS", "SDS")


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
