"""Real Envoys across xDS worker processes: the kernel spreads their streams over the workers,
a change reaches every one of them, and the proxies of a worker that is killed, or frozen,
reconnect (to the others or to its replacement) and converge, with `proxy-status` telling it
as it is."""

from __future__ import annotations

import json
import signal
from collections import Counter

import psutil
import pytest

from tests.support.mesh import Mesh, Workload, wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.envoy

WORKERS = 3
CLIENTS = 5

TEAPOT = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books}
---
apiVersion: tulle.io/v1alpha1
kind: TrafficPolicy
metadata: {name: books-teapot}
spec:
  targetRefs: [{kind: Service, name: books}]
  faultInjection: {abort: {httpStatus: %d, percent: 100}}
"""


def streams_by_worker(mesh: Mesh) -> Counter[int]:
    """Each worker's established connections on the xDS port (one per Envoy), by pid: read
    from the kernel, not from what tulle says."""
    port = mesh.endpoint.xds_port
    found: Counter[int] = Counter()
    for pid in mesh.status()["xdsWorkers"]:
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.status == psutil.CONN_ESTABLISHED and conn.laddr.port == port:
                found[pid] += 1
    return found


def all_answer(mesh: Mesh, clients: list[Workload], status: int) -> bool:
    return all(mesh.call(c, "http://books/")["status"] == status for c in clients)


def all_synced(mesh: Mesh, proxies: int) -> bool:
    views = mesh.api.get("/v1/proxies")
    return len(views) == proxies and all(v["state"] == "SYNCED" for v in views)


@pytest.mark.controlplane_args("--xds-workers", str(WORKERS))
def test_a_change_reaches_every_worker_and_a_lost_workers_proxies_converge(mesh: Mesh
                                                                         ) -> None:
    pids = mesh.status()["xdsWorkers"]
    assert len(pids) == WORKERS
    # The control plane itself serves no stream: every one is a worker's.
    assert all(c.laddr.port != mesh.endpoint.xds_port or c.status != psutil.CONN_ESTABLISHED
               for c in psutil.Process(mesh.status()["pid"]).net_connections(kind="tcp"))
    mesh.run("books", name="books-1")
    clients = [mesh.run("web", name=f"web-{i}", extra=("--upstream", f"books:{free_port()}"))
               for i in range(1, CLIENTS + 1)]
    proxies = CLIENTS + 1
    for client in clients:
        mesh.wait_endpoints(client.name, "books", {"books-1"})
    spread = wait_for("every Envoy's stream held by a worker",
                      lambda: (s := streams_by_worker(mesh)).total() == proxies and s)
    print(f"measured: streams per worker {sorted(spread.values())}")

    mesh.cli("apply", "-f", "-", stdin=TEAPOT % 418)
    mesh.sync()
    wait_for("the policy to reach every client", lambda: all_answer(mesh, clients, 418))

    # Kill the busiest worker: its proxies lose their streams.
    victim = spread.most_common(1)[0][0]
    before = {v["node"]: v["connectedAt"] for v in mesh.api.get("/v1/proxies")}
    psutil.Process(victim).send_signal(signal.SIGKILL)
    replaced = wait_for("a replacement worker",
                        lambda: (p := mesh.status()["xdsWorkers"]) and len(p) == WORKERS
                        and victim not in p and p)
    assert set(replaced) - {victim} >= set(pids) - {victim}
    wait_for("every proxy connected and SYNCED again", lambda: all_synced(mesh, proxies),
             timeout=30)
    after = {v["node"]: v["connectedAt"] for v in mesh.api.get("/v1/proxies")}
    moved = [n for n in before if after.get(n) != before[n]]
    assert len(moved) == spread[victim], "exactly the killed worker's proxies reconnected"

    # The next change reaches them all, wherever they landed.
    mesh.cli("apply", "-f", "-", stdin=TEAPOT % 503)
    mesh.sync()
    wait_for("the next change to reach every client", lambda: all_answer(mesh, clients, 503))
    assert streams_by_worker(mesh).total() == proxies

    # A frozen worker (SIGSTOP: its sockets stay open, it answers nothing) is killed and
    # replaced; its proxies move, and are not refused as someone else's duplicate stream.
    spread = streams_by_worker(mesh)
    frozen = spread.most_common(1)[0][0]
    psutil.Process(frozen).send_signal(signal.SIGSTOP)
    wait_for("the frozen worker replaced",
             lambda: frozen not in (p := mesh.status()["xdsWorkers"]) and len(p) == WORKERS,
             timeout=40)
    wait_for("every proxy connected and SYNCED after the freeze",
             lambda: all_synced(mesh, proxies), timeout=30)
    assert not psutil.pid_exists(frozen) or psutil.Process(frozen).status() == "zombie"
    mesh.cli("apply", "-f", "-", stdin=TEAPOT % 502)
    mesh.sync()
    wait_for("a change after the freeze to reach every client",
             lambda: all_answer(mesh, clients, 502))
    events = mesh.api.get("/v1/xds/stream-events")
    assert [e for e in events if e["kind"] == "duplicate"] == []
    assert mesh.status()["xdsWorkerRestarts"] == 2
    result = mesh.cli("proxy-status", "-o", "json")
    assert {p["state"] for p in json.loads(result.stdout)} == {"SYNCED"}
