"""What the data-plane benchmark measures per slice of load: the load generator's result, and
the CPU time the proxies, the agents and everyone else spent meanwhile. Shared by the HTTP/1.1
paths (``benchmarks.dataplane``) and the gRPC ones (``benchmarks.dataplane_grpc``)."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from benchmarks.openloop import LoadResult, merge
from benchmarks.paths import PathUnderTest


@dataclass(frozen=True)
class Settings:
    rates: tuple[int, ...]
    rounds: int
    slice_s: float  # per path, rate and round
    warmup_s: float
    grpc_rates: tuple[int, ...] = ()  # gRPC unary and stream (benchmarks.dataplane_grpc)


@dataclass(frozen=True)
class Cores:
    load: set[int]  # load generator, control plane
    data: set[int]  # server, proxies, agents

    @classmethod
    def of_this_process(cls) -> Cores:
        cpus = sorted(os.sched_getaffinity(0))
        return cls({cpus[0]}, {cpus[-1]})


@dataclass(frozen=True)
class Slice:
    load: LoadResult
    seconds: float
    proxy_cpu_s: float
    agent_cpu_s: float
    others_cpu_s: float  # every process on the machine but this benchmark's own


@dataclass(frozen=True)
class Memory:
    rss_mb: float
    pss_mb: float
    uss_mb: float
    agent_pss_mb: float  # the agent's part of pss_mb (0 without an agent)


@dataclass
class Results:
    slices: dict[tuple[str, int], list[Slice]] = field(default_factory=dict)
    memory: dict[tuple[str, str], Memory] = field(default_factory=dict)  # (path, side)

    def load(self, name: str, rate: int) -> LoadResult:
        return merge([s.load for s in self.slices[name, rate]])

    def cpu_share(self, name: str, rate: int, what: Callable[[Slice], float]) -> float:
        """Average vCPU over the slices."""
        slices = self.slices[name, rate]
        return sum(what(s) for s in slices) / sum(s.seconds for s in slices)

    def vcpu_per_1k(self, name: str, rate: int, what: Callable[[Slice], float]) -> float:
        """Average vCPU over the slices, per 1,000 requests per second."""
        slices = self.slices[name, rate]
        rps = sum(s.load.ok for s in slices) / sum(s.seconds for s in slices)
        return self.cpu_share(name, rate, what) * 1000 / rps


def _cpu_s(processes: tuple[psutil.Process, ...]) -> float:
    return sum(t.user + t.system for t in (p.cpu_times() for p in processes))


def _busy_s() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq


def _children_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the load generators we waited for
    return usage.ru_utime + usage.ru_stime


Load = Callable[[float, float], LoadResult]  # (rate, seconds): one load generator run


def take_slice(path: PathUnderTest, control_plane: psutil.Process, generate_load: Load,
               rate: int, seconds: float) -> Slice:
    ours = (*path.proxies, *path.agents, path.app, control_plane)
    proxies, agents, all_ours = _cpu_s(path.proxies), _cpu_s(path.agents), _cpu_s(ours)
    busy, children = _busy_s(), _children_s()
    started = time.monotonic()
    load = generate_load(rate, seconds)
    elapsed = time.monotonic() - started
    # Approximate: it also holds this Python process and kernel work charged to no process.
    others = (_busy_s() - busy) - (_cpu_s(ours) - all_ours) - (_children_s() - children)
    return Slice(load, elapsed, _cpu_s(path.proxies) - proxies, _cpu_s(path.agents) - agents,
                 max(0.0, others))


