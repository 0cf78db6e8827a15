"""`tulle demo`: a bookstore of five workloads, every one behind its own Envoy sidecar."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tulle.client import ApiClient
from tulle.errors import ConflictError, StateError, TulleError
from tulle.local import free_ports, tail
from tulle.settings import StatePaths, ensure_private_dir, open_private

READY_TIMEOUT_S = 60.0
# The demo's sidecars report every second (5 s by default), so that `tulle diagnose` has the
# canary's failures to judge within seconds of the start. TULLE_TELEMETRY_INTERVAL overrides.
TELEMETRY_INTERVAL_S = "1"


@dataclass(frozen=True)
class DemoWorkload:
    service: str
    name: str
    role: str
    version: str = ""
    serves: bool = True  # has a port others call
    flaky: bool = False  # fails now and then (the canary with a bug)


WORKLOADS = (
    DemoWorkload("authors", "authors-1", "authors"),
    DemoWorkload("books", "books-1", "books", "v1"),
    DemoWorkload("books", "books-2", "books", "v2", flaky=True),
    DemoWorkload("web", "web-1", "web"),
    DemoWorkload("traffic", "traffic-1", "traffic", serves=False),
)

SERVICES = [
    *({"apiVersion": "tulle.io/v1alpha1", "kind": "Service",
       "metadata": {"name": name, "namespace": "default"}, "spec": {"protocol": "http"}}
      for name in ("authors", "books", "web")),
    # The two versions of books as subsets, for the canary route below.
    *({"apiVersion": "tulle.io/v1alpha1", "kind": "Service",
       "metadata": {"name": f"books-{v}", "namespace": "default"},
       "spec": {"selector": {"service": "books", "version": v}}} for v in ("v1", "v2")),
    {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
     "metadata": {"name": "books", "namespace": "default"},
     "spec": {"parentRefs": [{"name": "books"}], "rules": [
         {"name": "beta-testers", "matches": [{"headers": [{"name": "x-beta", "value": "1"}]}],
          "backendRefs": [{"name": "books-v2"}]},
         {"name": "canary", "backendRefs": [{"name": "books-v1", "weight": 80},
                                            {"name": "books-v2", "weight": 20}],
          "retry": {"attempts": 2, "codes": [503]}},
     ]}},
]


@dataclass
class Running:
    spec: DemoWorkload
    process: subprocess.Popen[bytes]
    port: int | None
    log: Path


class Demo:
    def __init__(self, paths: StatePaths, client: ApiClient) -> None:
        self.paths = paths
        self.client = client
        self.logs = paths.root / "demo"
        self.running: list[Running] = []

    def start(self) -> None:
        existing = {w["name"] for w in self.client.get("/v1/workloads")}
        taken = sorted(existing & {w.name for w in WORKLOADS})
        if taken:
            raise ConflictError(f"the demo seems to be running already ({', '.join(taken)})",
                                hint="stop it with Ctrl-C in its terminal, or look at it with "
                                     "`tulle get workloads`")
        self.client.post("/v1/resources/apply", {"documents": [
            {"source": "tulle demo", "manifest": m} for m in SERVICES]})
        ensure_private_dir(self.logs)
        # Servers first; the traffic generator once there is something to call.
        for spec in (w for w in WORKLOADS if w.serves):
            self.running.append(self._spawn(spec))
        self._wait_ready()
        for spec in (w for w in WORKLOADS if not w.serves):
            self.running.append(self._spawn(spec))
        self._wait_ready()

    def web_port(self) -> int | None:
        return next((r.port for r in self.running if r.spec.role == "web"), None)

    def watch(self) -> str:
        """Block until Ctrl-C (returns "") or a workload dies (returns what happened)."""
        try:
            while True:
                for running in self.running:
                    if running.process.poll() is not None:
                        return (f"{running.spec.name} exited with {running.process.returncode}"
                                f"; see {running.log}")
                time.sleep(0.5)
        except KeyboardInterrupt:
            return ""

    def stop(self) -> None:
        # Callers first, so nothing calls a service that is already gone.
        for running in reversed(self.running):
            if running.process.poll() is None:
                running.process.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    running.process.wait(15)
            if running.process.poll() is None:
                running.process.kill()
                running.process.wait()

    def _spawn(self, spec: DemoWorkload) -> Running:
        port = free_ports(1)[0] if spec.serves else None
        command = [sys.executable, "-m", "tulle.cli", "--state-dir", str(self.paths.root),
                   "run", "--service", spec.service, "--name", spec.name]
        if spec.version:
            command += ["--version", spec.version]
        if port:
            command += ["--port", str(port)]
        command += ["--", sys.executable, "-m", "tulle.demo.apps", spec.role]
        if port:
            command.append(str(port))
        log = self.logs / f"{spec.name}.log"
        with _open(log) as out:
            env = {"TULLE_TELEMETRY_INTERVAL": TELEMETRY_INTERVAL_S, **os.environ,
                   "TULLE_DEMO_FLAKY": "1" if spec.flaky else "0"}
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, env=env,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        return Running(spec, process, port, log)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        wanted = {r.spec.name for r in self.running}
        while time.monotonic() < deadline:
            for running in self.running:
                if running.process.poll() is not None:
                    raise StateError(f"{running.spec.name} exited during start-up:\n"
                                     + tail(running.log), hint=f"see {running.log}")
            with contextlib.suppress(TulleError):
                ready = {w["name"] for w in self.client.get("/v1/workloads")
                         if w["state"] == "ready"}
                if wanted <= ready:
                    return
            time.sleep(0.1)
        raise StateError("the demo workloads did not become ready in time",
                         hint=f"see the logs in {self.logs}")


def _open(path: Path) -> IO[bytes]:
    return os.fdopen(open_private(path), "ab")
