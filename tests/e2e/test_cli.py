"""The CLI's contract: exit codes, one-shot commands, API authentication, local binds."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.support.mesh import Mesh
from tests.support.ports import free_port
from tulle.agent.locate import find_envoy

pytestmark = pytest.mark.envoy


def test_one_shot_command_exit_code_and_proxy_env(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    code = ("import os, sys, urllib.request, json;"
            "b = json.load(urllib.request.urlopen('http://books/x', timeout=5));"
            "print(b['workload']); sys.exit(7)")
    result = mesh.cli("run", "--service", "client", "--", sys.executable, "-c", code,
                      check=False)
    assert result.returncode == 7, result.stderr
    assert result.stdout.strip() == "books-1"
    # The one-shot client deregistered on the way out, and deleted its keys.
    assert [w["name"] for w in mesh.api.get("/v1/workloads")] == ["books-1"]
    (identity,) = (mesh.state_dir / "workloads").glob("client-*.default/identity")
    assert list(identity.iterdir()) == []


def test_api_refuses_requests_without_the_token(mesh: Mesh) -> None:
    url = f"http://127.0.0.1:{mesh.api_port}/v1/status"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5)
        assert refused.value.code == 401
        body = json.loads(refused.value.read())
        assert body["error"]["type"] == "auth"
    token = mesh.paths.token_file.read_text().strip()
    assert oct(mesh.paths.token_file.stat().st_mode & 0o777) == "0o600"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as ok:
        assert json.loads(ok.read())["pid"] > 0


def test_agent_admin_proxy_refuses_without_its_token(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    agent_port = mesh.workload("books-1")["agentPort"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{agent_port}/admin/config_dump", timeout=5)
    assert refused.value.code == 401
    assert "LIVE" in mesh.admin("books-1", "ready")


def test_a_users_own_envoy_given_relative_to_where_they_run(mesh: Mesh,
                                                            tmp_path: Path) -> None:
    # Envoy runs in the workload's directory (where it binds its admin socket): a relative
    # --envoy-binary must still mean the user's own.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "envoy").symlink_to(find_envoy())
    workload = mesh.run("books", name="books-1", extra=("--envoy-binary", "mine/envoy"),
                        cwd=tmp_path)
    [envoy] = [p for p in psutil.Process(workload.process.pid).children(recursive=True)
               if p.name() == "envoy"]
    assert envoy.cmdline()[0] == str(tmp_path / "mine" / "envoy")
    assert "LIVE" in mesh.admin("books-1", "ready")


def test_upstream_binds_a_local_port(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    local = free_port()
    code = (f"import urllib.request, json; r = urllib.request.build_opener("
            f"urllib.request.ProxyHandler({{}})).open('http://127.0.0.1:{local}/p', timeout=5);"
            "print(json.load(r)['workload'])")
    result = mesh.cli("run", "--service", "client", "--upstream", f"books:{local}", "--",
                      sys.executable, "-c", code, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "books-1"


def test_run_refuses_bad_flags(mesh: Mesh) -> None:
    for args, text in ((["--service", "Bad_Name"], "--service"),
                       (["--service", "ok", "--upstream", "books"], "--upstream"),
                       (["--service", "ok", "--label", "novalue"], "--label")):
        result = mesh.cli("run", *args, "--", "true", check=False)
        assert result.returncode != 0
        assert text in result.stderr, result.stderr


def test_port_0_is_chosen_by_the_kernel_reported_recorded_and_reused(mesh: Mesh) -> None:
    mesh.cli("down")
    started = json.loads(mesh.cli("up", "--api-port", "0", "--xds-port", "0",
                                  "--identity-port", "0", "-o", "json").stdout)
    chosen = mesh.endpoint  # the record the CLI, agents and `ApiClient.from_state` read
    ports = {chosen.api_port, chosen.xds_port, chosen.identity_port}
    assert 0 not in ports and len(ports) == 3, chosen
    assert started["apiUrl"] == f"http://127.0.0.1:{chosen.api_port}"
    assert started["xdsAddress"] == f"127.0.0.1:{chosen.xds_port}"
    assert started["identityAddress"] == f"127.0.0.1:{chosen.identity_port}"
    books = mesh.run("books", name="books-1")  # an agent and its Envoy find both ports
    # A restart without port flags binds the same ports again: the sidecars find it.
    mesh.cli("down")
    restarted = json.loads(mesh.cli("up", "-o", "json").stdout)
    assert mesh.endpoint == chosen
    assert restarted["apiUrl"] == started["apiUrl"]
    mesh.wait_ready(books)  # its agent and Envoy reconnected


def test_status_without_control_plane_fails_clearly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    idle = Mesh(tmp_path)
    result = idle.cli("status", check=False)
    assert result.returncode != 0
    assert "tulle up" in result.stderr


def test_foreground_control_plane_stops_on_sigterm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import signal
    import subprocess

    from tests.support.mesh import TULLE, wait_for

    idle = Mesh(tmp_path)
    process = subprocess.Popen(
        [*TULLE, "--state-dir", str(idle.state_dir), "up", "--foreground",
         *idle.port_flags()],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=idle.env())
    try:
        status = wait_for("the foreground control plane", idle.status, timeout=20)
        assert status["pid"] == process.pid
        second = idle.cli("up", "-o", "json")  # already running: reported, not started twice
        assert json.loads(second.stdout)["pid"] == process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
    assert process.returncode == 0, output
    assert "control plane stopped" in output  # it logs to stderr in the foreground
    assert "control plane stopped" in (idle.state_dir / "controlplane.log").read_text()
    assert json.loads(idle.cli("down", "-o", "json").stdout) == {
        "stopped": False, "workloadsStopped": [], "workloadsLeft": []}


def test_instance_names_are_unique_per_namespace(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    result = mesh.cli("run", "--service", "books", "--name", "books-1", "--", "true",
                      check=False)
    assert result.returncode != 0
    assert "already running" in result.stderr and "--name" in result.stderr
    # The same name in another namespace is another workload.
    mesh.run("books", name="books-1", namespace="other")
    assert len(mesh.api.get("/v1/workloads")) == 2
