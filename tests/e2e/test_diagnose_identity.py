"""`tulle diagnose` on identity and control-plane failures: each test breaks a running mesh one
way, with real Envoys, and requires the right cause first, naming the right resource, with a fix.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.mesh import Mesh, wait_for
from tests.support.pki import foreign_identity, http_get, https_get, now
from tests.support.rejecting_controlplane import TRIGGER_ROUTE, RejectingMesh
from tests.support.scenarios import SEARCH_ROUTE, books_and_web
from tests.support.traffic import Traffic

pytestmark = pytest.mark.envoy

SHORT_CERTIFICATES = """\
apiVersion: tulle.io/v1alpha1
kind: Mesh
metadata: {name: default}
spec: {certificates: {workloadLifetime: 4s}}
"""

# Sends every books request to the canary, whose only instance fails.
TO_CANARY = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: books-canary}]
"""


def report(mesh: Mesh, *args: str) -> dict[str, Any]:
    result = mesh.cli("diagnose", *args, "-o", "json", "--window", "30s", check=False)
    data: dict[str, Any] = json.loads(result.stdout)
    data["exitCode"] = result.returncode
    return data


def first_finding(mesh: Mesh, code: str, *args: str, timeout: float = 30.0,
                  related: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Poll `tulle diagnose` until ``code`` ranks first (and names ``related``, which may come
    with a later telemetry report); (that finding, the whole report)."""
    seen: list[Any] = []

    def ranked_first() -> tuple[dict[str, Any], dict[str, Any]] | None:
        data = report(mesh, *args)
        seen[:] = [(f["code"], f["subject"], f["related"]) for f in data["findings"]]
        findings = data["findings"]
        if not findings or findings[0]["code"] != code:
            return None
        return (findings[0], data) if related is None or related in findings[0]["related"] \
            else None

    try:
        return wait_for(f"{code} to rank first", ranked_first, timeout=timeout, interval=1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last findings: {seen}") from None


def assert_fixable(finding: dict[str, Any], exit_code: int) -> None:
    assert finding["fix"] and finding["evidence"], finding
    assert finding["docs"] == f"docs/diagnostics/{finding['code']}.md"
    assert exit_code == 1


def unhealthy_checks(mesh: Mesh) -> set[str]:
    """The ids of `tulle check --proxy` checks that did not pass."""
    # The failure is established (diagnose saw it): no need to wait for states to settle.
    result = mesh.cli("check", "--proxy", "--wait", "2", "-o", "json", check=False,
                      timeout=120)
    data = json.loads(result.stdout)
    return {c["id"] for c in data["checks"] if c["status"] not in ("ok", "skipped")}


def envoy_of(mesh: Mesh, name: str) -> psutil.Process:
    (envoy,) = [p for p in psutil.Process(mesh.workload(name)["pid"]).children()
                if p.name() == "envoy"]
    return envoy


@pytest.fixture
def rejecting_mesh(tmp_path: Path) -> Iterator[RejectingMesh]:
    instance = RejectingMesh(tmp_path)
    instance.up()
    try:
        yield instance
    finally:
        instance.close()


# -- identity ----------------------------------------------------------------------------------

def test_plaintext_client_against_strict(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    port = int(mesh.workload("books-1")["inboundPort"])
    for _ in range(3):
        with pytest.raises(OSError):
            http_get(port, "/")
    finding, data = first_finding(mesh, "TUL1055")
    assert finding["subject"] == "service/books.default"
    assert "proxy/books-1.default" in finding["related"]
    assert "PERMISSIVE" in finding["fix"] and "tulle run" in finding["fix"]
    assert_fixable(finding, data["exitCode"])
    assert "traffic-edges" in unhealthy_checks(mesh)


def test_caller_with_a_certificate_from_a_foreign_ca(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    port = int(mesh.workload("books-1")["inboundPort"])
    impostor = foreign_identity("spiffe://tulle.local/ns/default/sa/web")
    for _ in range(3):
        with pytest.raises(OSError):
            https_get(port, "/", identity=impostor)
    finding, data = first_finding(mesh, "TUL1053")
    assert finding["subject"] == "service/books.default"
    assert any("refused 3 TLS handshakes" in line for line in finding["evidence"]), finding
    assert any("outside the mesh" in line for line in finding["evidence"])
    assert_fixable(finding, data["exitCode"])
    assert "traffic-edges" in unhealthy_checks(mesh)


def test_expired_certificate_of_a_called_instance(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=SHORT_CERTIFICATES)
    books_and_web(mesh)
    web = mesh.workloads[1]
    agent = mesh.workload("books-1")["pid"]
    os.kill(agent, signal.SIGSTOP)  # it can no longer renew; its Envoy keeps serving
    try:
        def expired() -> bool:
            certs = mesh.api.get("/v1/identity/status")["workloads"]
            return any(c["node"] == "books-1.default" and c["notAfter"] < now().timestamp()
                       for c in certs)

        wait_for("books-1's certificate to expire", expired, timeout=15, interval=0.5)
        for _ in range(5):
            assert mesh.call(web, "http://books/")["status"] == 503
        # The callers' refusals reach diagnose with web-1's next telemetry report.
        finding, data = first_finding(mesh, "TUL1050", related="proxy/web-1.default")
        assert finding["subject"] == "proxy/books-1.default"
        assert "service/books.default" in finding["related"]
        assert "proxy/web-1.default" in finding["related"], finding
        assert any("expired" in line for line in finding["evidence"])
        assert_fixable(finding, data["exitCode"])
        assert "proxies-certificates" in unhealthy_checks(mesh)
    finally:
        os.kill(agent, signal.SIGCONT)


# -- the control plane -------------------------------------------------------------------------

def test_a_nacked_route_table_names_envoys_reason_and_the_change(
        rejecting_mesh: RejectingMesh) -> None:
    mesh = rejecting_mesh
    books_and_web(mesh)
    mesh.cli("apply", "-f", "-", stdin=TRIGGER_ROUTE)
    revision = mesh.status()["storeRevision"]
    finding, data = first_finding(mesh, "TUL1060")
    assert finding["subject"] == "proxy/web-1.default"
    assert "httproute/books.default" in finding["related"]
    assert any("may not be modified" in line for line in finding["evidence"]), finding
    assert any(f"revision {revision}" in line for line in finding["evidence"])
    assert f"tulle rollback --revert {revision} --dry-run" in finding["fix"]
    assert_fixable(finding, data["exitCode"])
    assert "proxies-synced" in unhealthy_checks(mesh)


@pytest.mark.controlplane_args("--stale-after", "2")
def test_a_proxy_that_stopped_acking(mesh: Mesh) -> None:
    books_and_web(mesh)
    envoy = envoy_of(mesh, "web-1")
    os.kill(envoy.pid, signal.SIGSTOP)
    try:
        mesh.cli("apply", "-f", "-", stdin=SEARCH_ROUTE)
        # The cause ranks first: the frozen Envoy (TUL1037), which is why it stopped ACKing.
        frozen, data = first_finding(mesh, "TUL1037", timeout=45)
        assert frozen["subject"] == "proxy/web-1.default"

        def stale_too() -> dict[str, Any] | None:
            latest = report(mesh)
            codes = [f["code"] for f in latest["findings"]]
            return latest if codes[:1] == ["TUL1037"] and "TUL1061" in codes else None

        data = wait_for("TUL1061 under it", stale_too, timeout=45, interval=1.0)
        finding = next(f for f in data["findings"] if f["code"] == "TUL1061")
        assert finding["subject"] == "proxy/web-1.default"
        assert "httproute/books.default" in finding["related"]
        assert any("not acknowledged" in line for line in finding["evidence"])
        assert any("books-1.default" in line and "SYNCED" in line
                   for line in finding["evidence"]), finding
        assert_fixable(finding, data["exitCode"])
        assert "proxies-synced" in unhealthy_checks(mesh)
    finally:
        os.kill(envoy.pid, signal.SIGCONT)
    mesh.sync()


def test_control_plane_down_is_diagnosed_by_the_cli_alone(mesh: Mesh) -> None:
    books_and_web(mesh)
    web = mesh.workloads[1]
    mesh.cli("down")
    data = report(mesh)
    (finding,) = data["findings"]
    assert finding["code"] == "TUL1016" and finding["subject"] == "mesh/controlplane"
    assert data["gathered"] == {"controlPlane": "unreachable"}
    assert "tulle up" in finding["fix"]
    assert data["exitCode"] == 1
    assert "cp-running" in unhealthy_checks(mesh)
    # The sidecars keep serving their last config meanwhile.
    assert mesh.call(web, "http://books/")["status"] == 200
    mesh.up()


def test_a_change_followed_by_errors(mesh: Mesh) -> None:
    books_and_web(mesh)
    web = mesh.workloads[1]
    canary = mesh.run("books-canary", name="canary-1")
    assert canary.app_port is not None
    urllib.request.urlopen(f"http://127.0.0.1:{canary.app_port}/control?fail=503&every=1",
                           timeout=5).close()
    mesh.wait_endpoints("web-1", "books-canary", {"canary-1"})
    traffic = Traffic(mesh, web)
    traffic.start()
    try:
        def edge_seen() -> bool:
            edges = json.loads(mesh.cli("edges", "-o", "json").stdout)["edges"]
            return any(e["destination"]["service"] == "books" and e["requests"] >= 10
                       for e in edges)

        # The error rate before the change must be known: healthy traffic reported first.
        wait_for("healthy traffic to be reported", edge_seen, timeout=30, interval=1.0)
        wait_for("a full slot of healthy traffic", lambda: traffic.ok >= 20)
        mesh.cli("apply", "-f", "-", stdin=TO_CANARY)
        revision = mesh.status()["storeRevision"]
        wait_for("the route to take effect", lambda: len(traffic.failures) >= 20)
        finding, data = first_finding(mesh, "TUL1065", timeout=40)
    finally:
        traffic.stop()
    assert finding["subject"] == "httproute/books.default"
    assert "service/books-canary.default" in finding["related"]
    evidence = "\n".join(finding["evidence"])
    assert f"revision {revision}" in evidence and "created" in evidence
    assert "before it: 0%" in evidence, evidence
    assert f"tulle rollback --revert {revision} --dry-run" in finding["fix"]
    assert_fixable(finding, data["exitCode"])
    assert "traffic-edges" in unhealthy_checks(mesh)
