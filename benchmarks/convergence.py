"""A config change ACKed by every proxy of a 20-workload mesh, measured after the debounce.

Each round applies a change that reaches every proxy (a Service's protocol flips, which
rewrites every outbound route table), then asks the control plane to push at once and wait
until every proxy has ACKed (GET /v1/xds/sync). Baseline, same run: one API round trip.
"""

from __future__ import annotations

import time

from benchmarks.harness import Figure, bench_mesh, median, percentile, poll

TARGET_P99_MS = 100.0


def _service(protocol: str) -> dict[str, object]:
    return {"source": "benchmark", "manifest": {
        "apiVersion": "tulle.io/v1alpha1", "kind": "Service",
        "metadata": {"name": "bench-target", "namespace": "default"},
        "spec": {"protocol": protocol}}}


def run(quick: bool) -> tuple[list[Figure], str]:
    proxies = 5 if quick else 20
    rounds = 10 if quick else 100
    with bench_mesh() as mesh:
        api = mesh.api
        for i in range(proxies):
            mesh.spawn("--service", f"client-{i}", "--name", f"client-{i}")
        poll(lambda: len(api.get("/v1/proxies")) == proxies and
             api.get("/v1/xds/sync", {"timeout": 5})["synced"], timeout=120, interval=0.2)
        round_trips, pushes = [], []
        for i in range(rounds):
            started = time.perf_counter()
            api.get("/v1/status")
            round_trips.append((time.perf_counter() - started) * 1000)
            api.post("/v1/resources/apply", {"documents": [_service(("http", "tcp")[i % 2])]})
            started = time.perf_counter()
            result = api.get("/v1/xds/sync", {"timeout": 10})
            pushes.append((time.perf_counter() - started) * 1000)
            if not result["synced"] or len(result["proxies"]) != proxies:
                raise RuntimeError(f"round {i}: proxies did not converge: {result}")
    figures = [
        Figure(f"change -> ACK by all {proxies} proxies, p50", median(pushes), "ms",
               median(round_trips)),
        Figure(f"change -> ACK by all {proxies} proxies, p99", percentile(pushes, 99), "ms",
               percentile(round_trips, 99), TARGET_P99_MS if proxies == 20 else None),
    ]
    return figures, f"{rounds} changes; baseline: one API round trip (GET /v1/status)"
