"""A sidecar that stops serving, set up as it happens: its listeners drained through Envoy's
admin (as anyone with access to the admin socket could), or its Envoy exiting again and again.
`tulle diagnose` names the sidecar (TUL1017, TUL1018) and `tulle check --proxy` fails
`traffic-sidecars`; a sidecar whose listeners tulle itself changes raises no alarm."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import psutil
import pytest

from tests.support.http import request
from tests.support.mesh import Mesh, wait_for
from tests.support.scenarios import books_and_web

pytestmark = pytest.mark.envoy

BIG_LIMIT = """
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-limit}
spec:
  targetRefs: [{kind: Service, name: books}]
  rateLimit: {requests: 10000, interval: 1s}
"""


@pytest.fixture(autouse=True)
def fast_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")


def diagnose(mesh: Mesh) -> dict[str, Any]:
    result = mesh.cli("diagnose", "-o", "json", check=False)
    assert result.returncode in (0, 1), result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert not report["ruleErrors"], report["ruleErrors"]
    return report


def first_finding(mesh: Mesh, code: str) -> dict[str, Any]:
    """Wait until the evidence shows ``code``; then it must rank first in that report."""
    reports: list[dict[str, Any]] = []

    def found() -> bool:
        reports.append(diagnose(mesh))
        return any(f["code"] == code for f in reports[-1]["findings"])

    wait_for(f"diagnose to report {code}", found, 30.0, interval=0.5)
    findings = reports[-1]["findings"]
    assert findings[0]["code"] == code, json.dumps(findings, indent=1)
    return dict(findings[0])


def sidecar_check(mesh: Mesh) -> dict[str, Any]:
    result = mesh.cli("check", "--proxy", "--wait", "2", "-o", "json", check=False)
    report = json.loads(result.stdout)
    [check] = [c for c in report["checks"] if c["id"] == "traffic-sidecars"]
    return dict(check)


def envoy_of(mesh: Mesh, name: str) -> psutil.Process:
    workload = next(w for w in mesh.workloads if w.name == name)
    envoys = [p for p in psutil.Process(workload.process.pid).children(recursive=True)
              if p.name() == "envoy"]
    assert len(envoys) == 1, envoys
    return envoys[0]


def test_a_listener_drained_through_admin_is_named_and_checked(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    assert request(port, "/").status == 200
    status, _ = mesh.envoy_admin("books-1", "POST", "/drain_listeners?inboundonly")
    assert status == 200
    # The workload still counts as ready and stays an endpoint; its inbound listener refuses.
    assert mesh.workload("books-1")["state"] == "ready"
    wait_for("callers to fail on the drained instance",
             lambda: request(port, "/").status == 503)
    finding = first_finding(mesh, "TUL1017")
    assert finding["subject"] == "proxy/books-1.default"
    assert "service/books.default" in finding["related"]
    assert any("listener_stopped" in line for line in finding["evidence"])
    check = sidecar_check(mesh)
    assert check["status"] == "failed" and "books-1.default" in check["message"], check

    # The fix the finding gives works: a new Envoy serves on every listener again.
    envoy_of(mesh, "books-1").kill()
    wait_for("books-1 to serve again", lambda: request(port, "/").status == 200,
             timeout=30.0)
    wait_for("TUL1017 to clear",
             lambda: not any(f["code"] == "TUL1017" for f in diagnose(mesh)["findings"]))


def test_an_envoy_that_keeps_exiting_is_named(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    for _ in range(2):
        old = envoy_of(mesh, "books-1")
        os.kill(old.pid, signal.SIGKILL)  # as a crash or the OOM killer would
        wait_for("the agent to start a new Envoy",
                 lambda old=old: envoy_of(mesh, "books-1").pid != old.pid, timeout=30.0)
        wait_for("books-1 to serve again", lambda: request(port, "/").status == 200,
                 timeout=30.0)
    finding = first_finding(mesh, "TUL1018")
    assert finding["subject"] == "proxy/books-1.default"
    assert any("2 time(s)" in line for line in finding["evidence"]), finding["evidence"]
    check = sidecar_check(mesh)
    assert check["status"] == "failed" and "books-1.default" in check["message"], check


def test_listeners_tulle_changes_itself_raise_no_alarm(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    mesh.cli("apply", "-f", "-", stdin=BIG_LIMIT)  # the inbound listener gets a rate limit
    mesh.sync()
    mesh.wait_quiescent("books-1")
    assert request(port, "/").status == 200
    assert mesh.stats("books-1").get("listener_manager.listener_stopped") == 0
    wait_for("a report after the change",
             lambda: diagnose(mesh)["gathered"]["proxiesRead"] == 2)
    assert not [f for f in diagnose(mesh)["findings"] if f["code"] in ("TUL1017", "TUL1018")]
    assert sidecar_check(mesh)["status"] == "ok"
