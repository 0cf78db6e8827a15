"""`tulle analyze` against real sidecars: a clean live mesh has nothing to say, files are
analyzed without a control plane, suppressions and the threshold decide the exit code, and
a rate limit is checked against the traffic real sidecars report before it is applied."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.load import Load
from tests.support.mesh import TULLE, Mesh, wait_for
from tests.support.scenarios import SEARCH_ROUTE, books_and_web

pytestmark = pytest.mark.envoy

BROKEN = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: bookz}]
"""

SLOW_RETRIES = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: books}]
    timeouts: {request: 2s, backendRequest: 1s}
    retry: {attempts: 3}
"""

LIMIT = """\
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-limit}
spec:
  targetRefs: [{kind: Service, name: books}]
  rateLimit: {requests: 1, interval: 1s}
"""


def analyze(mesh: Mesh, *args: str) -> tuple[int, dict[str, Any]]:
    result = mesh.cli("analyze", *args, "-o", "json", check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def codes(view: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["code"], f"{m['resource']['kind']}/{m['resource']['name']}")
            for m in view["messages"]]


def test_clean_mesh_broken_files_suppressions_and_threshold(mesh: Mesh, tmp_path: Path
                                                              ) -> None:
    books_and_web(mesh)
    mesh.cli("apply", "-f", "-", stdin=SEARCH_ROUTE)
    mesh.sync()

    status, view = analyze(mesh)  # --live is the default without -f
    assert (status, view["mode"], view["messages"], view["skipped"]) == (0, "live", [], [])

    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    # Files alone need no control plane: this state directory has none.
    alone = subprocess.run([*TULLE, "--state-dir", str(tmp_path / "nowhere"), "analyze",
                            "-f", str(broken)], capture_output=True, text=True, timeout=60,
                           env=mesh.env(), check=False)
    assert alone.returncode == 1, alone.stderr
    assert "TUL0001" in alone.stdout and f"{broken}:1" in alone.stdout
    assert 'unknown service "bookz"' in alone.stdout
    assert "running workloads were not checked" in alone.stdout
    assert "Skipped rate-limits: needs telemetry" in alone.stdout

    # Overlaid on the live mesh: books is a running workload, bookz is still unknown.
    status, view = analyze(mesh, "-f", str(broken), "--live")
    assert (status, view["mode"], codes(view)) == (1, "files+live",
                                                   [("TUL0001", "HTTPRoute/books")])
    assert 'did you mean "books"?' in view["messages"][0]["fix"]
    status, view = analyze(mesh, "-f", str(broken), "--live",
                           "--suppress", "TUL0001=HTTPRoute/*")
    assert (status, view["messages"], view["suppressed"]) == (0, [], 1)

    slow = tmp_path / "slow.yaml"
    slow.write_text(SLOW_RETRIES)
    status, view = analyze(mesh, "-f", str(slow), "--live")
    assert (status, codes(view)) == (0, [("TUL0011", "HTTPRoute/books")])  # a warning
    status, _ = analyze(mesh, "-f", str(slow), "--live", "--failure-threshold", "warning")
    assert status == 1

    bad = mesh.cli("analyze", "--suppress", "TUL0001", check=False)
    assert bad.returncode == 2 and "CODE=KIND/NAME" in bad.stderr
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(BROKEN.replace("rules:", "rulez:"))
    failed = mesh.cli("analyze", "-f", str(invalid), check=False)
    assert failed.returncode == 1 and "before the files can be analyzed" in failed.stderr
    assert f"{invalid}:1" in failed.stderr and 'did you mean "rules"?' in failed.stderr


def test_a_rate_limit_below_live_traffic_is_reported_before_it_is_applied(
        mesh: Mesh, tmp_path: Path) -> None:
    port = books_and_web(mesh)
    limit = tmp_path / "limit.yaml"
    limit.write_text(LIMIT)
    load = Load(port, rate=20, threads=2, path="/").start()
    try:
        def reported() -> dict[str, Any] | None:
            status, view = analyze(mesh, "-f", str(limit), "--live", "--window", "15s")
            found = [m for m in view["messages"] if m["code"] == "TUL0016"]
            return found[0] if found and status == 0 else None

        message = wait_for("analyze to see the traffic above the new limit", reported,
                           timeout=40, interval=1.0)
    finally:
        result = load.stop()
    assert not result.failures, result.failures[:5]  # the limit was never applied
    assert message["resource"] == {"kind": "TrafficPolicy", "namespace": "default",
                                   "name": "books-limit"}
    assert message["source"] == f"{limit}:1"
    assert message["field"] == "spec.rateLimit.requests"
    assert "instance books-1 of books.default receives" in message["message"]
    assert "above the limit of 1 requests/s (per instance)" in message["message"]
    status, _ = analyze(mesh, "-f", str(limit), "--live", "--window", "15s",
                        "--failure-threshold", "warning")
    assert status == 1
