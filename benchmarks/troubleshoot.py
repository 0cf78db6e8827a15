"""How long `tulle check --proxy` and `tulle diagnose` take, end to end, as a user runs them.

Two meshes:
- **20 workloads**: 10 services, each with two real sidecars (`tulle run`), all reporting
  telemetry. The commands read every proxy's live Envoy through its agent.
- **500 proxies**: 100 services, 500 synthetic workloads registered as agents register them
  (sessions, real certificates), their proxies connected over real ADS streams (fleet.py), each
  reporting telemetry every 5 s. Their agents are stood in for by one HTTP server that answers
  the admin pages with the pages of a real sidecar of the same mesh (its clusters, its
  certificate chain, its server info), captured at the start; so the commands do the same reads,
  parsing and checks as against 500 real agents, but no Envoy answers them.

Each command runs as a subprocess (`python -m tulle.cli ... -o json`), timed from start to exit.
Baseline, same run: `tulle version` (the CLI's own start-up).

Targets (issue 6): each command <= 5 s for 20 workloads, <= 30 s for 500 proxies.

And the quality of the answer (issue 20), not in --quick: every scenario of the fault
catalogue (tests/e2e/faults/catalogue.py), each in a mesh of its own with real Envoy and a
long-running client at 20 rps, one fault made as in life, `tulle diagnose` (whole mesh) and
`tulle diagnose SERVICE` polled until they name the expected cause first (or 45 s pass). Two
scenarios at a time. Reported: the share of faults whose cause ranks first (both forms of the
command), first or second; false alarms (findings of severity error or above) on the healthy
scenarios; the time from the fault's start until diagnose names it (median, max); diagnose's
own run time per call (median, max). Targets: >= 95 % first, 0 false alarms, named within
10 s, <= 2 s per run.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from benchmarks.fleet import Fleet
from benchmarks.harness import BenchMesh, Figure, bench_mesh, free_port, median, poll
from benchmarks.synthmesh import WorkloadSpec, close_all, register_all
from benchmarks.telemetry import _report
from tulle.settings import StatePaths
from tulle.xds.sync import ProxySync, SyncState

TARGET_SMALL_S = 5.0
TARGET_FIRST_PCT = 95.0
TARGET_NAMED_S = 10.0
TARGET_DIAGNOSE_S = 2.0
CATALOGUE_WORKERS = 2
TARGET_LARGE_S = 30.0
COMMANDS = {"check": ("check", "--proxy"), "diagnose": ("diagnose",)}
REPORT_INTERVAL_S = 5.0


@dataclass(frozen=True)
class Timed:
    seconds: list[float]
    exit_codes: list[int]
    last: Any = None  # the last run's JSON output

    @property
    def worst(self) -> float:
        return max(self.seconds)


async def _time(mesh: BenchMesh, args: tuple[str, ...], repeats: int) -> Timed:
    seconds, codes = [], []
    out = b""
    for _ in range(repeats):
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tulle.cli", "--state-dir", str(mesh.state), *args,
            "-o", "json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await process.communicate()
        codes.append(process.returncode or 0)
        seconds.append(time.perf_counter() - started)
    return Timed(seconds, codes, json.loads(out) if out.strip() else None)


async def _measure_all(mesh: BenchMesh, repeats: int) -> dict[str, Timed]:
    out = {"version": await _time(mesh, ("version",), repeats)}
    for name, args in COMMANDS.items():
        out[name] = await _time(mesh, args, repeats)
    return out


def _figures(label: str, timed: dict[str, Timed], target: float) -> list[Figure]:
    base = median(timed["version"].seconds)
    figures = []
    for name, args in COMMANDS.items():
        t = timed[name]
        figures.append(Figure(f"{label}: tulle {' '.join(args)}, median",
                              median(t.seconds), "s", base))
        figures.append(Figure(f"{label}: tulle {' '.join(args)}, worst", t.worst, "s", base,
                              target))
    return figures


def _codes(label: str, timed: dict[str, Timed]) -> str:
    """What the commands found: a benchmark that times failures must say so."""
    check, diagnose = timed["check"].last or {}, timed["diagnose"].last or {}
    failed = sorted(c["id"] for c in check.get("checks", ()) if c["status"] == "failed")
    codes = sorted({f["code"] for f in diagnose.get("findings", ())})
    return (f"{label}: check exit {sorted(set(timed['check'].exit_codes))}, failed "
            f"{failed or 'none'}; diagnose exit {sorted(set(timed['diagnose'].exit_codes))}, "
            f"findings {codes or 'none'}")


# -- 20 real sidecars ------------------------------------------------------------------------

def _small(quick: bool) -> tuple[list[Figure], str]:
    services, per_service = (2, 2) if quick else (10, 2)
    workloads = services * per_service
    with bench_mesh() as mesh:
        env = {**os.environ, "TULLE_TELEMETRY_INTERVAL": "1"}
        for s in range(services):
            for i in range(per_service):
                port = str(free_port())
                mesh.spawn("--service", f"svc-{s}", "--name", f"svc-{s}-{i}", "--port", port,
                           "--", sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                           port, env=env)
        _wait_ready(mesh, workloads)
        timed = asyncio.run(_measure_all(mesh, 2 if quick else 5))
    label = f"{workloads} real sidecars"
    return _figures(label, timed, TARGET_SMALL_S), _codes(label, timed)


def _wait_ready(mesh: BenchMesh, workloads: int) -> None:
    api = mesh.api

    def ready() -> bool:
        rows = api.get("/v1/workloads")
        return len(rows) == workloads and all(
            w["state"] == "ready" and w["proxyConnected"] for w in rows) and \
            len(api.get("/v1/telemetry/workloads", {"window": 60})["workloads"]) >= workloads
    poll(ready, timeout=180, interval=0.5)


# -- 500 proxies -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Spec(WorkloadSpec):
    agent_port: int = 0

    def registration(self) -> dict[str, Any]:
        return {**super().registration(), "agentPort": self.agent_port}


class _Agents:
    """One HTTP server standing in for every synthetic workload's agent."""

    def __init__(self) -> None:
        self.pages: dict[str, bytes] = {}
        self.served = 0
        self.runner: web.AppRunner | None = None

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_get("/admin/{page:.+}", self._page)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()

    async def _page(self, request: web.Request) -> web.Response:
        page = request.match_info["page"]
        if page not in self.pages:
            return web.Response(status=404, text="not captured\n")
        self.served += 1
        return web.Response(body=self.pages[page], content_type="application/json")

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _capture(mesh: BenchMesh, node: str) -> dict[str, bytes]:
    api = mesh.api
    base = f"/v1/proxies/{node}/admin"
    return {
        "clusters": json.dumps(api.get(f"{base}/clusters", {"format": "json"})).encode(),
        "config_dump": json.dumps(api.get(f"{base}/config_dump", {
            "resource": "dynamic_active_secrets"})).encode(),
        "server_info": json.dumps(api.get(f"{base}/server_info")).encode(),
    }


async def _report_forever(pool: list[Any], services: int) -> None:
    sent = 0
    while True:
        started = time.monotonic()
        for workload in pool:
            await workload.session.send_telemetry(_report(sent, services))
            sent += 1
        await asyncio.sleep(max(0.0, REPORT_INTERVAL_S - (time.monotonic() - started)))


async def _large_async(mesh: BenchMesh, services: int, proxies: int, repeats: int
                       ) -> dict[str, Timed]:
    api = mesh.api
    await asyncio.to_thread(api.post, "/v1/resources/apply", {"documents": [
        {"source": "benchmark", "manifest": {
            "apiVersion": "tulle.io/v1alpha1", "kind": "Service",
            "metadata": {"name": f"svc-{s}", "namespace": "default"},
            "spec": {"protocol": "http"}}} for s in range(services)]})
    agents, agent_port = _Agents(), free_port()
    await agents.start(agent_port)
    specs = [_Spec(f"w-{i}", f"svc-{i % services}", i, protocol=("delta", "sotw")[i % 2],
                   agent_port=agent_port) for i in range(proxies)]
    pool = await register_all(StatePaths(mesh.state), specs, mesh.root / "synthetic")
    # A real sidecar in the same mesh, for the pages the stand-in agents answer with.
    port = str(free_port())
    real = mesh.spawn("--service", "svc-0", "--name", "real-0", "--port", port, "--",
                      sys.executable, "-m", "http.server", "--bind", "127.0.0.1", port)
    await asyncio.to_thread(_wait_ready_one, mesh, "real-0.default")
    agents.pages = await asyncio.to_thread(_capture, mesh, "real-0.default")
    await asyncio.to_thread(mesh.stop, real)
    fleet = await Fleet.start(2)
    reporter = asyncio.create_task(_report_forever(pool, services))
    try:
        await fleet.connect([w.proxy for w in pool], timeout=300)
        await asyncio.to_thread(api.get, "/v1/xds/sync", {"timeout": 60})
        await asyncio.sleep(REPORT_INTERVAL_S + 1)  # one full round of reports
        timed = await _measure_all(mesh, repeats)
        if agents.served == 0:
            raise RuntimeError("no admin page was read: the commands did not reach the agents")
        return timed
    finally:
        reporter.cancel()
        await fleet.close()
        await close_all(pool)
        await agents.close()


def _wait_ready_one(mesh: BenchMesh, node: str) -> None:
    api = mesh.api
    poll(lambda: any(p.node == node and p.state is SyncState.SYNCED
                     for p in map(ProxySync.from_json, api.get("/v1/proxies"))),
         timeout=60, interval=0.2)


def _large(quick: bool) -> tuple[list[Figure], str]:
    services, proxies = (5, 20) if quick else (100, 500)
    with bench_mesh() as mesh:
        timed = asyncio.run(_large_async(mesh, services, proxies, 2 if quick else 3))
    label = f"{proxies} proxies"
    return _figures(label, timed, TARGET_LARGE_S), _codes(label, timed)


# -- the fault catalogue ---------------------------------------------------------------------

def _play(name: str) -> Any:
    """One scenario, by name, in a process of its own, as a pytest worker plays it."""
    from tests.e2e.faults.catalogue import CATALOGUE
    from tests.e2e.faults.harness import play, scratch

    scenario = next(s for s in CATALOGUE if s.name == name)
    with scratch() as root:
        try:
            outcome = play(scenario, root)
        except Exception as exc:  # a scenario that could not be set up counts as missed
            print(f"  {scenario.name}: could not run: {exc}", file=sys.stderr)
            return None
    # The scenario's functions do not cross processes: only what was observed does.
    return outcome.mesh, outcome.service


def _catalogue() -> tuple[list[Figure], str]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tests.e2e.faults.catalogue import CATALOGUE
    from tests.e2e.faults.harness import Outcome

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(CATALOGUE_WORKERS, mp_context=context,
                             max_tasks_per_child=1) as pool:
        watched = list(pool.map(_play, [s.name for s in CATALOGUE]))
    outcomes = [None if w is None else Outcome(s, *w)
                for s, w in zip(CATALOGUE, watched, strict=True)]
    faults = [(s, o) for s, o in zip(CATALOGUE, outcomes, strict=True) if not s.healthy]
    healthy = [(s, o) for s, o in zip(CATALOGUE, outcomes, strict=True) if s.healthy]
    first = [o for _, o in faults if o is not None and o.mesh.named and o.service.named]
    second = [o for _, o in faults if o is not None and o.mesh.second_s is not None
              and o.service.second_s is not None]
    alarms = [s.name for s, o in healthy if o is None or not o.ok]
    named = [t for o in first for t in (o.mesh.first_s, o.service.first_s) if t is not None]
    runs = [t for o in outcomes if o is not None for w in (o.mesh, o.service) for t in w.runs]
    share = 100.0 / max(1, len(faults))
    figures = [
        Figure(f"{len(faults)} faults: cause ranked first", len(first) * share, "%",
               target=TARGET_FIRST_PCT, at_least=True),
        Figure(f"{len(faults)} faults: cause ranked first or second", len(second) * share,
               "%", target=TARGET_FIRST_PCT, at_least=True),
        Figure(f"{len(healthy)} healthy scenarios: false alarms", len(alarms), "",
               target=0),
        Figure("fault start to named first, median", median(named), "s"),
        Figure("fault start to named first, max", max(named, default=float("nan")), "s",
               target=TARGET_NAMED_S),
        Figure("tulle diagnose [SERVICE] run time, median", median(runs), "s"),
        Figure("tulle diagnose [SERVICE] run time, max", max(runs, default=float("nan")), "s",
               target=TARGET_DIAGNOSE_S),
    ]
    missed = [s.name for s, o in faults if o is None or not o.ok]
    for scenario, outcome in faults + healthy:
        print(f"  {outcome.report() if outcome else scenario.name + ': could not run'}")
    return figures, (f"catalogue: missed {missed or 'none'}; false alarms in "
                     f"{alarms or 'none'}")


def run(quick: bool) -> tuple[list[Figure], str]:
    load = os.getloadavg()[0]
    # The catalogue takes minutes: the full run and --only troubleshoot only. It runs first,
    # before the 20-sidecar and 500-proxy meshes load the machine.
    quality, quality_notes = ([], "") if quick else _catalogue()
    small, small_notes = _small(quick)
    large, large_notes = _large(quick)
    notes = (f"baseline: `tulle version`; {small_notes}; {large_notes}; "
             f"load average {load:.2f} at start")
    return quality + small + large, f"{quality_notes}; {notes}" if quality_notes else notes
