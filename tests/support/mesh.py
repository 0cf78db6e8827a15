"""A real mesh for one test: a control plane in its own state directory on ports the kernel
chooses, and workloads started with `tulle run`, each with a real Envoy. Nothing is mocked."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.support.ports import free_port
from tulle.agent.envoy import DRAIN_TIME_S
from tulle.agent.envoyadmin import EnvoyAdmin
from tulle.client import ApiClient
from tulle.settings import ControlPlaneEndpoint, StatePaths

T = TypeVar("T")

ECHO_APP = Path(__file__).resolve().parent.parent / "apps" / "echo.py"
TULLE = [sys.executable, "-m", "tulle.cli"]


MAX_POLL_INTERVAL_S = 0.25


def _cpu_seconds() -> float:
    """CPU used by this process and by its children that have exited."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 15.0,
              interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` otherwise.

    The pause between polls grows from ``interval`` to a quarter second, and is never shorter
    than the CPU the check used (this process's and its finished children's): a check that
    runs the CLI costs a process start, a third of a second of CPU, and back-to-back polls
    would keep a core busy that the mesh under test needs. A check that only waited (a
    request that timed out) costs no CPU, so it is polled again at once."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    pause = interval
    while time.monotonic() < deadline:
        started = _cpu_seconds()
        try:
            result = check()
        except Exception as exc:  # the thing may not exist yet
            last_error = exc
        else:
            if result:
                return result
        took = _cpu_seconds() - started
        time.sleep(max(0.0, min(max(pause, took), deadline - time.monotonic())))
        pause = min(pause * 1.5, max(interval, MAX_POLL_INTERVAL_S))
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_error})" if last_error else ""))


@dataclass
class Workload:
    name: str
    service: str
    process: subprocess.Popen[bytes]
    log: Path
    app_port: int | None = None
    namespace: str = "default"

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Mesh:
    root: Path
    workloads: list[Workload] = field(default_factory=list)
    # Run on another host: the command that runs a command there (`ip netns exec NAME`).
    # Its API is then on that host's loopback: ask it with the CLI, not ``api``.
    on: tuple[str, ...] = ()

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def paths(self) -> StatePaths:
        return StatePaths(self.state_dir)

    # -- the CLI ---------------------------------------------------------------------------

    def cli(self, *args: str, check: bool = True, stdin: str | None = None,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.on, *TULLE, "--state-dir", str(self.state_dir), *args],
                                input=stdin, capture_output=True, text=True, timeout=timeout,
                                env=self.env(), check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"tulle {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("TULLE_HOME", None)
        return env

    def up(self, *extra: str) -> dict[str, Any]:
        result = self.cli("up", *self.port_flags(), *extra, "-o", "json")
        status: dict[str, Any] = json.loads(result.stdout)
        return status

    def port_flags(self) -> list[str]:
        """`tulle up`'s port flags. At first start, ports from this process's pool (see
        tests.support.ports): nothing else can take them, not even while a test restarts the
        control plane, which a kernel-chosen port (0) would risk between stop and start.
        Later, none: a restart reuses the recorded ports, so the proxies find it again.
        (`tulle up` on port 0 has tests of its own.)"""
        if self.paths.endpoint_file.exists():
            return []
        return ["--api-port", str(free_port()), "--xds-port", str(free_port()),
                "--identity-port", str(free_port())]

    @property
    def endpoint(self) -> ControlPlaneEndpoint:
        """Where the control plane listens, as it recorded once bound."""
        return ControlPlaneEndpoint.load(self.paths)

    @property
    def api_port(self) -> int:
        return self.endpoint.api_port

    @property
    def identity_port(self) -> int:
        return self.endpoint.identity_port

    @property
    def api(self) -> ApiClient:
        return ApiClient.from_state(self.paths, timeout=30.0)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.api.get("/v1/status")
        return status

    # -- workloads -------------------------------------------------------------------------

    def run(self, service: str, *, name: str, app: bool = True, port: int | None = None,
            command: list[str] | None = None, extra: tuple[str, ...] = (),
            namespace: str = "default", wait: bool = True, cwd: Path | None = None
            ) -> Workload:
        """Start a workload. By default its application is the echo app on a free port.
        ``cwd``: where `tulle run` runs (relative paths in ``extra`` are relative to it)."""
        if app and command is None:
            port = port or free_port()
            command = [sys.executable, str(ECHO_APP), str(port)]
        args = ["run", "--service", service, "--name", name, "--namespace", namespace, *extra]
        if port is not None:
            args += ["--port", str(port)]
        log = self.root / f"{name}.out"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*self.on, *TULLE, "--state-dir", str(self.state_dir), *args, "--",
                 *(command or [])],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=self.env(),
                cwd=cwd)
        workload = Workload(name, service, process, log, port, namespace)
        self.workloads.append(workload)
        if wait:
            self.wait_ready(workload)
        return workload

    def wait_ready(self, workload: Workload, timeout: float = 20.0) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            if workload.process.poll() is not None:
                raise AssertionError(f"{workload.name} exited ({workload.process.returncode}):"
                                     f"\n{workload.output()}")
            for w in self.api.get("/v1/workloads"):
                if w["name"] == workload.name and w["namespace"] == workload.namespace \
                        and w["state"] == "ready" and w["proxyConnected"]:
                    return dict(w)
            return None

        try:
            return wait_for(f"{workload.name} to be ready", ready, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{workload.output()}") from None

    def workload(self, name: str) -> dict[str, Any]:
        for w in self.api.get("/v1/workloads"):
            if w["name"] == name:
                return dict(w)
        raise KeyError(name)

    # -- looking into sidecars -------------------------------------------------------------

    def admin(self, name: str, page: str, namespace: str = "default", **query: str) -> Any:
        """A read-only Envoy admin page, fetched the supported way: API -> agent -> Envoy."""
        status, body = self.api.raw("GET", f"/v1/proxies/{name}.{namespace}/admin/{page}",
                                    query=query or None)
        assert status == 200, f"admin {page} of {name}: HTTP {status}: {body[:300]!r}"
        return json.loads(body) if query.get("format") == "json" else body.decode()

    def envoy_admin(self, name: str, method: str, target: str, namespace: str = "default"
                    ) -> tuple[int, str]:
        """Straight from a sidecar's Envoy admin socket, not via tulle: as its agent reads it
        (the test runs as the user who owns the workload's directory)."""
        admin = EnvoyAdmin(self.paths.workload_dir(namespace, name))
        response = asyncio.run(admin.request(method, target, timeout=5))
        return response.status, response.body.decode()

    def stats(self, name: str, namespace: str = "default") -> dict[str, int]:
        data = self.admin(name, "stats", namespace, format="json")
        return {s["name"]: s["value"] for s in data["stats"] if "value" in s}

    def quiescent(self, name: str, namespace: str = "default") -> bool:
        """Whether every later request to ``name``'s sidecar meets its latest listener config:
        no listener warming (new connections would still get the old one) or draining, and
        no HTTP connection open. A connection accepted before a listener change keeps the old
        config until it drains (Envoy closes it when the drain time ends), so this holds only
        while no traffic flows: a client's pooled connection would stay open."""
        dump = json.loads(self.admin(name, "config_dump", namespace,
                                     resource="dynamic_listeners"))
        if any("warming_state" in listener or "draining_state" in listener
               for listener in dump.get("configs", [])):
            return False
        return all(value == 0 for stat, value in self.stats(name, namespace).items()
                   if stat.startswith("http.") and stat.endswith(".downstream_cx_active"))

    def wait_quiescent(self, *names: str, namespace: str = "default",
                       timeout: float = DRAIN_TIME_S + 15.0) -> None:
        """Wait for :meth:`quiescent` on each sidecar (all in ``namespace``)."""
        for name in names:
            wait_for(f"{name}'s connections from before the last listener change to close",
                     functools.partial(self.quiescent, name, namespace), timeout)

    def endpoints(self, name: str, service: str, namespace: str = "default") -> set[str]:
        """The hostnames (workload names) in a sidecar's cluster for ``service``."""
        data = self.admin(name, "clusters", format="json")
        for cluster in data.get("cluster_statuses", []):
            if cluster["name"] == f"outbound|{service}.{namespace}":
                return {h.get("hostname", "") for h in cluster.get("host_statuses", [])}
        return set()

    def wait_endpoints(self, name: str, service: str, expected: set[str],
                       timeout: float = 15.0) -> None:
        wait_for(f"{name} to see endpoints {sorted(expected)} of {service}",
                 lambda: self.endpoints(name, service) == expected, timeout)

    def call(self, via: Workload, url: str, timeout: float = 10.0) -> dict[str, Any]:
        """Make ``via``'s application fetch ``url`` through its sidecar."""
        import urllib.parse
        import urllib.request

        assert via.app_port is not None
        query = urllib.parse.urlencode({"url": url})
        with urllib.request.urlopen(f"http://127.0.0.1:{via.app_port}/call?{query}",
                                    timeout=timeout) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def sync(self, timeout: float = 15.0) -> int:
        """Flush pending changes and wait until every proxy has ACKed them."""
        result = self.api.get("/v1/xds/sync", {"timeout": timeout}, timeout=timeout + 5)
        assert result["synced"], f"proxies did not sync: {result}"
        return int(result["meshVersion"])

    def nacks(self) -> list[dict[str, Any]]:
        nacks: list[dict[str, Any]] = self.api.get("/v1/xds/nacks")
        return nacks

    # -- teardown --------------------------------------------------------------------------

    def close(self) -> None:
        for workload in self.workloads:
            if workload.process.poll() is None:
                workload.process.send_signal(signal.SIGINT)
        for workload in self.workloads:
            with contextlib.suppress(Exception):
                workload.stop()
        with contextlib.suppress(Exception):
            self.cli("down", check=False, timeout=30)


def processes_alive(pids: Iterator[int] | list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    return alive
