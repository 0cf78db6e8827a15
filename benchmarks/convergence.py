"""A config change ACKed by every proxy of a 20-workload mesh, measured after the debounce.

Each round applies a change, then asks the control plane to push at once and wait until every
proxy has ACKed (GET /v1/xds/sync): the time of that call is the figure. Two kinds of change:

- a route change: an HTTPRoute's weights flip, which rewrites that service's route table (RDS);
- a cluster change: a Service's protocol flips, which rewrites that service's cluster (CDS,
  then its endpoints). Envoy re-warms the cluster and builds a new TLS context for it, so this
  costs more on the proxy side.

Baseline, same run: one API round trip.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.harness import Figure, bench_mesh, median, percentile, poll
from tulle.client import ApiClient

TARGET_P99_MS = 100.0


def _service(protocol: str) -> dict[str, Any]:
    return {"source": "benchmark", "manifest": {
        "apiVersion": "tulle.io/v1alpha1", "kind": "Service",
        "metadata": {"name": "bench-target", "namespace": "default"},
        "spec": {"protocol": protocol}}}


def _route(weight: int) -> dict[str, Any]:
    return {"source": "benchmark", "manifest": {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "bench-split", "namespace": "default"},
        "spec": {"parentRefs": [{"name": "bench-a"}], "rules": [{"backendRefs": [
            {"name": "bench-a", "weight": weight}, {"name": "bench-b", "weight": 100 - weight},
        ]}]}}}


def _rounds(api: ApiClient, rounds: int, proxies: int, change: Any) -> list[float]:
    pushes = []
    for i in range(rounds):
        api.post("/v1/resources/apply", {"documents": [change(i)]})
        started = time.perf_counter()
        result = api.get("/v1/xds/sync", {"timeout": 10})
        pushes.append((time.perf_counter() - started) * 1000)
        if not result["synced"] or len(result["proxies"]) != proxies:
            raise RuntimeError(f"round {i}: proxies did not converge: {result}")
    return pushes


def run(quick: bool) -> tuple[list[Figure], str]:
    proxies = 5 if quick else 20
    rounds = 10 if quick else 100
    with bench_mesh() as mesh:
        api = mesh.api
        api.post("/v1/resources/apply", {"documents": [
            _service("http"),
            *({"source": "benchmark", "manifest": {
                "apiVersion": "tulle.io/v1alpha1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default"}, "spec": {}}}
              for name in ("bench-a", "bench-b"))]})
        clients = {i: mesh.spawn("--service", f"client-{i}", "--name", f"client-{i}")
                   for i in range(proxies)}

        def converged() -> bool:
            # A client that lost a race for a free port (other jobs share the machine)
            # exits at start: start it again rather than wait for it forever.
            for i, process in clients.items():
                if process.poll() is not None:
                    clients[i] = mesh.spawn("--service", f"client-{i}", "--name",
                                            f"client-{i}")
            return len(api.get("/v1/proxies")) == proxies and \
                bool(api.get("/v1/xds/sync", {"timeout": 5})["synced"])
        try:
            poll(converged, timeout=120, interval=0.2)
        except TimeoutError as exc:
            seen = [p["node"] if isinstance(p, dict) and "node" in p else p
                    for p in api.get("/v1/proxies")]
            raise RuntimeError(f"{proxies} sidecars did not connect and sync in 120 s: "
                               f"connected {seen}; client exit codes "
                               f"{[c.poll() for c in clients.values()]}") from exc
        round_trips = []
        for _ in range(rounds):
            started = time.perf_counter()
            api.get("/v1/status")
            round_trips.append((time.perf_counter() - started) * 1000)
        routes = _rounds(api, rounds, proxies, lambda i: _route(90 if i % 2 else 10))
        clusters = _rounds(api, rounds, proxies,
                           lambda i: _service(("tcp", "http")[i % 2]))
    target = TARGET_P99_MS if proxies == 20 else None
    figures = [
        Figure(f"route change -> ACK by all {proxies} proxies, p50", median(routes), "ms",
               median(round_trips)),
        Figure(f"route change -> ACK by all {proxies} proxies, p99", percentile(routes, 99),
               "ms", percentile(round_trips, 99), target),
        Figure(f"cluster change -> ACK by all {proxies} proxies, p50", median(clusters), "ms",
               median(round_trips)),
        Figure(f"cluster change -> ACK by all {proxies} proxies, p99",
               percentile(clusters, 99), "ms", percentile(round_trips, 99), target),
    ]
    return figures, f"{rounds} changes of each kind; baseline: one API round trip"
