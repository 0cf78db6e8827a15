"""The paths the data-plane benchmark compares: what runs, where the load goes, and whose CPU
and memory count. Each is a context manager that starts its processes pinned to the data
CPUs, waits until a request through the whole path gets its 1 KB, and stops them on exit."""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.envoypair import envoy_pair
from benchmarks.harness import BenchMesh, free_port, pinned, poll
from benchmarks.openloop import NativeTools

LABELS = {"direct": "direct", "envoy": "Envoy pair", "tulle": "tulle pair",
          "tulle-off": "tulle, telemetry off"}


@dataclass(frozen=True)
class Sidecar:
    envoy: psutil.Process
    agent: psutil.Process | None = None  # None: a hand-written Envoy, no agent


@dataclass(frozen=True)
class PathUnderTest:
    port: int  # where the load generator sends its requests
    app: psutil.Process  # the server
    sidecars: dict[str, Sidecar] = field(default_factory=dict)  # "client", "server"

    @property
    def proxies(self) -> tuple[psutil.Process, ...]:
        return tuple(s.envoy for s in self.sidecars.values())

    @property
    def agents(self) -> tuple[psutil.Process, ...]:
        return tuple(s.agent for s in self.sidecars.values() if s.agent is not None)


def serves(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/ready")
        response = connection.getresponse()
        return response.status == 200 and len(response.read()) == 1024
    finally:
        connection.close()


@contextlib.contextmanager
def _server(tools: NativeTools, port: int, cpus: set[int]) -> Iterator[psutil.Process]:
    process = subprocess.Popen(pinned([str(tools.http1k), str(port)], cpus))
    try:
        poll(lambda: serves(port), timeout=10)
        yield psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def direct(tools: NativeTools, cpus: set[int]) -> Iterator[PathUnderTest]:
    port = free_port()
    with _server(tools, port, cpus) as app:
        yield PathUnderTest(port, app)


@contextlib.contextmanager
def hand_written(tools: NativeTools, cpus: set[int], directory: Path
                 ) -> Iterator[PathUnderTest]:
    app_port = free_port()
    with _server(tools, app_port, cpus) as app, envoy_pair(directory, app_port, cpus) as pair:
        poll(lambda: serves(pair.port), timeout=30)
        yield PathUnderTest(pair.port, app, {
            "client": Sidecar(psutil.Process(pair.client.pid)),
            "server": Sidecar(psutil.Process(pair.server.pid))})


def _child(parent: psutil.Process, name: str) -> psutil.Process:
    return next(p for p in parent.children() if p.name() == name)


@contextlib.contextmanager
def tulle_pair(mesh: BenchMesh, tools: NativeTools, cpus: set[int], telemetry: bool
               ) -> Iterator[PathUnderTest]:
    """``tulle run --service bench-server --port P -- http1k`` and a client sidecar with
    ``--upstream bench-server:PORT``, which the load generator calls."""
    env = {k: v for k, v in os.environ.items() if k != "TULLE_TELEMETRY_INTERVAL"}
    if not telemetry:
        env["TULLE_TELEMETRY_INTERVAL"] = "off"
    app_port, upstream_port = free_port(), free_port()
    server = mesh.spawn("--service", "bench-server", "--name", "bench-server", "--port",
                        str(app_port), "--", str(tools.http1k), str(app_port),
                        env=env, cpus=cpus)
    client = mesh.spawn("--service", "bench-client", "--name", "bench-client", "--upstream",
                        f"bench-server:{upstream_port}", env=env, cpus=cpus)
    try:
        poll(lambda: serves(upstream_port), timeout=60, interval=0.05)
        # `tulle run` execs the agent (through taskset): the same process.
        client_agent, server_agent = psutil.Process(client.pid), psutil.Process(server.pid)
        yield PathUnderTest(upstream_port, _child(server_agent, "http1k"), {
            "client": Sidecar(_child(client_agent, "envoy"), client_agent),
            "server": Sidecar(_child(server_agent, "envoy"), server_agent)})
    finally:
        mesh.stop(client)
        mesh.stop(server)
