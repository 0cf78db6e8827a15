"""The data-plane tax: the same open-loop load, at the same rates, through four paths.

- direct: load generator -> server;
- Envoy pair: a hand-written pair with static config and mTLS (``benchmarks.envoypair``), the
  floor for any Envoy-based mesh;
- tulle pair: a client sidecar (``--upstream bench-server:PORT``, which the load generator
  calls) -> mTLS -> the server's sidecar, with the default telemetry;
- tulle pair, telemetry off: the same, with ``TULLE_TELEMETRY_INTERVAL=off``.

Load: 16 keep-alive connections at a constant rate, 1 KB responses, latency measured from each
request's intended send time, so stalls are not hidden (``benchmarks.openloop``). Latency is
shown against the direct path measured in the same run, and as the latency added over it.

The machine is shared, and other people's work comes and goes. So the paths take turns: each
round brings every path up in turn (the order rotates), loads it at each rate for a slice
after a warm-up, and takes it down; a path's figures pool its slices. Only the path being
measured runs on the data CPU. Pinning, the same in every run: the load generator and the
control plane on the first CPU; the server, the proxies and the agents on the last.

Proxy CPU is the Envoys' CPU time under load, per 1,000 requests per second. Memory is taken
at the end of the last round. PSS splits shared pages (Envoy's binary, Python's libraries)
among every process that maps them, other people's Envoys included, so USS, the memory no
other process shares, is shown beside it.

Targets, at 1,000 rps: the sidecar pair adds at most 0.25 ms at p99 over direct and its p99
is within 10 % of the Envoy pair's; at most 0.15 vCPU of proxy CPU per 1,000 rps; at most
60 MB PSS per sidecar (agent + Envoy); the default telemetry adds at most 5 % to the pair's
p99 compared with telemetry off.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from benchmarks import dataplane_grpc, paths
from benchmarks.harness import Figure, bench_mesh
from benchmarks.openloop import CONNECTIONS, LoadResult, NativeTools, build, generate
from benchmarks.paths import LABELS, PathUnderTest, Sidecar
from benchmarks.slices import Cores, Memory, Results, Settings, Slice, take_slice

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
TARGET_ADDED_P99_MS = 0.25
TARGET_OVER_FLOOR_PERCENT = 10.0
TARGET_CPU_PER_1K = 0.15
TARGET_PSS_MB = 60.0
TARGET_TELEMETRY_PERCENT = 5.0
TARGET_RATE = 1000
MB = 1e6


# gRPC adds about 22 s to the quick run (3 paths x 2 kinds), within CI's budget for it.
QUICK = Settings(rates=(200,), rounds=1, slice_s=2.5, warmup_s=0.5, grpc_rates=(200,))
FULL = Settings(rates=(200, 1000), rounds=3, slice_s=10.0, warmup_s=2.0,
                grpc_rates=(200, 1000))


def _memory(sidecar: Sidecar) -> Memory:
    envoy = sidecar.envoy.memory_full_info()
    agent = sidecar.agent.memory_full_info() if sidecar.agent is not None else None
    return Memory(rss_mb=(envoy.rss + (agent.rss if agent else 0)) / MB,
                  pss_mb=(envoy.pss + (agent.pss if agent else 0)) / MB,
                  uss_mb=(envoy.uss + (agent.uss if agent else 0)) / MB,
                  agent_pss_mb=(agent.pss if agent else 0) / MB)


def measure(settings: Settings) -> tuple[Results, dict[str, Results]]:
    """The HTTP/1.1 paths' results, and the gRPC paths' per kind (unary, stream)."""
    cores = Cores.of_this_process()
    results = Results()
    grpc_results: dict[str, Results] = {}
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores.load)  # the control plane, started below, inherits it
    try:
        with tempfile.TemporaryDirectory(prefix="tulle-dataplane-") as tmp, \
                bench_mesh() as mesh:
            tools = build(Path(tmp))
            control_plane = mesh.control_plane()
            openers: dict[str, Callable[[], contextlib.AbstractContextManager[PathUnderTest]]]
            openers = {
                "direct": lambda: paths.direct(tools, cores.data),
                "envoy": lambda: paths.hand_written(tools, cores.data, Path(tmp)),
                "tulle": lambda: paths.tulle_pair(mesh, tools, cores.data, telemetry=True),
                "tulle-off": lambda: paths.tulle_pair(mesh, tools, cores.data,
                                                      telemetry=False),
            }
            names = list(openers)
            for turn in range(settings.rounds):
                for name in names[turn % len(names):] + names[:turn % len(names)]:
                    with openers[name]() as path:
                        _round(path, name, control_plane, tools, cores, settings, results)
                        if turn == settings.rounds - 1:
                            for side, sidecar in path.sidecars.items():
                                results.memory[name, side] = _memory(sidecar)
            if settings.grpc_rates:
                grpc_results = dataplane_grpc.measure(mesh, control_plane, cores, settings,
                                                      Path(tmp))
    finally:
        os.sched_setaffinity(0, own)
    return results, grpc_results


def _round(path: PathUnderTest, name: str, control_plane: psutil.Process, tools: NativeTools,
           cores: Cores, settings: Settings, results: Results) -> None:
    def load(rate: float, seconds: float) -> LoadResult:
        return generate(tools, path.port, rate, seconds, cores.load)

    for rate in settings.rates:
        load(rate, settings.warmup_s)
        taken = take_slice(path, control_plane, load, rate, settings.slice_s)
        if (problem := taken.load.problem()) is not None:
            raise RuntimeError(f"{LABELS[name]} at {rate} rps: {problem}")
        results.slices.setdefault((name, rate), []).append(taken)


def _latency_figures(results: Results, rate: int) -> Iterator[Figure]:
    loads = {name: results.load(name, rate) for name in LABELS}
    for pct in PERCENTILES:
        direct = loads["direct"].latency(pct)
        yield Figure(f"{rate} rps p{pct:g}: direct", direct, "ms")
        for name in ("envoy", "tulle", "tulle-off"):
            yield Figure(f"{rate} rps p{pct:g}: {LABELS[name]}", loads[name].latency(pct),
                         "ms", direct)
    for pct in PERCENTILES:
        direct = loads["direct"].latency(pct)
        floor = loads["envoy"].latency(pct) - direct
        yield Figure(f"{rate} rps p{pct:g} added: Envoy pair", floor, "ms")
        for name in ("tulle", "tulle-off"):
            target = (TARGET_ADDED_P99_MS if (rate, pct, name) == (TARGET_RATE, 99, "tulle")
                      else None)
            yield Figure(f"{rate} rps p{pct:g} added: {LABELS[name]}",
                         loads[name].latency(pct) - direct, "ms",
                         floor if floor > 0 else None, target)
    at_target = rate == TARGET_RATE
    p99 = {name: load.latency(99) for name, load in loads.items()}
    yield Figure(f"{rate} rps p99: tulle pair over Envoy pair",
                 100 * (p99["tulle"] / p99["envoy"] - 1), "%",
                 target=TARGET_OVER_FLOOR_PERCENT if at_target else None)
    yield Figure(f"{rate} rps p99: telemetry on over off",
                 100 * (p99["tulle"] / p99["tulle-off"] - 1), "%",
                 target=TARGET_TELEMETRY_PERCENT if at_target else None)
    yield Figure(f"{rate} rps load generator's send lag p50", loads["direct"].send_lag(50),
                 "ms")
    yield Figure(f"{rate} rps load generator's send lag p99", loads["direct"].send_lag(99),
                 "ms")


def _cpu_figures(results: Results, rate: int) -> Iterator[Figure]:
    def proxies(s: Slice) -> float:
        return s.proxy_cpu_s

    def agents(s: Slice) -> float:
        return s.agent_cpu_s

    floor = results.vcpu_per_1k("envoy", rate, proxies)
    yield Figure(f"{rate} rps proxy CPU per 1k rps: Envoy pair", floor, "vCPU")
    yield Figure(f"{rate} rps proxy CPU per 1k rps: tulle pair",
                 results.vcpu_per_1k("tulle", rate, proxies), "vCPU", floor,
                 TARGET_CPU_PER_1K if rate == TARGET_RATE else None)
    yield Figure(f"{rate} rps proxy CPU per 1k rps: tulle, tel. off",
                 results.vcpu_per_1k("tulle-off", rate, proxies), "vCPU", floor)
    # Telemetry costs the agents per interval, not per request: shown as a share of a core.
    for name, label in (("tulle", "tulle pair"), ("tulle-off", "tel. off")):
        yield Figure(f"{rate} rps both agents' CPU, {label}",
                     100 * results.cpu_share(name, rate, agents), "% of a core")
    slices = [s for name in LABELS for s in results.slices[name, rate]]
    yield Figure(f"{rate} rps other people's CPU during the load",
                 sum(s.others_cpu_s for s in slices) / sum(s.seconds for s in slices), "vCPU")


def _memory_figures(results: Results) -> Iterator[Figure]:
    for side in ("client", "server"):
        floor = results.memory["envoy", side]
        for name in ("tulle", "tulle-off"):
            mine = results.memory[name, side]
            suffix = "" if name == "tulle" else ", tel. off"
            yield Figure(f"{side} sidecar PSS (agent + Envoy){suffix}", mine.pss_mb, "MB",
                         floor.pss_mb, TARGET_PSS_MB)
            yield Figure(f"{side} sidecar USS (agent + Envoy){suffix}", mine.uss_mb, "MB",
                         floor.uss_mb)
            yield Figure(f"{side} sidecar RSS (agent + Envoy){suffix}", mine.rss_mb, "MB",
                         floor.rss_mb)
            yield Figure(f"{side} sidecar PSS, agent only{suffix}", mine.agent_pss_mb, "MB")


def run(quick: bool) -> tuple[list[Figure], str]:
    settings = QUICK if quick else FULL
    results, grpc_results = measure(settings)
    figures = []
    for rate in settings.rates:
        figures += [*_latency_figures(results, rate), *_cpu_figures(results, rate)]
    figures += _memory_figures(results)
    figures += dataplane_grpc.figures(grpc_results, settings.grpc_rates)
    cores = Cores.of_this_process()
    return figures, (
        f"open loop, {CONNECTIONS} keep-alive connections, 1 KB responses, latency from each "
        f"request's intended send time; per path and rate {settings.rounds} x "
        f"{settings.slice_s:g} s, each after {settings.warmup_s:g} s of warm-up, paths taking "
        f"turns; load generator and control plane on CPU {min(cores.load)}, server, proxies "
        f"and agents on CPU {min(cores.data)}; baselines: the direct path (latency) and the "
        "hand-written Envoy pair (CPU, memory)"
        + (f"; gRPC: {dataplane_grpc.NOTES}" if settings.grpc_rates else ""))

