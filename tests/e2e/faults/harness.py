"""Running one scenario of the fault catalogue: a small mesh with real Envoy, steady traffic
from a long-running client, one fault made as it happens in life, and `tulle diagnose` polled
until it names the cause (or the time is up).

The test (test_catalogue.py) asserts on what :func:`play` observed; the quality benchmark
(benchmarks/troubleshoot.py) counts it. Times are recorded, never asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.support.mesh import TULLE, Mesh, Workload, wait_for
from tests.support.ports import free_port

APPS = Path(__file__).resolve().parents[2] / "apps"
CALLER = APPS / "caller.py"
BACKEND = APPS / "backend.py"
TELEMETRY_INTERVAL = "0.5"
# How long diagnose may take to name a fault before the scenario counts as missed.
NAMING_TIMEOUT_S = float(os.environ.get("TULLE_FAULTS_TIMEOUT", "45"))
DIAGNOSE_TIMEOUT_S = 30.0
BAD = ("error", "critical")


@dataclass(frozen=True)
class Expect:
    """The top finding: its code, and its subject (one of ``subjects`` where the contract
    allows either the route or its rule)."""

    code: str
    subjects: tuple[str, ...]

    def matches(self, finding: dict[str, Any]) -> bool:
        return finding.get("code") == self.code and finding.get("subject") in self.subjects

    def __str__(self) -> str:
        return f"{self.code} {' or '.join(self.subjects)}"


def expect(code: str, *subjects: str) -> Expect:
    return Expect(code, subjects)


@dataclass(frozen=True)
class Scenario:
    """One row of the catalogue. ``expect`` None: a healthy scenario (``fault`` is then a
    normal operation, or nothing), which must give no finding of severity error or above."""

    name: str
    family: str
    setup: Callable[[Scene], None]
    fault: Callable[[Scene], None] | None
    service: str  # the SERVICE of `tulle diagnose SERVICE`
    expect: Expect | None  # the top finding of `tulle diagnose` (whole mesh)
    expect_service: Expect | None = None  # of `tulle diagnose SERVICE`; None: as ``expect``
    warm: str = "books"  # the service whose traffic must be in telemetry before the fault
    baseline: int = 40  # ...this many requests of it (20 rps: 2 s)
    observe_s: float = 6.0  # healthy: how long diagnose keeps looking after the operation
    # How long diagnose may take to name it; None: the catalogue's default. A latency
    # regression is judged against a past that ended RECENT_S before now, so it cannot be
    # named sooner than that, and the default leaves a loaded machine little margin.
    naming_s: float | None = None

    @property
    def healthy(self) -> bool:
        return self.expect is None

    @property
    def for_service(self) -> Expect | None:
        return self.expect_service or self.expect


class FaultMesh(Mesh):
    """A Mesh whose agents report telemetry every 0.5 s."""

    def env(self) -> dict[str, str]:
        return {**super().env(), "TULLE_TELEMETRY_INTERVAL": TELEMETRY_INTERVAL}


@dataclass
class Scene:
    """What a scenario's setup and fault act on, with the means a person has: processes,
    signals, `tulle apply`, an application's own control port."""

    mesh: FaultMesh
    frozen: list[int] = field(default_factory=list)
    threads: list[Callable[[], None]] = field(default_factory=list)  # stoppers

    # -- workloads -----------------------------------------------------------------------

    def backend(self, name: str, service: str = "books", *, version: str | None = None,
                flags: tuple[str, ...] = (), listen: int | None = None, wait: bool = True
                ) -> Workload:
        """An instance of ``service`` running tests/apps/backend.py on the port it registers,
        or on ``listen`` when that differs (a port mistake)."""
        port = free_port()
        extra = ("--version", version) if version else ()
        return self.mesh.run(service, name=name, port=port, extra=extra, wait=wait,
                             command=[sys.executable, str(BACKEND), str(listen or port),
                                      *flags])

    def caller(self, *urls: str, name: str = "client-1", rps: float = 20.0) -> Workload:
        """A long-running client of the mesh, calling ``urls`` in turn at ``rps``."""
        return self.mesh.run("client", name=name, command=[
            sys.executable, str(CALLER), "--rps", str(rps), *urls])

    def workload(self, name: str) -> Workload:
        return next(w for w in self.mesh.workloads if w.name == name)

    def control(self, name: str, **settings: object) -> None:
        """Change an instance's behaviour through its application's own port."""
        port = self.workload(name).app_port
        query = urllib.parse.urlencode(settings)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/control?{query}", timeout=5):
            pass

    def apply(self, text: str, sync: bool = True) -> None:
        self.mesh.cli("apply", "-f", "-", stdin=text)
        if sync:
            self.mesh.sync()

    def delete(self, kind: str, name: str) -> None:
        self.mesh.cli("delete", kind, name)

    # -- processes -----------------------------------------------------------------------

    def agent_pid(self, name: str) -> int:
        return int(self.mesh.workload(name)["pid"])

    def envoy_pid(self, name: str) -> int:
        agent = psutil.Process(self.agent_pid(name))
        envoys = [p.pid for p in agent.children() if p.name() == "envoy"]
        assert len(envoys) == 1, envoys
        return envoys[0]

    def app_pid(self, name: str) -> int:
        agent = psutil.Process(self.agent_pid(name))
        apps = [p.pid for p in agent.children()
                if any(str(APPS) in part for part in p.cmdline())]
        assert len(apps) == 1, apps
        return apps[0]

    def freeze(self, pid: int) -> None:
        """SIGSTOP: alive, holding its sockets, answering nothing. Thawed at the end."""
        self.frozen.append(pid)
        os.kill(pid, signal.SIGSTOP)

    def close(self) -> None:
        for stop in self.threads:
            with contextlib.suppress(Exception):
                stop()
        for pid in self.frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.mesh.close()


# -- observing diagnose ----------------------------------------------------------------------

@dataclass
class Watch:
    """What diagnose said, over time, for one form of the command."""

    args: tuple[str, ...]
    want: Expect | None
    first_s: float | None = None  # since the fault: the expected finding ranked first
    second_s: float | None = None  # ...ranked first or second
    runs: list[float] = field(default_factory=list)  # diagnose's own run time, each run
    last_top: list[str] = field(default_factory=list)  # the last report's top 3
    alarms: list[str] = field(default_factory=list)  # healthy: findings of error or above
    failures: list[str] = field(default_factory=list)  # runs that gave no report

    @property
    def named(self) -> bool:
        return self.first_s is not None

    def observe(self, scene: Scene, since: float) -> None:
        started = time.monotonic()
        try:
            result = subprocess.run(
                [*TULLE, "--state-dir", str(scene.mesh.state_dir), "diagnose", *self.args,
                 "-o", "json"], capture_output=True, text=True, env=scene.mesh.env(),
                timeout=DIAGNOSE_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            self.runs.append(time.monotonic() - started)
            self.failures.append(f"no answer within {DIAGNOSE_TIMEOUT_S:.0f}s")
            return
        now = time.monotonic()
        self.runs.append(now - started)
        try:
            findings: list[dict[str, Any]] = json.loads(result.stdout)["findings"]
        except (ValueError, KeyError, TypeError):
            self.failures.append(f"exit {result.returncode}: {result.stderr.strip()[-300:]}")
            return
        self.last_top = [_line(f) for f in findings[:3]]
        if self.want is None:
            self.alarms += [_line(f) for f in findings if f.get("severity") in BAD
                            and _line(f) not in self.alarms]
            return
        ranks = [i for i, f in enumerate(findings[:2]) if self.want.matches(f)]
        if ranks and self.second_s is None:
            self.second_s = now - since
        if ranks == [0] and self.first_s is None:
            self.first_s = now - since

    def summary(self) -> str:
        command = " ".join(("tulle diagnose", *self.args))
        if self.runs:
            command += f" ({len(self.runs)} runs, slowest {max(self.runs):.2f}s)"
        if self.want is None:
            return f"{command}: false alarms {self.alarms or 'none'}"
        when = f"named first after {self.first_s:.1f}s" if self.named else "NOT named first"
        return (f"{command}: expected {self.want}; {when}; top 3 at the end: "
                f"{self.last_top or 'none'}" + (f"; failed runs {self.failures}"
                                                if self.failures else ""))


def _line(finding: dict[str, Any]) -> str:
    return f"{finding.get('code')} {finding.get('severity')} {finding.get('subject')}"


@dataclass
class Outcome:
    scenario: Scenario
    mesh: Watch
    service: Watch

    @property
    def ok(self) -> bool:
        if self.scenario.healthy:
            return not (self.mesh.alarms or self.service.alarms)
        return self.mesh.named and self.service.named

    def report(self) -> str:
        return (f"{self.scenario.name} [{self.scenario.family}]\n  {self.mesh.summary()}\n"
                f"  {self.service.summary()}")


def warm(scene: Scene, scenario: Scenario) -> None:
    """Wait until the traffic before the fault is in telemetry: diagnose compares with it."""
    if scenario.baseline <= 0:
        return

    def seen() -> bool:
        rows = scene.mesh.api.get("/v1/telemetry/services",
                                  {"name": scenario.warm})["services"]
        return bool(rows) and rows[0]["requests"] >= scenario.baseline

    wait_for(f"{scenario.baseline} requests of {scenario.warm} in telemetry", seen,
             timeout=60, interval=0.25)


def play(scenario: Scenario, root: Path, timeout: float = NAMING_TIMEOUT_S) -> Outcome:
    """Run ``scenario`` in a mesh of its own under ``root``."""
    mesh = FaultMesh(root)
    scene = Scene(mesh)
    mesh.up()
    try:
        scenario.setup(scene)
        warm(scene, scenario)
        watches = Outcome(scenario, Watch((), scenario.expect),
                          Watch((scenario.service,), scenario.for_service))
        since = time.monotonic()
        if scenario.fault is not None:
            scenario.fault(scene)
        if scenario.healthy:
            deadline = time.monotonic() + scenario.observe_s
            while time.monotonic() < deadline:
                watches.mesh.observe(scene, since)
                watches.service.observe(scene, since)
            return watches
        deadline = since + (scenario.naming_s or timeout)
        while time.monotonic() < deadline and not watches.ok:
            for watch in (watches.mesh, watches.service):
                if not watch.named:
                    watch.observe(scene, since)
            time.sleep(0.2)  # pacing between polls, not a readiness wait
        return watches
    finally:
        scene.close()


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A directory of its own, for a run outside pytest (the benchmark)."""
    with tempfile.TemporaryDirectory(prefix="tulle-fault-") as directory:
        yield Path(directory)
