"""The gRPC paths of the data-plane benchmark, as ``benchmarks.paths`` has them for HTTP/1.1:
direct, the hand-written Envoy pair speaking HTTP/2, and the tulle pair for a Service declared
``protocol: grpc``. The server is ``benchmarks.grpcload serve``; routes on both pairs set no
request timeout, so a stream lasts a whole slice."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil

from benchmarks.envoypair import envoy_pair
from benchmarks.grpcload import ANSWER, REQUEST, UNARY
from benchmarks.harness import BenchMesh, free_port, pinned, poll
from benchmarks.openloop import LoadResult, parse
from benchmarks.paths import PathUnderTest, Sidecar

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "bench-grpc"
RESOURCES = f"""\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {{name: {SERVICE}}}
spec: {{protocol: grpc}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {SERVICE}}}
spec:
  parentRefs: [{{name: {SERVICE}}}]
  rules:
  - backendRefs: [{{name: {SERVICE}}}]
    timeouts: {{request: 0s}}
"""


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.grpcload", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def serves(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return bool(channel.unary_unary(UNARY)(REQUEST, timeout=2) == ANSWER)


def generate(port: int, kind: str, rate: float, seconds: float, cpus: set[int] | None
             ) -> LoadResult:
    """``rate`` calls (``unary``) or stream messages (``stream``) per second to ``port``."""
    result = subprocess.run(pinned(_python("load", str(port), kind, f"{rate:g}", f"{seconds:g}"),
                                   cpus), capture_output=True, text=True, check=False,
                            timeout=seconds + 60, env=_env(), cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"gRPC load failed: {result.stderr.strip()[-2000:]}")
    return parse(rate, result.stdout)


@contextlib.contextmanager
def _server(port: int, cpus: set[int]) -> Iterator[psutil.Process]:
    process = subprocess.Popen(pinned(_python("serve", str(port)), cpus), env=_env(), cwd=ROOT,
                               stdin=subprocess.DEVNULL)
    try:
        poll(lambda: serves(port), timeout=20, interval=0.05)
        yield psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def direct(cpus: set[int]) -> Iterator[PathUnderTest]:
    port = free_port()
    with _server(port, cpus) as app:
        yield PathUnderTest(port, app)


@contextlib.contextmanager
def hand_written(cpus: set[int], directory: Path) -> Iterator[PathUnderTest]:
    app_port = free_port()
    with _server(app_port, cpus) as app, \
            envoy_pair(directory, app_port, cpus, http2=True) as pair:
        poll(lambda: serves(pair.port), timeout=30, interval=0.05)
        yield PathUnderTest(pair.port, app, {
            "client": Sidecar(psutil.Process(pair.client.pid)),
            "server": Sidecar(psutil.Process(pair.server.pid))})


def declare(mesh: BenchMesh, directory: Path) -> None:
    """The gRPC Service and its route (no request timeout), once per mesh."""
    manifest = directory / "bench-grpc.yaml"
    manifest.write_text(RESOURCES)
    mesh.cli("apply", "-f", str(manifest))


@contextlib.contextmanager
def tulle_pair(mesh: BenchMesh, cpus: set[int]) -> Iterator[PathUnderTest]:
    """``tulle run --service bench-grpc --port P -- python -m benchmarks.grpcload serve P`` and
    a client sidecar with ``--upstream bench-grpc:PORT``, with the default telemetry."""
    env = {k: v for k, v in _env().items() if k != "TULLE_TELEMETRY_INTERVAL"}
    app_port, upstream_port = free_port(), free_port()
    server = mesh.spawn("--service", SERVICE, "--name", SERVICE, "--port", str(app_port),
                        "--", *_python("serve", str(app_port)), env=env, cpus=cpus)
    client = mesh.spawn("--service", "bench-grpc-client", "--name", "bench-grpc-client",
                        "--upstream", f"{SERVICE}:{upstream_port}", env=env, cpus=cpus)
    try:
        poll(lambda: serves(upstream_port), timeout=60, interval=0.05)
        client_agent, server_agent = psutil.Process(client.pid), psutil.Process(server.pid)
        envoy = {"client": _child(client_agent, "envoy"), "server": _child(server_agent, "envoy")}
        app = next(p for p in server_agent.children() if p.pid != envoy["server"].pid)
        yield PathUnderTest(upstream_port, app, {
            "client": Sidecar(envoy["client"], client_agent),
            "server": Sidecar(envoy["server"], server_agent)})
    finally:
        mesh.stop(client)
        mesh.stop(server)


def _child(parent: psutil.Process, name: str) -> psutil.Process:
    return next(p for p in parent.children() if p.name() == name)
