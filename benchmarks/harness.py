"""A throwaway mesh for benchmarks: control plane and sidecars as real processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tulle.client import ApiClient
from tulle.settings import StatePaths

TULLE = [sys.executable, "-m", "tulle.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(argv: Sequence[str], cpus: set[int] | None) -> list[str]:
    """``argv`` run on ``cpus`` (with everything it starts), through util-linux's taskset,
    which execs it: the same process, and no preexec_fn in a process that has threads."""
    if cpus is None:
        return list(argv)
    return ["taskset", "--cpu-list", ",".join(map(str, sorted(cpus))), *argv]


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def poll(check: Callable[[], Any], timeout: float, interval: float = 0.002) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            result = check()
            if result:
                return result
        time.sleep(interval)
    raise TimeoutError("benchmark step timed out")


# `python -m benchmarks --xds-workers N` starts every benchmark's control plane with N.
XDS_WORKERS_ENV = "TULLE_BENCH_XDS_WORKERS"


@dataclass
class BenchMesh:
    root: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.root / "state"

    def cli(self, *args: str) -> str:
        result = subprocess.run([*TULLE, "--state-dir", str(self.state), *args],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"tulle {' '.join(args)}: {result.stderr}")
        return result.stdout

    def up(self) -> None:
        """At first start, ports the kernel chooses (bound, never released: nothing else can
        take them); a restart reuses them, as the control plane recorded them."""
        first = not StatePaths(self.state).endpoint_file.exists()
        workers = os.environ.get(XDS_WORKERS_ENV)
        self.cli("up", *(["--api-port", "0", "--xds-port", "0", "--identity-port", "0"]
                         if first else []),
                 *(["--xds-workers", workers] if workers else []))

    @property
    def api(self) -> ApiClient:
        return ApiClient.from_state(StatePaths(self.state), timeout=60)

    def control_plane(self) -> psutil.Process:
        state = str(self.state)
        return next(p for p in psutil.process_iter(["cmdline"])
                    if "tulle.controlplane" in (cmdline := " ".join(p.info["cmdline"] or ()))
                    and state in cmdline)

    def spawn(self, *args: str, env: Mapping[str, str] | None = None,
              cpus: set[int] | None = None) -> subprocess.Popen[bytes]:
        """``tulle run ARGS``; ``cpus`` pins the agent, its Envoy and its application."""
        process = subprocess.Popen(pinned([*TULLE, "--state-dir", str(self.state), "run",
                                           *args], cpus),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=env)
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """Stop one workload as Ctrl-C would (it drains first), and forget it."""
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self.processes.remove(process)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        with contextlib.suppress(Exception):
            self.cli("down")


@contextlib.contextmanager
def bench_mesh() -> Iterator[BenchMesh]:
    with tempfile.TemporaryDirectory(prefix="tulle-bench-") as tmp:
        mesh = BenchMesh(Path(tmp))
        mesh.up()
        try:
            yield mesh
        finally:
            mesh.close()


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None = None  # the same quantity for the baseline, same run
    target: float | None = None  # the target, same unit
    at_least: bool = False  # the target is a floor (a share found), not a ceiling (a time)

    def line(self) -> str:
        text = f"  {self.name:<48} {self.value:10.2f} {self.unit}"
        if self.baseline:
            text += f"   x{self.value / self.baseline:5.2f} of baseline ({self.baseline:.2f})"
        if self.target is not None:
            met = self.value >= self.target if self.at_least else self.value <= self.target
            text += (f"   {'meets' if met else 'MISSES'} target "
                     f"{'>=' if self.at_least else '<='} {self.target:g}")
        return text


def report(title: str, figures: list[Figure], notes: str = "") -> dict[str, Any]:
    print(f"\n{title}")
    for figure in figures:
        print(figure.line())
    if notes:
        print(f"  ({notes})")
    return {"title": title, "figures": [f.__dict__ for f in figures], "notes": notes}


def dump(results: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
