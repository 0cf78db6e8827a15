"""`tulle diagnose`'s evidence, with real Envoy and real processes: nothing lost when a workload
stops (a one-shot client's last report), fresh on demand (no waiting for the next interval),
and frozen processes (SIGSTOP, as in life) told apart from dead ones, within the deadline."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.http import request
from tests.support.mesh import ECHO_APP, Mesh, wait_for
from tests.support.ports import free_port
from tests.support.scenarios import books_and_web

pytestmark = pytest.mark.envoy

DEADLINE_S = 10.0  # every command answers within this, whatever is frozen

CLIENT = """\
import sys, urllib.error, urllib.request
url, count = sys.argv[1], int(sys.argv[2])
codes = []
for _ in range(count):
    try:
        codes.append(urllib.request.urlopen(url, timeout=10).status)
    except urllib.error.HTTPError as error:
        codes.append(error.code)
print("codes", codes, flush=True)
if len(sys.argv) > 3:  # then stay, as a long-running client does, until stopped
    import time
    time.sleep(120)
"""


@pytest.fixture
def slow_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """No periodic report within a test's life: whatever the control plane counts came from
    a last report or a report on demand."""
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "120")


@pytest.fixture
def fast_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TULLE_TELEMETRY_INTERVAL", "0.5")


@pytest.fixture
def stopped() -> Iterator[list[int]]:
    """Processes a test stops with SIGSTOP: resumed at the end, whatever happens."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def stop(pids: list[int], pid: int) -> None:
    pids.append(pid)
    os.kill(pid, signal.SIGSTOP)


def diagnose(mesh: Mesh, *args: str) -> tuple[dict[str, Any], float]:
    """The JSON report and how long the command took."""
    started = time.monotonic()
    result = mesh.cli("diagnose", *args, "-o", "json", check=False, timeout=DEADLINE_S + 20)
    elapsed = time.monotonic() - started
    assert result.returncode in (0, 1), result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert not report["ruleErrors"], report["ruleErrors"]
    return report, elapsed


def first(report: dict[str, Any]) -> dict[str, Any]:
    assert report["findings"], json.dumps(report, indent=1)
    return dict(report["findings"][0])


def child(mesh: Mesh, name: str, what: str) -> psutil.Process:
    """The process of workload ``name`` whose command line contains ``what``."""
    agent = psutil.Process(mesh.workload(name)["pid"])
    (found,) = [p for p in agent.children() if what in " ".join(p.cmdline())]
    return found


def edge_requests(mesh: Mesh, source: str, service: str) -> int:
    rows = mesh.api.get("/v1/telemetry/edges")["edges"]
    return sum(r["requests"] for r in rows if r["source"].get("workload") == source
               and r["destination"].get("service") == service)


def service_requests(mesh: Mesh, name: str) -> int:
    rows = mesh.api.get("/v1/telemetry/services", {"name": name})["services"]
    return int(rows[0]["requests"]) if rows else 0


# -- no evidence lost ---------------------------------------------------------------------------

@pytest.mark.usefixtures("slow_telemetry")
def test_a_one_shot_clients_calls_are_counted_after_it_exits(mesh: Mesh, tmp_path: Path
                                                              ) -> None:
    # bad's application listens on another port than the one it registered: never ready.
    listening, registered = free_port(), free_port()
    mesh.run("bad", name="bad-1", port=registered, wait=False,
             command=[sys.executable, str(ECHO_APP), str(listening)])
    wait_for("bad-1 to register", lambda: mesh.workload("bad-1"))
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    client = mesh.run("client", name="client-1", app=False, wait=False,
                      command=[sys.executable, str(script), "http://bad/", "20"])
    assert client.process.wait(60) == 0, client.output()
    assert "codes [" + ", ".join(["503"] * 20) + "]" in client.output(), client.output()
    # The client's sidecar is gone, and no periodic report ran: its last report carried them.
    wait_for("client-1 to leave", lambda: all(
        w["name"] != "client-1" for w in mesh.api.get("/v1/workloads")))
    assert edge_requests(mesh, "client-1", "bad") == 20
    # `tulle stat` counts the failures against the service called, as its caller saw them.
    (row,) = json.loads(mesh.cli("stat", "services", "bad", "-o", "json").stdout)["services"]
    assert (row["requests"], row["codes"]) == (20, {"5xx": 20}), row
    report, _ = diagnose(mesh, "bad")
    assert "client-1.default" not in report["gathered"]["proxiesAsked"]  # departed
    # The departed caller's failures are evidence: the finding names it as the caller.
    assert first(report)["sources"] == ["proxy/client-1.default"], report["findings"]


@pytest.mark.usefixtures("slow_telemetry")
def test_a_stopped_clients_calls_are_counted(mesh: Mesh, tmp_path: Path) -> None:
    """SIGTERM to `tulle run` (a supervisor stopping it): the agent reports before it goes."""
    books_and_web(mesh)
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    client = mesh.run("client", name="client-1", app=False, wait=False,
                      command=[sys.executable, str(script), "http://books/", "15", "stay"])
    wait_for("the client's 15 calls", lambda: "codes [" in client.output(), timeout=30)
    assert "codes [" + ", ".join(["200"] * 15) + "]" in client.output(), client.output()
    # Not all of them reported yet (the report at ready may race the first calls): the rest
    # can only arrive with the last report.
    assert edge_requests(mesh, "client-1", "books") < 15
    client.stop(signal.SIGTERM)
    assert edge_requests(mesh, "client-1", "books") == 15


@pytest.mark.usefixtures("slow_telemetry")
def test_diagnose_asks_every_sidecar_for_fresh_evidence(mesh: Mesh) -> None:
    port = books_and_web(mesh)
    assert {request(port, f"/{i}").status for i in range(20)} == {200}
    assert service_requests(mesh, "books") == 0  # no report yet: the interval is long
    report, _ = diagnose(mesh)
    gathered = report["gathered"]
    assert gathered["proxiesAsked"] == ["books-1.default", "web-1.default"]
    assert gathered["proxiesFresh"] == gathered["proxiesAsked"]
    assert gathered["proxiesMissing"] == []
    assert gathered["windowSeconds"] == 60
    assert 0 <= gathered["newestReportSeconds"] <= gathered["oldestReportSeconds"]
    assert report["findings"] == [], json.dumps(report, indent=1)
    assert service_requests(mesh, "books") >= 20  # the reports diagnose asked for
    table = mesh.cli("diagnose").stdout
    assert table.startswith("No problems found in the last 60s of traffic: "), table
    assert "2/2 sidecars read fresh; reports " in table, table


# -- frozen processes ----------------------------------------------------------------------------

@pytest.mark.usefixtures("fast_telemetry")
def test_a_frozen_agent_is_named_and_the_others_still_read(mesh: Mesh,
                                                           stopped: list[int]) -> None:
    books_and_web(mesh)
    books = mesh.workloads[0]
    stop(stopped, books.process.pid)
    report, elapsed = diagnose(mesh)
    assert elapsed < DEADLINE_S
    finding = first(report)
    assert (finding["code"], finding["subject"]) == ("TUL1038", "proxy/books-1.default")
    assert any(f"pid {books.process.pid}" in line and "state T" in line
               for line in finding["evidence"]), finding
    assert f"kill -CONT {books.process.pid}" in finding["fix"]
    gathered = report["gathered"]
    assert gathered["proxiesFresh"] == ["web-1.default"]
    assert [m["proxy"] for m in gathered["proxiesMissing"]] == ["books-1.default"]
    table = mesh.cli("diagnose", check=False, timeout=DEADLINE_S + 20).stdout
    assert "1/2 sidecars read fresh" in table and "books-1.default: agent did not" in table
    started = time.monotonic()
    result = mesh.cli("check", "--proxy", "-o", "json", check=False, timeout=DEADLINE_S + 30)
    assert time.monotonic() - started < DEADLINE_S
    assert result.returncode == 1, result.stdout


@pytest.mark.usefixtures("fast_telemetry")
def test_a_dead_agent_is_not_called_frozen(mesh: Mesh) -> None:
    books_and_web(mesh)
    books = mesh.workloads[0]
    envoy = child(mesh, "books-1", "envoy")
    books.process.kill()  # no session end: the control plane still has it registered
    books.process.wait()
    try:
        report, _ = diagnose(mesh)
        codes = {f["code"]: f for f in report["findings"]}
        assert "TUL1038" not in codes, json.dumps(report, indent=1)
        if "TUL1015" in codes:  # unless the control plane removed it already
            assert codes["TUL1015"]["subject"] == "proxy/books-1.default"
            assert any("is gone" in line for line in codes["TUL1015"]["evidence"])
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            envoy.kill()  # it dies with its agent, as a rule


@pytest.mark.usefixtures("fast_telemetry")
def test_a_frozen_envoy_is_named(mesh: Mesh, stopped: list[int]) -> None:
    books_and_web(mesh)
    envoy = child(mesh, "books-1", "envoy")
    stop(stopped, envoy.pid)
    report, elapsed = diagnose(mesh)
    assert elapsed < DEADLINE_S
    finding = first(report)
    assert (finding["code"], finding["subject"]) == ("TUL1037", "proxy/books-1.default")
    assert "service/books.default" in finding["related"]
    assert any(f"pid {envoy.pid}" in line and "state T" in line
               for line in finding["evidence"]), finding
    assert f"kill -CONT {envoy.pid}" in finding["fix"]
    started = time.monotonic()
    result = mesh.cli("check", "--proxy", "-o", "json", check=False, timeout=DEADLINE_S + 30)
    elapsed = time.monotonic() - started
    print(f"check --proxy with a frozen Envoy: {elapsed:.1f}s")
    assert result.returncode == 1, result.stdout
    assert elapsed < DEADLINE_S
    failed = [c for c in json.loads(result.stdout)["checks"] if c["status"] == "failed"]
    assert any("books-1.default" in json.dumps(c) for c in failed), failed


@pytest.mark.usefixtures("fast_telemetry")
def test_a_frozen_application_is_named(mesh: Mesh, stopped: list[int]) -> None:
    books_and_web(mesh)
    app = child(mesh, "books-1", str(ECHO_APP))
    stop(stopped, app.pid)
    report, elapsed = diagnose(mesh)
    assert elapsed < DEADLINE_S
    finding = first(report)
    assert (finding["code"], finding["subject"]) == ("TUL1036", "proxy/books-1.default")
    assert finding["severity"] == "critical"
    assert any(f"pid {app.pid}" in line and "echo.py" in line and "state T" in line
               for line in finding["evidence"]), finding
    assert f"kill -CONT {app.pid}" in finding["fix"]
    os.kill(app.pid, signal.SIGCONT)
    report, _ = diagnose(mesh)
    assert all(f["code"] != "TUL1036" for f in report["findings"]), report["findings"]


@pytest.mark.usefixtures("fast_telemetry")
@pytest.mark.parametrize(("process", "code"), [(str(ECHO_APP), "TUL1036"), ("envoy", "TUL1037")],
                         ids=["application", "envoy"])
def test_a_frozen_process_under_load_ranks_first(mesh: Mesh, stopped: list[int], process: str,
                                                 code: str) -> None:
    """Steady calls to books (two instances), one instance's application or Envoy frozen: its
    callers' requests wait and time out; the frozen process is the cause, above what its
    callers see."""
    mesh.run("books", name="books-1")
    mesh.run("books", name="books-2")
    port = free_port()
    mesh.run("web", name="web-1", extra=("--upstream", f"books:{port}"))
    mesh.wait_endpoints("web-1", "books", {"books-1", "books-2"})
    calling = threading.Event()
    calling.set()
    timed_out: list[int] = []

    def calls() -> None:
        while calling.is_set():
            try:
                request(port, "/", timeout=2.0)
            except TimeoutError:
                timed_out.append(1)
            except OSError:
                pass

    callers = [threading.Thread(target=calls, daemon=True) for _ in range(4)]
    for caller in callers:
        caller.start()
    try:
        stop(stopped, child(mesh, "books-1", process).pid)
        # The fault goes on for a while, as in life, before anyone looks: callers wait.
        wait_for("callers to time out on books-1", lambda: len(timed_out) >= 4, timeout=30)
        for args in ((), ("books",)):
            report, elapsed = diagnose(mesh, *args)
            assert elapsed < DEADLINE_S
            finding = first(report)
            assert (finding["code"], finding["subject"]) == (code, "proxy/books-1.default"), \
                [(f["code"], f["subject"], f["severity"]) for f in report["findings"]]
    finally:
        calling.clear()
        for caller in callers:
            caller.join(5)


# -- the control plane ----------------------------------------------------------------------------

def test_a_frozen_control_plane_is_not_answering_not_down(mesh: Mesh,
                                                          stopped: list[int]) -> None:
    pid = int(mesh.status()["pid"])
    stop(stopped, pid)
    report, elapsed = diagnose(mesh)
    assert elapsed < DEADLINE_S
    (finding,) = report["findings"]
    assert (finding["code"], finding["subject"]) == ("TUL1090", "mesh/controlplane")
    assert f"kill -CONT {pid}" in finding["fix"] and "tulle up" not in finding["fix"]
    assert any(f"pid {pid}" in line and "state T" in line for line in finding["evidence"])
    started = time.monotonic()
    status = mesh.cli("status", check=False, timeout=DEADLINE_S + 20)
    assert time.monotonic() - started < DEADLINE_S
    assert status.returncode != 0
    assert "running but not answering" in status.stderr, status.stderr
    assert "not running" not in status.stderr.replace("but not answering", "")
    os.kill(pid, signal.SIGCONT)
    assert mesh.status()["pid"] == pid


def test_a_stale_pid_file_is_not_a_running_control_plane(mesh: Mesh) -> None:
    mesh.cli("down")
    other = subprocess.Popen(["sleep", "60"])
    try:
        mesh.paths.lock_file.write_text(f"{other.pid}\n")
        report, _ = diagnose(mesh)
        (finding,) = report["findings"]
        assert finding["code"] == "TUL1016"
        assert "tulle up" in finding["fix"]
        line = next(e for e in finding["evidence"] if e.startswith("pid file"))
        assert "gone" in line and "another process" in line, line
        assert ", running" not in line
    finally:
        other.kill()
        other.wait()
    mesh.up()
