"""Agents dying and the control plane restarting."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from tests.support.mesh import Mesh, processes_alive, wait_for
from tests.support.traffic import Traffic
from tulle.local import state_lock_held

pytestmark = pytest.mark.envoy

SERVICE = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books}
spec: {protocol: http}
"""


def test_killed_agent_leaves_other_proxies_at_once(mesh: Mesh) -> None:
    books = mesh.run("books", name="books-1")
    mesh.run("books", name="books-2")
    mesh.run("web", name="web-1")
    mesh.wait_endpoints("web-1", "books", {"books-1", "books-2"})
    agent = psutil.Process(mesh.workload("books-1")["pid"])
    children = [p.pid for p in agent.children()]
    assert len(children) == 2  # Envoy and the application

    os.kill(agent.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    # At once: the session's end removes it, not the registry's 15 s grace for orphans (the
    # wait gives up before that grace could have done it).
    mesh.wait_endpoints("web-1", "books", {"books-2"}, timeout=10.0)
    print(f"measured: the killed workload left web-1's endpoints after "
          f"{time.monotonic() - killed_at:.2f}s")
    books.process.wait(5)
    # Its Envoy and application die with it rather than linger with stale config.
    wait_for("the killed agent's children to exit", lambda: not processes_alive(children), 5)
    assert "books-1" not in {w["name"] for w in mesh.api.get("/v1/workloads")}


def test_control_plane_restart_loses_nothing_and_traffic_flows(mesh: Mesh) -> None:
    mesh.cli("apply", "-f", "-", stdin=SERVICE)
    mesh.run("books", name="books-1")
    client = mesh.run("web", name="web-1")
    mesh.wait_endpoints("web-1", "books", {"books-1"})
    revision = mesh.status()["storeRevision"]

    traffic = Traffic(mesh, client)
    traffic.start()
    wait_for("traffic to flow", lambda: traffic.ok > 0)
    os.kill(mesh.status()["pid"], signal.SIGKILL)
    # The kernel releases its lock on the state directory as the process dies.
    wait_for("the control plane to die", lambda: not state_lock_held(mesh.paths))
    # Traffic keeps flowing on the sidecars' last config.
    ok_at_death = traffic.ok
    wait_for("requests to succeed with the control plane down",
             lambda: traffic.ok >= ok_at_death + 20)
    ok_while_down = traffic.ok
    mesh.up()

    def converged() -> bool:
        proxies = mesh.api.get("/v1/proxies")
        names = {p["node"] for p in proxies}
        synced = all(t["state"] == "SYNCED" for p in proxies for t in p["types"].values())
        return names == {"books-1.default", "web-1.default"} and synced

    wait_for("both proxies to reconnect and sync", converged, timeout=15)
    ok_synced = traffic.ok
    wait_for("requests to succeed after the restart", lambda: traffic.ok >= ok_synced + 20)
    traffic.stop()
    assert traffic.failures == [], "traffic must not fail while the control plane restarts"
    assert traffic.ok > ok_while_down > 0

    status = mesh.status()
    assert status["storeRevision"] == revision
    assert {w["name"]: w["state"] for w in mesh.api.get("/v1/workloads")} == {
        "books-1": "ready", "web-1": "ready"}
    services = mesh.cli("get", "service", "books", "-o", "json").stdout
    assert '"declared": true' in services
    # After the restart the proxies still follow changes.
    mesh.run("books", name="books-2")
    mesh.wait_endpoints("web-1", "books", {"books-1", "books-2"})


def test_agent_restarts_a_crashed_envoy(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    mesh.run("books", name="books-2")
    client = mesh.run("web", name="web-1")
    mesh.wait_endpoints("web-1", "books", {"books-1", "books-2"})
    agent = psutil.Process(mesh.workload("books-1")["pid"])
    (envoy,) = [p for p in agent.children() if p.name() == "envoy"]

    traffic = Traffic(mesh, client)
    traffic.start()
    envoy.kill()
    # The workload leaves the endpoints while its sidecar is down, then comes back.
    mesh.wait_endpoints("web-1", "books", {"books-2"}, timeout=10)
    mesh.wait_endpoints("web-1", "books", {"books-1", "books-2"}, timeout=20)
    traffic.stop()
    assert traffic.failures == [], "requests must go to the healthy instance meanwhile"
    (restarted,) = [p for p in agent.children() if p.name() == "envoy"]
    assert restarted.pid != envoy.pid
    assert "LIVE" in mesh.admin("books-1", "ready")


def test_graceful_down_and_up_keeps_workloads(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    client = mesh.run("web", name="web-1")
    mesh.wait_endpoints("web-1", "books", {"books-1"})
    down = mesh.cli("down", "-o", "json")  # agents are connected: it must not wait on them
    assert '"stopped": true' in down.stdout
    # The workloads it leaves running are listed.
    assert sorted(w["name"] for w in json.loads(down.stdout)["workloadsLeft"]) == [
        "books-1", "web-1"]
    # Sidecars keep serving their last config while the control plane is away.
    assert mesh.call(client, "http://books/")["status"] == 200
    mesh.up()
    wait_for("both workloads back", lambda: {
        w["name"] for w in mesh.api.get("/v1/workloads")
        if w["agentConnected"] and w["proxyConnected"]} == {"books-1", "web-1"}, timeout=20)
    mesh.sync()
    assert mesh.call(client, "http://books/")["status"] == 200
    # The reconnected sidecars held every resource already; still, each type is confirmed
    # (sent and ACKed), and proxy-status, get proxies and check tell the same.
    views = json.loads(mesh.cli("proxy-status", "-o", "json").stdout)
    assert {v["node"]: {t: s["state"] for t, s in v["types"].items()} for v in views} == {
        node: dict.fromkeys(("CDS", "EDS", "LDS", "SRDS", "RDS", "SDS"), "SYNCED")
        for node in ("books-1.default", "web-1.default")}, views
    listed = mesh.cli("get", "proxies").stdout
    assert listed.count("SDS:SYNCED") == 2 and "NOT" not in listed, listed
    check = json.loads(mesh.cli("check", "--proxy", "-o", "json", check=False).stdout)
    assert check["ok"], check
