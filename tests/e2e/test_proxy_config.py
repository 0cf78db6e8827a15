"""`tulle proxy-config` reads the live Envoy of a sidecar, and `--diff` finds nothing to
report on a synced proxy."""

from __future__ import annotations

import json

import pytest

from tests.support.http import request
from tests.support.mesh import Mesh, wait_for
from tests.support.scenarios import books_and_web, never_listening
from tests.support.tap import Tap
from tulle.agent.envoyadmin import SUN_PATH_MAX

pytestmark = pytest.mark.envoy


def test_each_section_shows_the_live_config(mesh: Mesh) -> None:
    books_and_web(mesh)
    mesh.sync()

    def section(name: str) -> str:
        return mesh.cli("proxy-config", name, "web-1").stdout

    assert "outbound|books.default" in section("clusters")
    routes = section("routes")  # one table per service, with the hosts its scopes match
    assert any("outbound|books.default" in line and "books,books.default" in line
               for line in routes.splitlines()), routes
    listeners = section("listeners")
    assert "HCM" in listeners
    endpoints = json.loads(mesh.cli("proxy-config", "endpoints", "web-1", "-o", "json").stdout)
    assert any(e["cluster"] == "outbound|books.default" for e in endpoints["endpoints"])
    secrets = mesh.cli("proxy-config", "secrets", "web-1.default").stdout
    assert "spiffe://" in secrets
    bootstrap = mesh.cli("proxy-config", "bootstrap", "web-1", "-n", "default").stdout
    assert "web-1.default" in bootstrap
    everything = mesh.cli("proxy-config", "all", "web-1", "-o", "json").stdout
    assert "PRIVATE KEY" not in everything and "private_key" not in everything


def test_diff_of_a_synced_proxy_is_empty(mesh: Mesh) -> None:
    books_and_web(mesh)
    mesh.sync()
    intended = mesh.api.get("/v1/proxies/web-1.default/intended")
    assert "outbound|books.default" in intended["resources"]["CDS"]
    assert "outbound|books.default" in intended["resources"]["EDS"]
    for proxy in ("web-1", "books-1"):
        result = mesh.cli("proxy-config", "all", proxy, "--diff", check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "No differences" in result.stdout
    # A tap's logger carries a token: redacted on both sides, so they still agree.
    tap = Tap.start(mesh, "books")
    try:
        result = mesh.cli("proxy-config", "all", "books-1", "--diff", check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        tap.stop()


def test_unknown_proxy_names_the_known_ones(mesh: Mesh) -> None:
    books_and_web(mesh)
    result = mesh.cli("proxy-config", "clusters", "nosuch", check=False)
    assert result.returncode != 0
    assert "nosuch.default" in result.stderr and "web-1.default" in result.stderr


def test_a_sidecar_whose_socket_path_is_too_long_for_a_unix_socket_works(mesh: Mesh) -> None:
    name = "deep-" + "d" * 58  # a DNS label at its longest
    mesh.run("books", name=name)
    socket = mesh.paths.workload_dir("default", name) / "admin.sock"
    assert socket.is_socket() and len(str(socket)) > SUN_PATH_MAX
    bootstrap = json.loads(mesh.cli("proxy-config", "bootstrap", name, "-o", "json").stdout)
    assert bootstrap["bootstrap"]["node"] == f"{name}.default"
    assert mesh.cli("proxy", "log-level", name, "upstream=debug").returncode == 0


def test_an_inbound_endpoint_with_nothing_listening_is_not_healthy(mesh: Mesh) -> None:
    # Envoy's static inbound endpoint has no health check: Envoy calls it HEALTHY whatever
    # listens. proxy-config shows the application's readiness instead, as diagnose does.
    upstream, registered = never_listening(mesh)
    endpoints = json.loads(mesh.cli("proxy-config", "endpoints", "bad-1", "-o", "json").stdout)
    [inbound] = [e for e in endpoints["endpoints"] if e["cluster"] == f"inbound|{registered}"]
    assert inbound["health"] == "NOT READY" and inbound["envoyHealth"] == "HEALTHY"
    assert f"app not listening on {registered}" in inbound["detail"]
    text = mesh.cli("proxy-config", "endpoints", "bad-1").stdout
    assert f"NOT READY: app not listening on {registered}" in text, text
    clusters = json.loads(mesh.cli("proxy-config", "clusters", "bad-1", "-o", "json").stdout)
    [cluster] = [c for c in clusters["clusters"] if c["name"] == f"inbound|{registered}"]
    assert (cluster["healthy"], cluster["endpoints"]) == (0, 1)
    # diagnose tells the same story about the same instance, once callers fail on it.
    assert {request(upstream, "/").status for _ in range(5)} == {503}

    def not_ready_finding() -> bool:
        report = json.loads(mesh.cli("diagnose", "bad", "-o", "json", check=False).stdout)
        return any(f["code"] == "TUL1002" and f["subject"] == "proxy/bad-1.default"
                   for f in report["findings"])
    wait_for("diagnose to name bad-1 (TUL1002)", not_ready_finding, timeout=30)
    # A ready instance's inbound endpoint keeps Envoy's word.
    books_ready = json.loads(mesh.cli("proxy-config", "endpoints", "web-1", "-o", "json").stdout)
    assert all(e["health"] == e["envoyHealth"] for e in books_ready["endpoints"])
