"""Endpoints follow workloads as they come and go, live, with no Envoy restart."""

from __future__ import annotations

from collections import Counter

import psutil
import pytest

from tests.support.mesh import Mesh, Workload, wait_for
from tests.support.traffic import Traffic

pytestmark = pytest.mark.envoy


def envoy_pid(mesh: Mesh, name: str) -> int:
    agent = psutil.Process(mesh.workload(name)["pid"])
    envoys = [p.pid for p in agent.children() if p.name() == "envoy"]
    assert len(envoys) == 1, envoys
    return envoys[0]


def spread(mesh: Mesh, client: Workload, requests: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(requests):
        result = mesh.call(client, "http://books/")
        assert result["status"] == 200, result
        seen[result["body"]["workload"]] += 1
    return seen


def test_scale_out_and_back_in(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    client = mesh.run("web", name="web-1")
    mesh.wait_endpoints("web-1", "books", {"books-1"})
    pids = {"web-1": envoy_pid(mesh, "web-1"), "books-1": envoy_pid(mesh, "books-1")}

    extra = [mesh.run("books", name=f"books-{i}") for i in (2, 3)]
    mesh.wait_endpoints("web-1", "books", {"books-1", "books-2", "books-3"})
    seen = spread(mesh, client, 60)
    assert set(seen) == {"books-1", "books-2", "books-3"}, seen
    assert min(seen.values()) >= 10, f"round robin should spread load evenly: {seen}"

    traffic = Traffic(mesh, client)
    traffic.start()
    for workload in extra:
        assert workload.stop() == 0  # Ctrl-C: drained, then the app exits cleanly
    mesh.wait_endpoints("web-1", "books", {"books-1"})
    ok = traffic.ok
    wait_for("requests to succeed after the scale-in", lambda: traffic.ok >= ok + 20)
    traffic.stop()
    assert traffic.ok > 0
    assert traffic.failures == [], "removing instances must not fail requests"

    assert set(spread(mesh, client, 20)) == {"books-1"}
    # Every change arrived over xDS: the surviving sidecars are the same Envoy processes.
    assert {n: envoy_pid(mesh, n) for n in pids} == pids
    workloads = {w["name"] for w in mesh.api.get("/v1/workloads")}
    assert workloads == {"books-1", "web-1"}
