"""The data-plane benchmark's native tools, compiled with the system's C compiler per run:

- ``openloop``: open-loop HTTP/1.1 load at a constant rate over keep-alive connections, with
  latencies measured from each request's intended send time (as wrk2 does). Debian has no
  constant-rate load tool (no wrk2, no vegeta; wrk, ab, hey and siege are closed-loop).
- ``http1k``: the server behind every path, answering each request with 1 KB.

Both are single-threaded C with epoll, so neither adds a Python interpreter's pauses to the
figures. The sources are in ``benchmarks/native``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import percentile, pinned

SOURCES = Path(__file__).parent / "native"
CONNECTIONS = 16
# The generator sleeps until this long before a request is due, then polls: waking from idle
# costs ~100 us on this VM, which would otherwise land in every latency.
SPIN_US = 200


@dataclass(frozen=True)
class NativeTools:
    openloop: Path
    http1k: Path


def build(directory: Path) -> NativeTools:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise RuntimeError("the data-plane benchmark needs a C compiler (apt-get install gcc)")
    built = []
    for name in ("openloop", "http1k"):
        binary = directory / name
        result = subprocess.run([compiler, "-O2", "-Wall", "-o", str(binary),
                                 str(SOURCES / f"{name}.c")],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"cannot compile {name}.c:\n{result.stderr}")
        built.append(binary)
    return NativeTools(*built)


@dataclass(frozen=True)
class LoadResult:
    rate: float  # asked for
    sent: int
    ok: int
    errors: int
    unfinished: int  # still unanswered 5 s after the last one was due
    seconds: float
    latencies_ms: tuple[float, ...]  # sorted, one per 200 response
    send_lags_ms: tuple[float, ...]  # sorted: how late the generator itself sent each one

    def latency(self, pct: float) -> float:
        return percentile(self.latencies_ms, pct)

    def send_lag(self, pct: float) -> float:
        return percentile(self.send_lags_ms, pct)

    @property
    def achieved_rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def problem(self) -> str | None:
        if self.errors or self.unfinished:
            return (f"{self.errors} errors and {self.unfinished} unanswered of "
                    f"{self.sent} requests sent")
        return None


def generate(tools: NativeTools, port: int, rate: float, seconds: float,
             cpus: set[int] | None) -> LoadResult:
    """``rate`` GETs per second to 127.0.0.1:``port`` for ``seconds``."""
    result = subprocess.run(
        pinned([str(tools.openloop), str(port), f"{rate:g}", f"{seconds:g}", str(CONNECTIONS),
                "/bench", str(SPIN_US)], cpus),
        capture_output=True, text=True, check=False, timeout=seconds + 60)
    if result.returncode != 0:
        raise RuntimeError(f"openloop failed: {result.stderr.strip()}")
    return parse(rate, result.stdout)


def parse(rate: float, output: str) -> LoadResult:
    """A generator's output: "sent N ok N errors N unfinished N elapsed S", then one
    "latency_ns send_lag_ns" line per answer (``benchmarks.grpcload`` prints the same)."""
    head, *lines = output.splitlines()
    words = head.split()
    summary = dict(zip(words[::2], words[1::2], strict=True))
    pairs = [line.split() for line in lines]
    return LoadResult(
        rate=rate, sent=int(summary["sent"]), ok=int(summary["ok"]),
        errors=int(summary["errors"]), unfinished=int(summary["unfinished"]),
        seconds=float(summary["elapsed"]),
        latencies_ms=tuple(sorted(int(latency) / 1e6 for latency, _ in pairs)),
        send_lags_ms=tuple(sorted(int(lag) / 1e6 for _, lag in pairs)))


def merge(results: list[LoadResult]) -> LoadResult:
    """Slices of the same load, as one."""
    return LoadResult(
        rate=results[0].rate, sent=sum(r.sent for r in results), ok=sum(r.ok for r in results),
        errors=sum(r.errors for r in results), unfinished=sum(r.unfinished for r in results),
        seconds=sum(r.seconds for r in results),
        latencies_ms=tuple(sorted(v for r in results for v in r.latencies_ms)),
        send_lags_ms=tuple(sorted(v for r in results for v in r.send_lags_ms)))
