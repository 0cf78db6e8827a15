"""Rollouts against real sidecars and steady traffic: a good canary is promoted through every
step, one that fails 5 % of its requests or answers twice as slowly is rolled back within its
first step, a control-plane restart mid-rollout goes on where it was, and a user's edit of
the rollout's route stops it instead of being fought."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from typing import Any

import pytest

from tests.support.browser import chromium, login_link, shot
from tests.support.load import Load, LoadResult
from tests.support.mesh import Mesh, wait_for
from tests.support.ports import free_port
from tulle.local import state_lock_held

pytestmark = pytest.mark.envoy

ROLLOUT = """\
apiVersion: tulle.io/v1alpha1
kind: Rollout
metadata: {{name: books}}
spec:
  service: books
  stable: v1
  canary: v2
  steps:
{steps}
  analysis:
    minRequests: 40
    successRate: {{maxDrop: 1}}
    latency: {{maxP99Ratio: {ratio}}}
"""

# The application's own delay, the same for both versions unless a test slows the canary:
# latencies of a few milliseconds vary by several times on a busy machine, 100 ms does not.
DELAY_MS = 100


@pytest.fixture(autouse=True)
def fast_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")


def rollout(steps: list[tuple[int, str]], ratio: float = 1.5) -> str:
    lines = "\n".join(f"  - {{weight: {w}, pause: {p}}}" for w, p in steps)
    return ROLLOUT.format(steps=lines, ratio=ratio)


def control(mesh: Mesh, name: str, query: str) -> None:
    port = next(w.app_port for w in mesh.workloads if w.name == name)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/control?{query}", timeout=5) as r:
        assert r.status == 200


def start(mesh: Mesh, canary: str = "") -> Load:
    """books v1 (books-1) and v2 (books-2), each answering after DELAY_MS (``canary``: more
    /control for books-2), and 60 requests a second from web-1 through its books bind."""
    mesh.run("books", name="books-1", extra=("--version", "v1"))
    mesh.run("books", name="books-2", extra=("--version", "v2"))
    control(mesh, "books-1", f"delay={DELAY_MS}")
    control(mesh, "books-2", canary if "delay=" in canary else
            f"delay={DELAY_MS}" + (f"&{canary}" if canary else ""))
    port = free_port()
    mesh.run("web", name="web-1", extra=("--upstream", f"books:{port}"))
    load = Load(port, rate=60, threads=12, path="/").start()
    wait_for("traffic through web-1", lambda: load.result.ok > 20, timeout=30)
    return load


def status(mesh: Mesh) -> dict[str, Any]:
    [row] = json.loads(mesh.cli("rollout", "status", "books", "-o", "json").stdout)["rollouts"]
    return dict(row)


def phase(mesh: Mesh, wanted: str) -> dict[str, Any] | None:
    row = status(mesh)
    return row if row["phase"] == wanted else None


def weights(mesh: Mesh) -> dict[str, int]:
    route = json.loads(mesh.cli("get", "httproute", "books", "-o", "json").stdout)
    [rule] = route["spec"]["rules"]
    return {b["name"]: b["weight"] for b in rule["backendRefs"]}


def held(mesh: Mesh) -> dict[str, Any]:
    """diagnose's TUL1033 on the rollout."""
    report = json.loads(mesh.cli("diagnose", "-o", "json", check=False).stdout)
    [finding] = [f for f in report["findings"] if f["code"] == "TUL1033"]
    assert finding["subject"] == "rollout/books.default", finding
    return dict(finding)


def finish(load: Load, what: str) -> LoadResult:
    result = load.stop()
    result.report(what)
    return result


def test_a_good_canary_is_promoted_through_every_step(mesh: Mesh) -> None:
    load = start(mesh)
    try:
        mesh.cli("apply", "-f", "-", stdin=rollout([(20, "4s"), (50, "4s")]))
        done = wait_for("the rollout to promote v2", lambda: phase(mesh, "Promoted"), 120)
    finally:
        result = finish(load, "60 req/s through a rollout of a good canary")
    assert result.failures == [], result.failures[:5]
    assert [(m["phase"], m["step"], m["weight"]) for m in done["moves"]] == [
        ("Progressing", 1, 20), ("Progressing", 2, 50), ("Promoted", 2, 100)]
    assert weights(mesh) == {"books-v1": 0, "books-v2": 100}
    # Each move after the first carries the numbers that decided it: the step's canary and
    # stable requests as the callers counted them.
    for move in done["moves"][1:]:
        numbers = move["numbers"]
        assert numbers["canary"]["requests"] >= 40 and numbers["canary"]["failed"] == 0
        assert numbers["stable"]["requests"] > numbers["canary"]["requests"] * 0.5, numbers
    # Every move is in the history: the route at each weight, the rollout with its status.
    history = json.loads(mesh.cli("history", "-o", "json").stdout)
    route_weights = [
        [b["weight"] for b in c["after"]["spec"]["rules"][0]["backendRefs"]]
        for c in reversed(history) if c["kind"] == "HTTPRoute" and c["after"]]
    assert route_weights == [[80, 20], [50, 50], [0, 100]], route_weights
    statuses = [c["after"]["metadata"].get("annotations", {}).get("tulle.io/rollout-status", "")
                for c in history if c["kind"] == "Rollout" and c["after"]]
    promoted = [s for s in statuses if '"phase":"Promoted"' in s]
    assert promoted and '"requests":' in promoted[0], statuses
    described = mesh.cli("describe", "service", "books").stdout
    assert "Rollout books: v1 -> v2, Promoted at step 2/2, 100 % to v2" in described, described
    table = mesh.cli("rollout", "status", "books").stdout
    assert "Promoted" in table and "promoted: step 2 passed" in table, table
    # The dashboard shows it, every move with its reason.
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(login_link(mesh))
        page.goto(f"http://127.0.0.1:{mesh.api_port}/ui/rollouts")
        text = wait_for("the rollout in the dashboard", lambda: (
            t := page.inner_text("#content")) and "Promoted" in t and t, 20)
        assert "default/books: v1 → v2" in text and "promoted: step 2 passed" in text, text
        shot(page, "rollout")


def test_a_canary_failing_5_percent_is_rolled_back_within_its_first_step(mesh: Mesh) -> None:
    load = start(mesh, canary="fail=500&every=20")
    try:
        mesh.cli("apply", "-f", "-", stdin=rollout([(20, "60s"), (50, "60s")]))
        back = wait_for("the rollout to roll back", lambda: phase(mesh, "RolledBack"), 60)
        mesh.sync()
        after = load.result.sent
        wait_for("requests after the rollback", lambda: load.result.sent > after + 120, 30)
    finally:
        result = finish(load, "60 req/s through a rollout of a canary failing 5 %")
    [first, rolled] = back["moves"]
    assert (rolled["step"], rolled["weight"]) == (1, 0)
    assert rolled["at"] - first["at"] < 60, "within the first step's pause"
    assert "canary success rate" in rolled["reason"], rolled
    assert rolled["numbers"]["canary"]["failed"] >= 2, rolled
    assert weights(mesh) == {"books-v1": 100, "books-v2": 0}
    assert "rolled v2 back: rolled back at step 1" in held(mesh)["cause"]
    # Users saw at most the step's share of the canary's errors (20 % of 5 %), and none once
    # the route was rolled back.
    assert len(result.failures) <= 0.2 * 0.05 * result.sent, (len(result.failures),
                                                              result.sent)
    assert all("HTTP 500" in f for f in result.failures), result.failures[:5]
    late = [f for f in result.failures
            if float(f.split("s:", 1)[0].removeprefix("at ")) > result.seconds - 1.5]
    assert late == [], late


def test_a_slow_canary_is_rolled_back(mesh: Mesh) -> None:
    load = start(mesh, canary=f"delay={2 * DELAY_MS}")
    try:
        mesh.cli("apply", "-f", "-", stdin=rollout([(20, "60s"), (50, "60s")], ratio=1.3))
        back = wait_for("the rollout to roll back", lambda: phase(mesh, "RolledBack"), 60)
    finally:
        result = finish(load, "60 req/s through a rollout of a slow canary")
    assert result.failures == [], result.failures[:5]
    rolled = back["moves"][-1]
    assert "canary p99" in rolled["reason"] and "times stable's" in rolled["reason"], rolled
    numbers = rolled["numbers"]
    assert numbers["canary"]["p99Ms"] >= 1.3 * numbers["stable"]["p99Ms"], numbers
    assert weights(mesh) == {"books-v1": 100, "books-v2": 0}


def test_a_control_plane_restart_mid_rollout_resumes_where_it_was(mesh: Mesh) -> None:
    load = start(mesh)
    try:
        mesh.cli("apply", "-f", "-", stdin=rollout([(20, "3s"), (50, "20s"), (80, "3s")]))
        wait_for("the rollout's second step", lambda: status(mesh)["step"] == 2, 60)
        os.kill(mesh.status()["pid"], signal.SIGKILL)
        wait_for("the control plane to die", lambda: not state_lock_held(mesh.paths))
        mesh.up()
        row = status(mesh)
        assert (row["phase"], row["step"], row["weight"]) == ("Progressing", 2, 50), row
        assert weights(mesh) == {"books-v1": 50, "books-v2": 50}
        done = wait_for("the rollout to promote v2", lambda: phase(mesh, "Promoted"), 120)
    finally:
        result = finish(load, "60 req/s through a rollout and a control-plane restart")
    assert result.failures == [], result.failures[:5]
    assert [(m["phase"], m["step"], m["weight"]) for m in done["moves"]] == [
        ("Progressing", 1, 20), ("Progressing", 2, 50), ("Progressing", 3, 80),
        ("Promoted", 3, 100)]


EDIT = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules:
  - backendRefs: [{name: books-v1, weight: 90}, {name: books-v2, weight: 10}]
"""


def test_a_users_edit_of_the_route_stops_the_rollout_and_resume_takes_it_back(
        mesh: Mesh) -> None:
    load = start(mesh)
    try:
        mesh.cli("apply", "-f", "-", stdin=rollout([(20, "10m"), (50, "10m")]))
        wait_for("the rollout's first step", lambda: status(mesh)["weight"] == 20, 30)
        mesh.cli("apply", "-f", "-", stdin=EDIT)
        stopped = wait_for("the rollout to stop", lambda: phase(mesh, "Stopped"), 30)
        assert "HTTPRoute default/books was changed by someone else" in stopped["message"]
        assert weights(mesh) == {"books-v1": 90, "books-v2": 10}, "the user's edit stays"
        finding = held(mesh)
        assert "Rollout default/books stopped" in finding["cause"], finding
        assert "`tulle rollout resume books -n default`" in finding["fix"], finding
        said = mesh.cli("rollout", "resume", "books").stdout
        assert "Progressing" in said and "taken back at 20 %" in said, said
        assert weights(mesh) == {"books-v1": 80, "books-v2": 20}
        mesh.cli("rollout", "pause", "books")
        assert status(mesh)["phase"] == "Paused"
        aborted = mesh.cli("rollout", "abort", "books", "-o", "json").stdout
        assert json.loads(aborted)["phase"] == "Aborted"
        assert weights(mesh) == {"books-v1": 100, "books-v2": 0}
        again = mesh.cli("rollout", "abort", "books", check=False)
        assert again.returncode != 0 and "nothing to abort" in again.stderr, again.stderr
    finally:
        result = finish(load, "60 req/s through a rollout stopped by an edit")
    assert result.failures == [], result.failures[:5]
    # A rollout cannot take over a route it did not write.
    other = rollout([(20, "1m")]).replace("metadata: {name: books}", "metadata: {name: other}")
    mesh.cli("apply", "-f", "-", stdin=EDIT.replace("metadata: {name: books}",
                                                    "metadata: {name: other}"))
    refused = mesh.cli("apply", "-f", "-", stdin=other, check=False)
    assert refused.returncode != 0
    assert "HTTPRoute default/other exists and was not written by this rollout" in \
        refused.stderr, refused.stderr
    assert "metadata.name" in refused.stderr
