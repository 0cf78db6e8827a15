"""`tulle diagnose`'s own parts: what "No problems found" says it is based on (never hiding
missing evidence), and the control plane told "not answering" (TUL1090) from "not running"
(TUL1016), with a pid file left behind never called running."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from tulle.cli.cmd_diagnose import render, unreachable_report
from tulle.diagnose.model import Scope
from tulle.errors import ControlPlaneUnavailable
from tulle.local import acquire_state_lock
from tulle.settings import StatePaths, ensure_private_dir

GATHERED: dict[str, Any] = {
    "services": 5, "workloads": 7, "proxiesRead": 7,
    "proxiesAsked": [f"w-{i}.default" for i in range(7)],
    "proxiesFresh": [f"w-{i}.default" for i in range(7)], "proxiesMissing": [],
    "windowSeconds": 60.0, "newestReportSeconds": 0.4, "oldestReportSeconds": 2.1}


def report(**gathered: Any) -> dict[str, Any]:
    return {"findings": [], "windowSeconds": 60.0, "ruleErrors": [],
            "gathered": {**GATHERED, **gathered}}


def test_no_problems_says_what_it_is_based_on() -> None:
    assert render(report()) == (
        "No problems found in the last 60s of traffic: 5 services, 7 workloads; 7/7 sidecars "
        "read fresh; reports 0.4-2.1s old.")


def test_no_problems_with_missing_evidence_names_what_is_missing() -> None:
    text = render(report(proxiesFresh=GATHERED["proxiesFresh"][1:], proxiesMissing=[
        {"proxy": "w-0.default", "reason": "agent did not answer: no answer in time",
         "lastReportSeconds": 41.0}]))
    assert not text.startswith("No problems found in the last")
    assert "incomplete" in text and "6/7 sidecars read fresh" in text
    assert "w-0.default: agent did not answer: no answer in time; last report 41.0s old" \
        in text


def paths(tmp_path: Path) -> StatePaths:
    ensure_private_dir(tmp_path / "state")
    return StatePaths(tmp_path / "state")


def test_a_live_control_plane_that_does_not_answer_is_tul1090(tmp_path: Path) -> None:
    state = paths(tmp_path)
    lock = acquire_state_lock(state)  # this process plays the control plane
    try:
        data = unreachable_report(state, ControlPlaneUnavailable("did not answer in time"),
                                  Scope())
    finally:
        lock.close()
    (finding,) = data["findings"]
    assert finding["code"] == "TUL1090" and finding["subject"] == "mesh/controlplane"
    assert "running but does not answer" in finding["cause"]
    assert "tulle down && tulle up" in finding["fix"]


def test_a_pid_file_left_behind_is_not_a_running_control_plane(tmp_path: Path) -> None:
    state = paths(tmp_path)
    other = subprocess.Popen(["sleep", "30"])
    # Until it has exec'd, the child's command line is not sleep's (empty under load).
    deadline = time.monotonic() + 10
    cmdline = Path(f"/proc/{other.pid}/cmdline")
    while not cmdline.read_bytes().startswith(b"sleep") and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        state.lock_file.write_text(f"{other.pid}\n")
        data = unreachable_report(state, ControlPlaneUnavailable("refused"), Scope())
    finally:
        other.kill()
        other.wait()
    (finding,) = data["findings"]
    assert finding["code"] == "TUL1016" and "tulle up" in finding["fix"]
    pid_line = next(line for line in finding["evidence"] if line.startswith("pid file"))
    assert "gone" in pid_line and "another process (sleep 30)" in pid_line
