"""Control-plane convergence with synthetic ADS clients: 1,000 services, up to 2,000 proxies.

The mesh: ``services`` Services applied through the API, each with one or two endpoints (every
second service has two), which are workloads registered as agents register them (session,
certificate, readiness; see synthmesh.py). Extra client-only workloads make up the largest N.
All are registered before anything is measured, so the mesh is the same for every N.

For each N, proxies of the first N workloads (half Delta, half SotW; adsclient.py) run in a few
worker processes (fleet.py) and:
- connect all at once (the storm): time until every one holds, and has ACKed, everything it
  references;
- see ``repeats`` changes of each kind, each timed from the API call to the last proxy's ACK
  of the response carrying it: (a) an endpoint added (a new workload of a service reports
  ready), (b) that endpoint removed (its session ends), (c) a route changed (an HTTPRoute's
  weights flip; every proxy's route table of that one service changes). Clients stamp their
  ACKs; the control plane's own tracker (/v1/proxies) is read as a cross-check;
- the control plane's CPU during each change and while idle, and its RSS.

Baselines, same run: N = 100 (the smallest N) for latencies and the storm; the control plane
with every workload registered and no proxy connected for RSS and idle CPU.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from benchmarks.fleet import Fleet
from benchmarks.harness import BenchMesh, Figure, bench_mesh, median, percentile
from benchmarks.synthmesh import (
    SyntheticWorkload,
    WorkloadSpec,
    close_all,
    register,
    register_all,
)
from tulle.model.meta import ServiceRef
from tulle.settings import StatePaths
from tulle.xds import names, types
from tulle.xds.sync import ProxySync
from tulle.xds.types import short_name

# Issue 18's targets, at 1,000 services: change -> last ACK p99 by N, the storm and the
# control plane's CPU per change at 1,000 proxies, the API call, RSS per connected proxy.
TARGET_P99_MS = {1000: 500.0, 2000: 1000.0}
TARGET_STORM_S = 5.0
TARGET_CPU_PER_CHANGE_S = 0.3
TARGET_API_MS = 50.0
TARGET_RSS_PER_PROXY_MB = 0.5
TARGET_N = 1000
IDLE_S = 5.0
STORM_TIMEOUT_ENV = "TULLE_BENCH_STORM_TIMEOUT_S"  # to look past the default 300 s


def storm_timeout_s() -> float:
    """How long the storm may take before the run fails."""
    return float(os.environ.get(STORM_TIMEOUT_ENV, "300"))
WORKERS = 2
ROUTE_TABLE = names.outbound_route_config(ServiceRef("default", "svc-0000"))  # _route's parent


@dataclass(frozen=True)
class Plan:
    services: int
    sizes: tuple[int, ...]
    repeats: int

    @classmethod
    def of(cls, quick: bool, proxies: int | None = None) -> Plan:
        """``proxies``: that one size alone, with the N = 100 baseline (the same mesh)."""
        if quick:
            return cls(50, (20,), 5)
        sizes = (100, 1000, 2000) if proxies is None else tuple(sorted({100, proxies}))
        return cls(1000, sizes, 15)


def _service(i: int) -> str:
    return f"svc-{i:04d}"


def _documents(services: int, weight: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [{"source": "benchmark", "manifest": {
        "apiVersion": "tulle.io/v1alpha1", "kind": "Service",
        "metadata": {"name": _service(i), "namespace": "default"}, "spec": {}}}
        for i in range(services)]
    return [*docs, _route(weight)]


def _route(weight: int) -> dict[str, Any]:
    return {"source": "benchmark", "manifest": {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "bench-split", "namespace": "default"},
        "spec": {"parentRefs": [{"name": _service(0)}], "rules": [{"backendRefs": [
            {"name": _service(1), "weight": weight},
            {"name": _service(2), "weight": 100 - weight}]}]}}}


def pool_specs(services: int, proxies: int) -> list[WorkloadSpec]:
    """Endpoints first replica of every service, then second replicas, then client-only
    workloads up to ``proxies``; protocols alternate."""
    replicas = [(i, "a") for i in range(services)] + \
        [(i, "b") for i in range(0, services, 2)]
    specs = [WorkloadSpec(f"{_service(i)}-{r}", _service(i), slot,
                          "delta" if slot % 2 == 0 else "sotw")
             for slot, (i, r) in enumerate(replicas)]
    for slot in range(len(specs), proxies):
        specs.append(WorkloadSpec(f"client-{slot}", "bench-client", slot,
                                  "delta" if slot % 2 == 0 else "sotw", app=False))
    return specs


@dataclass
class Results:
    storm_s: float = 0.0
    storm_cp_cpu_s: float = 0.0
    storm_clients_cpu_s: float = 0.0
    rss_mb: float = 0.0
    idle_cpu_pct: float = 0.0
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    tracker_ms: dict[str, list[float]] = field(default_factory=dict)
    call_ms: dict[str, list[float]] = field(default_factory=dict)  # until the API answered
    cpu_s: dict[str, list[float]] = field(default_factory=dict)
    refused: int = 0  # streams refused or closed during the storm (a retry costs a config)


class Bench:
    def __init__(self, mesh: BenchMesh, plan: Plan) -> None:
        self.mesh = mesh
        self.plan = plan
        self.paths = StatePaths(mesh.state)
        self.api = mesh.api
        self.cp = mesh.control_plane()
        self.workdir = mesh.root / "synthetic"
        self.fleet: Fleet | None = None
        self._added = 0
        self._weight = 10

    async def call(self, method: str, path: str, *args: Any) -> Any:
        return await asyncio.to_thread(getattr(self.api, method), path, *args)

    async def settle(self, proxies: int) -> None:
        """Push whatever is pending and wait until every connected proxy has ACKed it."""
        result = await self.call("get", "/v1/xds/sync", {"timeout": 60})
        if not result["synced"] or len(result["proxies"]) != proxies:
            raise RuntimeError(f"{proxies} proxies did not sync: {len(result['proxies'])} "
                               f"connected, synced={result['synced']}")

    def _processes(self) -> list[psutil.Process]:
        """The control plane and its xDS worker processes."""
        return [self.cp, *self.cp.children()]

    def cpu(self) -> float:
        """CPU seconds of the control plane and its workers (a worker replaced meanwhile
        loses its share: none is, in a run that passes)."""
        return float(sum(sum(p.cpu_times()[:2]) for p in self._processes()))

    def rss_mb(self) -> float:
        return float(sum(p.memory_info().rss for p in self._processes())) / 2**20

    async def idle_cpu_pct(self) -> float:
        before = self.cpu()
        await asyncio.sleep(IDLE_S)
        return 100 * (self.cpu() - before) / IDLE_S

    async def timed_change(self, results: Results, kind: str, type_url: str, name: str,
                           change: Callable[[], Awaitable[Any]], proxies: int) -> None:
        assert self.fleet is not None
        await self.fleet.arm(type_url, name)
        cpu, wall = self.cpu(), time.time()
        await change()
        results.call_ms.setdefault(kind, []).append((time.time() - wall) * 1000)
        acks = await self.fleet.collect(timeout=120)
        last = max(acks.values())
        results.cpu_s.setdefault(kind, []).append(self.cpu() - cpu)
        results.latency_ms.setdefault(kind, []).append((last - wall) * 1000)
        # Cross-check with the control plane's tracker: when it saw each proxy's ACK (once
        # it has read them all: the API may answer before the last ACKs are read).
        await self.settle(proxies)
        statuses = map(ProxySync.from_json, await self.call("get", "/v1/proxies"))
        seen = [s.of(short_name(type_url)).acked_at for s in statuses]
        after = [t for t in seen if t is not None and t >= wall]
        if len(after) != proxies:
            raise RuntimeError(f"{kind}: the tracker does not show every proxy's ACK after "
                               f"the change at {wall}: {sorted(map(str, seen))[:5]}, "
                               f"clients: {sorted(acks.values())[:5]}")
        results.tracker_ms.setdefault(kind, []).append((max(after) - wall) * 1000)

    async def endpoint_changes(self, results: Results, proxies: int) -> None:
        services = self.plan.services
        service = _service((7 * self._added + 3) % services)
        cluster = names.outbound_cluster(ServiceRef("default", service))
        slot = len(pool_specs(services, max(self.plan.sizes))) + self._added
        spec = WorkloadSpec(f"added-{self._added}", service, slot)
        self._added += 1
        workload = await register(self.paths, spec, self.workdir, ready=False)
        await self.settle(proxies)
        await self.timed_change(results, "endpoint added", types.ENDPOINT, cluster,
                                workload.ready, proxies)
        await self.timed_change(results, "endpoint removed", types.ENDPOINT, cluster,
                                workload.close, proxies)

    async def route_change(self, results: Results, proxies: int) -> None:
        self._weight = 100 - self._weight
        document = _route(self._weight)
        await self.timed_change(
            results, "route changed", types.ROUTE, ROUTE_TABLE,
            lambda: self.call("post", "/v1/resources/apply", {"documents": [document]}),
            proxies)

    async def phase(self, pool: list[SyntheticWorkload], proxies: int, quick: bool
                    ) -> Results:
        assert self.fleet is not None
        results = Results()
        workers = [psutil.Process(pid) for pid in self.fleet.pids]
        clients_cpu = sum(sum(w.cpu_times()[:2]) for w in workers)
        cpu, wall = self.cpu(), time.time()
        progress = asyncio.create_task(self.storm_progress(workers, wall))
        try:
            completed = await self.fleet.connect([w.proxy for w in pool[:proxies]],
                                                 timeout=storm_timeout_s())
        finally:
            progress.cancel()
        results.storm_s = max(completed) - wall
        results.storm_cp_cpu_s = self.cpu() - cpu
        results.storm_clients_cpu_s = sum(sum(w.cpu_times()[:2]) for w in workers) - \
            clients_cpu
        events = await self.call("get", "/v1/xds/stream-events")
        results.refused = sum(1 for e in events if e["at"] >= wall)
        await self.settle(proxies)
        if quick:
            await self.check_against_tracker([w.node_id for w in pool[:proxies]])
        await asyncio.sleep(1.0)
        results.rss_mb = self.rss_mb()
        results.idle_cpu_pct = await self.idle_cpu_pct()
        for _ in range(self.plan.repeats):
            await self.endpoint_changes(results, proxies)
            await self.route_change(results, proxies)
        await self.fleet.disconnect()
        await self.wait_disconnected()
        return results

    async def storm_progress(self, clients: list[psutil.Process], wall: float) -> None:
        """Every 15 s of a storm, on stderr: the streams the control plane has admitted, and
        the CPU the control plane (with its workers) and the clients used meanwhile: a storm
        that makes no progress on an idle machine is stranded, not slow."""
        def clients_cpu() -> float:
            return sum(sum(w.cpu_times()[:2]) for w in clients)
        cpu, theirs, at = self.cpu(), clients_cpu(), time.monotonic()
        while True:
            await asyncio.sleep(15)
            status = await self.call("get", "/v1/status")
            now_cpu, now_theirs, now = self.cpu(), clients_cpu(), time.monotonic()
            print(f"  storm {time.time() - wall:4.0f} s: {status['proxiesConnected']} streams "
                  f"admitted; control plane {100 * (now_cpu - cpu) / (now - at):.0f} % CPU, "
                  f"clients {100 * (now_theirs - theirs) / (now - at):.0f} %",
                  file=sys.stderr, flush=True)
            cpu, theirs, at = now_cpu, now_theirs, now

    async def check_against_tracker(self, nodes: list[str]) -> None:
        """Each synthetic proxy holds, per type, exactly the version the control plane
        recorded as ACKed by it."""
        assert self.fleet is not None
        held = await self.fleet.state(nodes)
        for status in map(ProxySync.from_json, await self.call("get", "/v1/proxies")):
            mine = held[status.node]
            for acked in status.types:
                if mine.get(acked.type, {}).get("acked") != acked.acked_version:
                    raise RuntimeError(f"{status.node} {acked.type}: the client holds "
                                       f"{mine.get(acked.type)}, the tracker says {acked}")

    async def wait_disconnected(self) -> None:
        deadline = time.monotonic() + 60
        while (await self.call("get", "/v1/status"))["proxiesConnected"]:
            if time.monotonic() > deadline:
                raise RuntimeError("proxies still connected 60 s after disconnecting")
            await asyncio.sleep(0.1)


async def measure(plan: Plan, quick: bool) -> tuple[list[Figure], str]:
    load_before = os.getloadavg()
    with bench_mesh() as mesh:
        bench = Bench(mesh, plan)
        rss_empty = bench.rss_mb()
        await bench.call("post", "/v1/resources/apply",
                         {"documents": _documents(plan.services, 10)})
        started = time.monotonic()
        pool = await register_all(bench.paths, pool_specs(plan.services, max(plan.sizes)),
                                  bench.workdir)
        registration_s = time.monotonic() - started
        try:
            await bench.settle(0)
            await asyncio.sleep(1.0)
            rss_registered = bench.rss_mb()
            idle_registered = await bench.idle_cpu_pct()
            bench.fleet = await Fleet.start(WORKERS)
            try:
                by_size = {n: await bench.phase(pool, n, quick) for n in plan.sizes}
            finally:
                await bench.fleet.close()
        finally:
            await close_all(pool)
    load_after = os.getloadavg()
    figures = _figures(plan, by_size, rss_registered, idle_registered)
    notes = (f"{plan.services} services, {len(pool)} workloads registered in "
             f"{registration_s:.1f} s; {plan.repeats} changes of each kind per N; p99 of "
             f"{plan.repeats} is their maximum; idle control plane: {rss_empty:.0f} MB RSS "
             f"empty, {rss_registered:.0f} MB with every workload registered; load average "
             f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; {WORKERS} client "
             f"processes")
    return figures, notes


def _figures(plan: Plan, by_size: dict[int, Results], rss_registered: float,
             idle_registered: float) -> list[Figure]:
    base_n = min(plan.sizes)
    base = by_size[base_n]
    figures = []
    for n, r in by_size.items():
        at_target = n == TARGET_N and plan.services == 1000
        p99_target = TARGET_P99_MS.get(n) if plan.services == 1000 else None

        def baseline(value: float, n: int = n) -> float | None:
            return value if n != base_n else None
        figures.append(Figure(f"N={n}: storm, all connected and ACKed", r.storm_s, "s",
                              baseline(base.storm_s), TARGET_STORM_S if at_target else None))
        figures.append(Figure(f"N={n}: storm, control-plane CPU", r.storm_cp_cpu_s, "s"))
        figures.append(Figure(f"N={n}: storm, synthetic clients' CPU",
                              r.storm_clients_cpu_s, "s"))
        figures.append(Figure(f"N={n}: storm, streams refused", r.refused, "streams"))
        for kind, values in r.latency_ms.items():
            ref = base.latency_ms[kind]
            figures.append(Figure(f"N={n}: {kind} -> last ACK, p50", median(values), "ms",
                                  baseline(median(ref))))
            figures.append(Figure(f"N={n}: {kind} -> last ACK, p99", percentile(values, 99),
                                  "ms", baseline(percentile(ref, 99)),
                                  p99_target))
            figures.append(Figure(f"N={n}: {kind}, tracker's last ACK, p99",
                                  percentile(r.tracker_ms[kind], 99), "ms"))
            figures.append(Figure(f"N={n}: {kind}, API call answered, p50",
                                  median(r.call_ms[kind]), "ms", None,
                                  TARGET_API_MS if at_target else None))
            figures.append(Figure(f"N={n}: {kind}, control-plane CPU, median",
                                  median(r.cpu_s[kind]), "s", None,
                                  TARGET_CPU_PER_CHANGE_S if at_target else None))
        figures.append(Figure(f"N={n}: control-plane CPU idle", r.idle_cpu_pct, "%",
                              idle_registered))
        figures.append(Figure(f"N={n}: control-plane RSS", r.rss_mb, "MB", rss_registered))
        figures.append(Figure(f"N={n}: RSS per connected proxy",
                              (r.rss_mb - rss_registered) / n, "MB", None,
                              TARGET_RSS_PER_PROXY_MB))
    return figures


def run(quick: bool, proxies: int | None = None) -> tuple[list[Figure], str]:
    return asyncio.run(measure(Plan.of(quick, proxies), quick))

