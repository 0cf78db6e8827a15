"""`tulle diagnose` with real Envoy on the newer families: a canary whose failures the route's
retries hide (TUL1019, covered by `diagnose books`), a fault injection left on (TUL1025, from
the callers' fault counters), a rule sending a share to a version with no instance (TUL1027),
one slow instance of three (TUL1022), 404s after a rewrite (TUL1026) and an instance that
accepts requests and never answers (TUL1024). Steady traffic from a long-running client; the
culprit ranks first."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.mesh import Mesh, Workload, wait_for
from tests.support.ports import free_port
from tests.support.scenarios import BOOKS_VERSIONS
from tests.support.traffic import Traffic

pytestmark = pytest.mark.envoy

VERSIONS = BOOKS_VERSIONS
CANARY = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - name: canary
    backendRefs: [{name: books-v1, weight: 50}, {name: BACKEND, weight: 50}]
    retry: {attempts: 2, codes: [503]}
"""
FAULT = """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-chaos}
spec:
  targetRefs: [{kind: Service, name: books}]
  faultInjection: {abort: {httpStatus: 503, percent: 30}}
"""


@pytest.fixture(autouse=True)
def fast_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")


def first_finding(mesh: Mesh, code: str, *args: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until ``code`` ranks first in `tulle diagnose ARGS`; its finding."""
    seen: list[Any] = []

    def ranked_first() -> dict[str, Any] | None:
        result = mesh.cli("diagnose", *args, "-o", "json", check=False)
        report = json.loads(result.stdout)
        assert not report["ruleErrors"], report["ruleErrors"]
        findings = report["findings"]
        seen[:] = [(f["code"], f["subject"], f["severity"]) for f in findings]
        return dict(findings[0]) if findings and findings[0]["code"] == code else None

    try:
        return wait_for(f"{code} to rank first", ranked_first, timeout, interval=1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last findings: {seen}") from None


@pytest.fixture
def canary_mesh(mesh: Mesh) -> Iterator[tuple[Mesh, Workload]]:
    """books-1 (v1), books-2 (v2), web-1 calling books through steady traffic."""
    mesh.run("books", name="books-1", extra=("--version", "v1"))
    canary = mesh.run("books", name="books-2", extra=("--version", "v2"))
    mesh.run("web", name="web-1")
    mesh.cli("apply", "-f", "-", stdin=VERSIONS)
    mesh.sync()
    yield mesh, canary


def _control(workload: Workload, query: str) -> None:
    assert workload.app_port is not None
    urllib.request.urlopen(f"http://127.0.0.1:{workload.app_port}/control?{query}",
                           timeout=5).close()


def _traffic(mesh: Mesh) -> Traffic:
    web = next(w for w in mesh.workloads if w.name == "web-1")
    traffic = Traffic(mesh, web)
    traffic.start()
    return traffic


def test_a_canary_failing_behind_retries_is_named(canary_mesh: tuple[Mesh, Workload]) -> None:
    mesh, canary = canary_mesh
    _control(canary, "fail=503&every=4")
    mesh.cli("apply", "-f", "-", stdin=CANARY.replace("BACKEND", "books-v2"))
    mesh.sync()
    traffic = _traffic(mesh)
    try:
        finding = first_finding(mesh, "TUL1019")
        scoped = first_finding(mesh, "TUL1019", "books")
    finally:
        traffic.stop()
    assert finding["subject"] == "service/books-v2.default"
    assert finding["severity"] == "error"  # 25 % of its attempts fail
    assert "httproute/books.default#canary" in finding["related"]
    assert any("retry rate" in line for line in finding["evidence"]), finding["evidence"]
    assert scoped["subject"] == finding["subject"]
    # Callers saw (almost) only successes: retries hid the failures.
    assert len(traffic.failures) < traffic.ok / 10


def test_a_fault_injection_left_on(canary_mesh: tuple[Mesh, Workload]) -> None:
    mesh, _ = canary_mesh
    mesh.cli("apply", "-f", "-", stdin=FAULT)
    mesh.sync()
    traffic = _traffic(mesh)
    try:
        wait_for("injected faults", lambda: len(traffic.failures) >= 10)
        finding = first_finding(mesh, "TUL1025")
    finally:
        traffic.stop()
    assert finding["subject"] == "trafficpolicy/books-chaos.default"
    assert finding["severity"] == "error"
    assert "mesh produced these answers" in finding["cause"]
    assert any("aborted" in line for line in finding["evidence"])


def test_a_share_routed_to_a_version_without_instances(
        canary_mesh: tuple[Mesh, Workload]) -> None:
    mesh, _ = canary_mesh
    mesh.cli("apply", "-f", "-", stdin=VERSIONS.replace("v2", "v3"))
    mesh.cli("apply", "-f", "-", stdin=CANARY.replace("BACKEND", "books-v3"))
    mesh.sync()
    traffic = _traffic(mesh)
    try:
        wait_for("503s from the empty version", lambda: len(traffic.failures) >= 5)
        finding = first_finding(mesh, "TUL1027")
    finally:
        traffic.stop()
    assert finding["subject"] == "httproute/books.default#canary"
    assert "50% of its traffic" in finding["cause"]
    assert "service/books-v3.default" in finding["related"]


BACKEND = Path(__file__).resolve().parent.parent / "apps" / "backend.py"
BOOKS_ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: books}]
"""
REWRITE = BOOKS_ROUTE + """\
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
"""


def _backend(mesh: Mesh, name: str, *flags: str) -> Workload:
    port = free_port()
    return mesh.run("books", name=name, port=port,
                    command=[sys.executable, str(BACKEND), str(port), *flags])


def _calls(mesh: Mesh, url: str) -> Traffic:
    web = mesh.run("web", name="web-1")
    traffic = Traffic(mesh, web, url)
    traffic.start()
    wait_for("steady traffic", lambda: traffic.ok >= 20)
    return traffic


def test_one_slow_instance_of_three(mesh: Mesh) -> None:
    for i in (1, 2, 3):
        _backend(mesh, f"books-{i}")
    traffic = _calls(mesh, "http://books/")
    try:
        _control(mesh.workloads[2], "delay=800")
        finding = first_finding(mesh, "TUL1022", timeout=45)
    finally:
        traffic.stop()
    assert finding["subject"] == "proxy/books-3.default"
    assert "ms slower than its peers" in finding["cause"]
    assert "service/books.default" in finding["related"]


def test_404s_after_a_rewrite_name_the_change(mesh: Mesh) -> None:
    _backend(mesh, "books-1", "--prefix", "/api")
    mesh.cli("apply", "-f", "-", stdin=BOOKS_ROUTE)
    mesh.sync()
    traffic = _calls(mesh, "http://books/api/books")
    try:
        wait_for("healthy calls reported before the change", lambda: traffic.ok >= 200)
        mesh.cli("apply", "-f", "-", stdin=REWRITE)
        revision = mesh.status()["storeRevision"]
        finding = first_finding(mesh, "TUL1026")
    finally:
        traffic.stop()
    assert finding["subject"] in ("httproute/books.default#0", "httproute/books.default")
    assert f"revision {revision}" in finding["cause"]
    assert "application answered" in finding["cause"]
    assert f"tulle rollback --revert {revision} --dry-run" in finding["fix"]


def test_an_instance_that_accepts_and_never_answers(mesh: Mesh) -> None:
    for i in (1, 2):
        _backend(mesh, f"books-{i}")
    traffic = _calls(mesh, "http://books/")
    try:
        _control(mesh.workloads[1], "hang=1")
        finding = first_finding(mesh, "TUL1024", timeout=60)
    finally:
        traffic.stop()
    assert finding["subject"] == "proxy/books-2.default"
    assert "hang until the timeout" in finding["cause"]
