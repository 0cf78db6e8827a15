"""The data-plane tax for gRPC: unary calls and a bidirectional stream's messages, at the same
rates, direct, through the hand-written Envoy pair (HTTP/2 on every hop) and through the tulle
pair (a Service declared ``protocol: grpc``, default telemetry). Part of
``python -m benchmarks --only dataplane`` (``benchmarks.dataplane`` runs it in its mesh, after
the HTTP/1.1 paths).

The same method as HTTP/1.1: paths take turns, each loaded at each rate for a slice after a
warm-up; latency from each call's intended send time; proxy CPU per 1,000 calls (or messages)
per second. The load generator and the server are Python (grpcio's asyncio API,
``benchmarks.grpcload``), the same on every path: their cost is in the direct path too, so the
figures to read are those added over direct, and the ratios tulle pair / Envoy pair.

Alone, in a mesh of its own (a few minutes at most, for a quick look between full runs)::

    python -m benchmarks.dataplane_grpc [ROUNDS SLICE_S RATE...]
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from benchmarks import grpcpaths
from benchmarks.harness import BenchMesh, Figure, bench_mesh, report
from benchmarks.openloop import LoadResult
from benchmarks.paths import LABELS, PathUnderTest
from benchmarks.slices import Cores, Results, Settings, Slice, take_slice

KINDS = ("unary", "stream")
PATHS = ("direct", "envoy", "tulle")
NOTES = ("unary calls and one bidirectional stream's messages over one channel, 1 KB answers, "
         "load generator and server in Python (grpcio asyncio), the same on every path")


def measure(mesh: BenchMesh, control_plane: psutil.Process, cores: Cores, settings: Settings,
            directory: Path) -> dict[str, Results]:
    grpcpaths.declare(mesh, directory)
    results = {kind: Results() for kind in KINDS}
    openers: dict[str, Callable[[], contextlib.AbstractContextManager[PathUnderTest]]] = {
        "direct": lambda: grpcpaths.direct(cores.data),
        "envoy": lambda: grpcpaths.hand_written(cores.data, directory),
        "tulle": lambda: grpcpaths.tulle_pair(mesh, cores.data),
    }
    for turn in range(settings.rounds):
        for name in PATHS[turn % len(PATHS):] + PATHS[:turn % len(PATHS)]:
            with openers[name]() as path:
                for kind in KINDS:
                    _round(path, name, kind, control_plane, cores, settings, results[kind])
    return results


def _round(path: PathUnderTest, name: str, kind: str, control_plane: psutil.Process,
           cores: Cores, settings: Settings, results: Results) -> None:
    def load(rate: float, seconds: float) -> LoadResult:
        return grpcpaths.generate(path.port, kind, rate, seconds, cores.load)

    for rate in settings.grpc_rates:
        load(rate, settings.warmup_s)
        taken = take_slice(path, control_plane, load, rate, settings.slice_s)
        if (problem := taken.load.problem()) is not None:
            raise RuntimeError(f"gRPC {kind}, {LABELS[name]} at {rate} rps: {problem}")
        results.slices.setdefault((name, rate), []).append(taken)


def figures(results: dict[str, Results], rates: tuple[int, ...]) -> list[Figure]:
    return [figure for kind in results for rate in rates
            for figure in _figures(kind, results[kind], rate)]


def _figures(kind: str, results: Results, rate: int) -> Iterator[Figure]:
    prefix = f"gRPC {kind} {rate} rps"
    loads = {name: results.load(name, rate) for name in PATHS}
    for pct in (50.0, 99.0):
        direct = loads["direct"].latency(pct)
        yield Figure(f"{prefix} p{pct:g}: direct", direct, "ms")
        floor = loads["envoy"].latency(pct) - direct
        yield Figure(f"{prefix} p{pct:g} added: Envoy pair", floor, "ms")
        # Beside it: the ratio to the Envoy pair's (when the floor is above zero).
        yield Figure(f"{prefix} p{pct:g} added: tulle pair", loads["tulle"].latency(pct) - direct,
                     "ms", floor if floor > 0 else None)

    def proxies(s: Slice) -> float:
        return s.proxy_cpu_s

    floor_cpu = results.vcpu_per_1k("envoy", rate, proxies)
    yield Figure(f"{prefix} proxy CPU per 1k rps: Envoy pair", floor_cpu, "vCPU")
    yield Figure(f"{prefix} proxy CPU per 1k rps: tulle pair",
                 results.vcpu_per_1k("tulle", rate, proxies), "vCPU", floor_cpu)
    yield Figure(f"{prefix} load generator's send lag p99", loads["direct"].send_lag(99), "ms")


def main(args: list[str]) -> None:
    rounds, slice_s, *rates = args or ["2", "5", "200", "1000"]
    settings = Settings(rates=(), rounds=int(rounds), slice_s=float(slice_s), warmup_s=1.0,
                        grpc_rates=tuple(int(r) for r in rates))
    cores = Cores.of_this_process()
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores.load)  # the control plane, started below, inherits it
    try:
        with tempfile.TemporaryDirectory(prefix="tulle-dataplane-grpc-") as tmp, \
                bench_mesh() as mesh:
            results = measure(mesh, mesh.control_plane(), cores, settings, Path(tmp))
    finally:
        os.sched_setaffinity(0, own)
    report("Data-plane tax, gRPC", figures(results, settings.grpc_rates),
           f"{NOTES}; per path, kind and rate {settings.rounds} x {settings.slice_s:g} s after "
           f"{settings.warmup_s:g} s of warm-up, paths taking turns; load generator and "
           f"control plane on CPU {min(cores.load)}, server and proxies on CPU "
           f"{min(cores.data)}")


if __name__ == "__main__":
    main(sys.argv[1:])
