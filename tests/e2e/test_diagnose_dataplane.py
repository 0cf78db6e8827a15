"""`tulle diagnose` on a mesh broken on purpose, with real Envoy: the right cause first, naming
the right resource. And a healthy mesh with traffic: no findings, exit 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.http import control, request
from tests.support.mesh import ECHO_APP, TULLE, Mesh, wait_for
from tests.support.ports import free_port
from tests.support.scenarios import books_and_web

pytestmark = pytest.mark.envoy


@pytest.fixture(autouse=True)
def fast_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")


def diagnose(mesh: Mesh, *args: str) -> tuple[int, dict[str, Any]]:
    result = mesh.cli("diagnose", *args, "-o", "json", check=False)
    assert result.returncode in (0, 1), result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert not report["ruleErrors"], report["ruleErrors"]
    return result.returncode, report


def first_finding(mesh: Mesh, code: str, *args: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until the evidence shows ``code`` (telemetry arrives every 0.5 s), then it must
    rank first in that same report."""
    reports: list[dict[str, Any]] = []

    def found() -> bool:
        _, report = diagnose(mesh, *args)
        reports.append(report)
        return any(f["code"] == code for f in report["findings"])

    wait_for(f"diagnose to report {code}", found, timeout, interval=0.5)
    findings = reports[-1]["findings"]
    assert findings[0]["code"] == code, json.dumps(findings, indent=1)
    return dict(findings[0])


def check_flags(mesh: Mesh, name: str) -> None:
    """`tulle check --proxy` also sees the failure: a failed or warning check names ``name``."""
    # The failure is established (diagnose saw it): no need to wait for states to settle.
    result = mesh.cli("check", "--proxy", "--wait", "2", "-o", "json", check=False)
    report = json.loads(result.stdout)
    flagged = [c for c in report["checks"] if c["status"] in ("failed", "warning")]
    assert any(name in json.dumps(c) for c in flagged), json.dumps(report["checks"], indent=1)
    assert not report["ok"] or all(c["status"] == "warning" for c in flagged)


def apply(mesh: Mesh, text: str) -> None:
    mesh.cli("apply", "-f", "-", stdin=text)
    mesh.sync()


def test_a_healthy_mesh_with_traffic_has_no_findings(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    assert {request(port, f"/{i}").status for i in range(20)} == {200}

    def books_traffic_seen() -> bool:
        rows = mesh.api.get("/v1/telemetry/services", {"name": "books"})["services"]
        return bool(rows) and rows[0]["requests"] >= 20

    wait_for("books' traffic in telemetry", books_traffic_seen)
    code, report = diagnose(mesh)
    assert (code, report["findings"]) == (0, []), json.dumps(report, indent=1)
    assert report["gathered"]["proxiesRead"] == 2
    table = mesh.cli("diagnose").stdout
    assert table.startswith("No problems found")


def reported(mesh: Mesh, name: str) -> bool:
    """Whether the sidecar ``name`` has sent the control plane a telemetry report yet."""
    rows = mesh.api.get("/v1/telemetry/workloads")["workloads"]
    return any(r["name"] == name and r["proxy"]["lastReportSeconds"] is not None
               for r in rows)


def test_instances_gone_while_called(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    # diagnose names a departed instance from its telemetry: it must have reported once.
    wait_for("books-1's first telemetry report", lambda: reported(mesh, "books-1"))
    mesh.workloads[0].stop()
    mesh.wait_endpoints("web-1", "books", set())
    assert {request(port, "/").status for _ in range(5)} == {503}
    finding = first_finding(mesh, "TUL1001")
    assert finding["subject"] == "service/books.default"
    assert "proxy/books-1.default" in finding["related"]
    assert "proxy/web-1.default" in finding["sources"]
    assert "tulle run --service books" in finding["fix"]
    check_flags(mesh, "books")


def _app_pid(agent: subprocess.Popen[bytes]) -> int:
    children = subprocess.run(["pgrep", "-P", str(agent.pid)], capture_output=True,
                              text=True, check=False).stdout.split()
    for pid in children:
        if str(ECHO_APP) in Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "):
            return int(pid)
    raise AssertionError(f"no echo app among the children of {agent.pid}: {children}")


def test_application_killed_behind_its_sidecar(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    books = mesh.workloads[0]
    os.kill(_app_pid(books.process), signal.SIGKILL)
    wait_for("books-1's workload to stop", lambda: books.process.poll() is not None)
    wait_for("web-1 to get 503s", lambda: request(port, "/").status == 503)
    for _ in range(4):
        request(port, "/")
    finding = first_finding(mesh, "TUL1001")
    assert finding["subject"] == "service/books.default"
    assert "proxy/books-1.default" in finding["related"]
    assert any("books-1.default" in line and "no longer registered" in line
               for line in finding["evidence"]), finding["evidence"]
    check_flags(mesh, "books")


def test_application_on_another_port_than_registered(mesh: Mesh) -> None:
    registered, actual = free_port(), free_port()
    log = mesh.root / "books-1.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*TULLE, "--state-dir", str(mesh.state_dir), "run", "--service", "books",
             "--name", "books-1", "--port", str(registered), "--",
             sys.executable, str(ECHO_APP), str(actual)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=mesh.env())
    from tests.support.mesh import Workload

    mesh.workloads.append(Workload("books-1", "books", process, log, actual))
    upstream = free_port()
    mesh.run("web", name="web-1", extra=("--upstream", f"books:{upstream}"))
    wait_for("books-1 to register", lambda: mesh.workload("books-1")["state"] == "starting")
    assert {request(upstream, "/").status for _ in range(5)} == {503}
    finding = first_finding(mesh, "TUL1002")
    assert finding["subject"] == "proxy/books-1.default"
    assert f"port {registered}" in finding["cause"]
    assert "--port" in finding["fix"]
    check_flags(mesh, "books")


POOL = """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-pool}
spec:
  targetRefs: [{kind: Service, name: books}]
  connectionPool: {maxConnections: 1, maxPendingRequests: 1, maxRequests: 1}
"""


def test_circuit_breaker_overflow(mesh: Mesh) -> None:
    from concurrent.futures import ThreadPoolExecutor

    port = books_and_web(mesh)
    apply(mesh, POOL)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: request(port, "/?delay=1000").status, range(8)))
    assert 503 in statuses, statuses
    finding = first_finding(mesh, "TUL1005")
    assert finding["subject"] == "trafficpolicy/books-pool.default"
    assert "maxPendingRequests" in finding["fix"] and "(now 1" in finding["fix"]
    # The edge view: the same cause for --from web-1 --to books, nothing for the reverse.
    assert first_finding(mesh, "TUL1005", "--from", "web-1", "--to", "books")
    assert diagnose(mesh, "--from", "books", "--to", "web-1")[1]["findings"] == []
    check_flags(mesh, "books")


OUTLIERS = """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-outliers}
spec:
  targetRefs: [{kind: Service, name: books}]
  outlierDetection: {consecutive5xx: 2, interval: 500ms, baseEjectionTime: 30s,
                     maxEjectionPercent: 50}
"""


def test_outlier_ejection_names_the_failing_instance(mesh: Mesh) -> None:
    books = [mesh.run("books", name=f"books-{i}") for i in (1, 2, 3)]
    port = free_port()
    mesh.run("web", name="web-1", extra=("--upstream", f"books:{port}"))
    mesh.wait_endpoints("web-1", "books", {"books-1", "books-2", "books-3"})
    apply(mesh, OUTLIERS)
    assert books[1].app_port is not None
    control(books[1].app_port, fail=500, every=1)
    for _ in range(30):
        request(port, "/")
    finding = first_finding(mesh, "TUL1006")
    assert finding["subject"] == "proxy/books-2.default"
    assert "trafficpolicy/books-outliers.default" in finding["related"]
    check_flags(mesh, "books")


def _route(extra: str) -> str:
    return ("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
            "metadata: {name: books}\nspec:\n  parentRefs: [{name: books}]\n  rules:\n"
            f"  - backendRefs: [{{name: books}}]\n{extra}\n")


def test_retries_exhausted(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    books = mesh.workloads[0]
    assert books.app_port is not None
    apply(mesh, _route("    retry: {attempts: 2, codes: [503]}"))
    control(books.app_port, fail=503, every=1)
    assert {request(port, f"/{i}").status for i in range(10)} == {503}
    finding = first_finding(mesh, "TUL1007")
    assert finding["subject"] == "httproute/books.default"
    assert "service/books.default" in finding["related"]
    check_flags(mesh, "books")


def test_timeouts(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    apply(mesh, _route("    timeouts: {request: 300ms}"))
    # Five: `tulle check` judges an edge from five requests on.
    assert {request(port, "/?delay=1000").status for _ in range(5)} == {504}
    finding = first_finding(mesh, "TUL1009")
    # The culprit is the rule whose timeout fires; the service is its context.
    assert finding["subject"] == "httproute/books.default#0"
    assert "service/books.default" in finding["related"]
    assert "timeouts.request" in finding["fix"] and "300ms" in finding["fix"]
    assert "mesh answered them 504" in finding["cause"]
    check_flags(mesh, "books")


LIMIT = """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-limit}
spec:
  targetRefs: [{kind: Service, name: books}]
  rateLimit: {requests: 3, interval: 10s}
"""


def test_rate_limited(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    apply(mesh, LIMIT)
    statuses = [request(port, "/").status for _ in range(12)]
    assert 429 in statuses, statuses
    finding = first_finding(mesh, "TUL1010")
    assert finding["subject"] == "trafficpolicy/books-limit.default"
    assert "spec.rateLimit.requests" in finding["fix"]
    check_flags(mesh, "books")


SEARCH_ONLY = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - name: search
    matches: [{path: {type: PathPrefix, value: /search}}]
    backendRefs: [{name: books}]
"""


def test_no_route(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    apply(mesh, SEARCH_ONLY)
    assert request(port, "/search?q=1").status == 200
    assert {request(port, "/browse").status for _ in range(5)} == {404}
    finding = first_finding(mesh, "TUL1012")
    assert finding["subject"] == "httproute/books.default"
    assert "proxy/web-1.default" in finding["sources"]
    assert "/search" in " ".join(finding["evidence"])
    check_flags(mesh, "web-1")


def test_unreachable_control_plane_is_the_finding(tmp_path: Path) -> None:
    result = subprocess.run([*TULLE, "--state-dir", str(tmp_path / "none"), "diagnose",
                             "-o", "json"], capture_output=True, text=True, check=False,
                            timeout=60)
    assert result.returncode == 1, result.stderr
    finding = json.loads(result.stdout)["findings"][0]
    assert (finding["code"], finding["subject"]) == ("TUL1016", "mesh/controlplane")
    assert "tulle up" in finding["fix"]
    assert any(str(tmp_path / "none") in line for line in finding["evidence"])
