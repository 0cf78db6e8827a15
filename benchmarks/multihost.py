"""Replicas on one etcd: a change applied on replica A, to the last ACK of the proxies
connected to replicas B and C; and failover, from replica A's death to every one of its
proxies connected and ACKed on another.

Three replicas and one etcd member, all on this host (tulle's replicas do not yet span hosts;
see docs/replicas.md). Proxies are real sidecars (`tulle run`), split over the replicas.

- Baseline, same run: the same change applied on B, to the last ACK of B's own proxies
  (what one replica alone takes). The target: the cross-replica figure within 100 ms of it.
- A change on A reaches B and C through etcd's watch; then each pushes to its proxies. The
  end of a round is when B and C each hold the new mesh version and all their proxies ACKed.
- Failover: kill -9 replica A; the figure is the time until every proxy that was A's is
  connected to B or C and ACKed there.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.etcd import etcd_cluster

from benchmarks.harness import BenchMesh, Figure, median, percentile, poll

TARGET_OVER_BASELINE_MS = 100.0


def _policy(seconds: int) -> dict[str, Any]:
    return {"source": "benchmark", "manifest": {
        "apiVersion": "tulle.io/v1alpha1", "kind": "TrafficPolicy",
        "metadata": {"name": "bench-policy", "namespace": "default"},
        "spec": {"targetRefs": [{"kind": "Service", "name": "bench-a"}],
                 "timeouts": {"connect": f"{seconds}s"}}}}


def _up(mesh: BenchMesh, store: str, key: Path) -> None:
    mesh.cli("up", "--api-port", "0", "--xds-port", "0", "--identity-port", "0",
             "--store", store, "--ca-encryption-key", str(key))


def _synced_after(mesh: BenchMesh, version: int) -> bool:
    """The replica holds a mesh newer than ``version`` and all its proxies ACKed it."""
    api = mesh.api
    if int(api.get("/v1/status")["meshVersion"]) <= version:
        return False
    return bool(api.get("/v1/xds/sync", {"timeout": 10})["synced"])


def _round(origin: BenchMesh, watchers: list[BenchMesh], change: dict[str, Any]) -> float:
    before = {id(m): int(m.api.get("/v1/status")["meshVersion"]) for m in watchers}
    origin.api.post("/v1/resources/apply", {"documents": [change]})
    started = time.perf_counter()
    for mesh in watchers:
        poll(lambda m=mesh: _synced_after(m, before[id(m)]), timeout=30,  # type: ignore[misc]
             interval=0.002)
    return (time.perf_counter() - started) * 1000


def run(quick: bool) -> tuple[list[Figure], str]:
    per_replica = 2 if quick else 4
    rounds = 5 if quick else 30
    with tempfile.TemporaryDirectory(prefix="tulle-bench-multi-") as tmp, \
            etcd_cluster(1) as (member,):
        root = Path(tmp)
        key = root / "ca.key"
        key.write_text(base64.b64encode(secrets.token_bytes(32)).decode())
        key.chmod(0o600)
        store = "etcd://" + member.url.removeprefix("http://")
        a, b, c = (BenchMesh(root / name) for name in "abc")
        replicas = (b, c, a)  # A last: its proxies' bootstraps then list B and C
        try:
            for mesh in replicas:
                _up(mesh, store, key)
            b.api.post("/v1/resources/apply", {"documents": [{"source": "benchmark",
                "manifest": {"apiVersion": "tulle.io/v1alpha1", "kind": "Service",
                             "metadata": {"name": "bench-a", "namespace": "default"},
                             "spec": {}}}]})
            nodes: dict[str, list[str]] = {}
            for name, mesh in zip("abc", (a, b, c), strict=True):
                nodes[name] = [f"client-{name}{i}.default" for i in range(per_replica)]
                for i in range(per_replica):
                    mesh.spawn("--service", f"client-{name}{i}", "--name", f"client-{name}{i}")

            def connected(mesh: BenchMesh, want: int) -> bool:
                return len(mesh.api.get("/v1/proxies")) >= want and \
                    bool(mesh.api.get("/v1/xds/sync", {"timeout": 5})["synced"])

            poll(lambda: all(connected(m, per_replica) for m in (a, b, c)), timeout=120,
                 interval=0.2)
            alone = [_round(b, [b], _policy(1 + i % 2)) for i in range(rounds)]
            across = [_round(a, [b, c], _policy(3 + i % 2)) for i in range(rounds)]

            pid = int(a.api.get("/v1/status")["pid"])
            os.kill(pid, signal.SIGKILL)
            killed = time.perf_counter()

            def moved() -> bool:
                seen: set[str] = set()
                for mesh in (b, c):
                    if not mesh.api.get("/v1/xds/sync", {"timeout": 5})["synced"]:
                        return False
                    seen |= {p["node"] for p in mesh.api.get("/v1/proxies")}
                return set(nodes["a"]) <= seen

            poll(moved, timeout=60, interval=0.05)
            failover = (time.perf_counter() - killed) * 1000
        finally:
            for mesh in replicas:
                with contextlib.suppress(Exception):  # A is dead: close the rest
                    mesh.close()
    figures = [
        Figure("change on A -> last ACK on B and C, p50", median(across), "ms",
               median(alone)),
        Figure("change on A -> last ACK on B and C, p99", percentile(across, 99), "ms",
               percentile(alone, 99), percentile(alone, 99) + TARGET_OVER_BASELINE_MS),
        Figure("replica killed -> its proxies ACKed elsewhere", failover, "ms"),
    ]
    return figures, (f"{rounds} changes; 3 replicas and 1 etcd member on this host, "
                     f"{per_replica} sidecars each; baseline: the change applied on B, to "
                     "B's own proxies")
