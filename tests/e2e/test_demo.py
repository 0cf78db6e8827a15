"""`tulle demo` brings up the bookstore through sidecars and Ctrl-C takes it all down."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.mesh import TULLE, Mesh, wait_for
from tulle.settings import ControlPlaneEndpoint, StatePaths

pytestmark = pytest.mark.envoy


def test_demo_runs_and_stops_cleanly(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    paths = StatePaths(mesh.state_dir)
    paths.ensure()
    # Not the default ports, so parallel tests do not collide: 0, for the kernel to choose
    # (`tulle demo` starts the control plane with the last run's ports, these).
    ControlPlaneEndpoint(api_port=0, xds_port=0, identity_port=0).save(paths)
    out = tmp_path / "demo.out"
    with out.open("w") as sink:
        demo = subprocess.Popen([*TULLE, "--state-dir", str(mesh.state_dir), "demo"],
                                stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                env=mesh.env())
    try:
        wait_for("the demo to start", lambda: "Press Ctrl-C" in out.read_text(), timeout=90)
        workloads = {w["name"]: w for w in mesh.api.get("/v1/workloads")}
        assert set(workloads) == {"authors-1", "books-1", "books-2", "web-1", "traffic-1"}
        assert all(w["state"] == "ready" for w in workloads.values()), workloads
        pids = [workloads[n]["pid"] for n in workloads]
        children = [c.pid for p in pids for c in psutil.Process(p).children()]

        # The front end's page is assembled from books and authors, through the mesh.
        web_port = workloads["web-1"]["appPort"]
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/api", timeout=10) as page:
            body = json.load(page)
        assert len(body["books"]) == 5
        assert body["servedBy"]["books"] in {"books-1", "books-2"}
        # The traffic generator keeps calling web, and its calls succeed.
        traffic_log = mesh.state_dir / "demo" / "traffic-1.log"
        wait_for("20 demo requests", lambda: "20 requests sent, 0 failed"
                 in traffic_log.read_text(), timeout=30)
        assert mesh.nacks() == []
        # Right after start, the telemetry commands have something to show: the flaky
        # canary (books-2) fails now and then, and the canary route carries traffic.
        def canary_seen() -> dict[str, Any] | None:
            rows = mesh.api.get("/v1/telemetry/workloads?window=300&name=books-2")
            row: dict[str, Any] = rows["workloads"][0]
            return row if row["codes"].get("5xx") else None
        books_2 = wait_for("a failure of the canary", canary_seen, timeout=60)
        assert books_2["successRate"] < 1.0
        routes = mesh.api.get("/v1/telemetry/routes?window=300&name=books")["routes"]
        assert {r["rule"] for r in routes} == {"beta-testers", "canary"}
        assert next(r for r in routes if r["rule"] == "canary")["requests"] > 0
        edges = mesh.api.get("/v1/telemetry/edges?window=300")["edges"]
        # web reaches books through the canary route's subsets.
        assert {(e["source"]["workload"], e["destination"]["service"]) for e in edges} >= {
            ("traffic-1", "web"), ("web-1", "books-v1"), ("web-1", "books-v2"),
            ("web-1", "authors")}
        listed = json.loads(mesh.cli("get", "workloads", "-o", "json").stdout)
        assert {w["name"] for w in listed} == set(workloads)
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(60)
    assert code == 0, out.read_text()
    assert "demo stopped" in out.read_text()
    # Everything it started is gone: agents, Envoys, applications and the control plane.
    def alive() -> list[int]:
        return [p for p in pids + children if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]

    try:
        wait_for("everything the demo started to exit", lambda: not alive(), timeout=10)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {alive()}") from None
    assert mesh.cli("status", check=False).returncode != 0
