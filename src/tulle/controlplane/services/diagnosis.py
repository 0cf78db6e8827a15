"""The control-plane side of `tulle diagnose`: gather the evidence, run the rules.

The evidence is read from the current snapshot and state: a diagnosis never forces a rebuild.
First every registered sidecar's agent is asked, all at once, to report its telemetry now
(``POST /report``), so that findings do not wait for the next interval; at the same time each
sidecar's Envoy ``/clusters`` is read through its agent. Both fan-outs bound concurrency and
have a short deadline per agent and for the whole: an agent that does not answer in time
costs the run at most that deadline, and the evidence says so (which proxies, how old their
last report is). For an agent that does not answer, its process is looked up on this host
(universal mode runs every workload here): alive but not answering, or gone.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from types import MappingProxyType
from typing import Any

from tulle.controlplane.agents import Agents, PageRead
from tulle.controlplane.services.hosts import agent_clock
from tulle.controlplane.services.telemetry import TelemetryService
from tulle.diagnose.engine import diagnose
from tulle.diagnose.evidence import (
    AgentReport,
    Evidence,
    ProcessInfo,
    ProxyEvidence,
    TimeSlot,
    parse_clusters,
)
from tulle.diagnose.model import Scope
from tulle.errors import TulleError
from tulle.identity.status import IdentityStatus
from tulle.local import process_state
from tulle.model.mesh import MeshSnapshot
from tulle.model.workload import Workload
from tulle.store.base import Change
from tulle.xds.admission import StreamEvent
from tulle.xds.sync import Nack, ProxySync

DEFAULT_WINDOW_S = 60.0
ADMIN_CONCURRENCY = 64
# Per agent and for every agent together, the two fan-outs running side by side: a diagnosis
# waits at most GATHER_DEADLINE_S for its sidecars, whatever is frozen.
ADMIN_TIMEOUT_S = 2.0  # one proxy's /clusters
REPORT_TIMEOUT_S = 2.0  # one agent's report now (the agent gives Envoy's stats 1.2 s)
GATHER_DEADLINE_S = 2.5
HISTORY_LIMIT = 50
HISTORY_WAIT_S = 2.0  # past the rest of the gathering, for the store's history
TIMELINE_S = 600.0  # telemetry slots kept in the evidence: when did errors start?


class DiagnosisService:
    def __init__(self, mesh: Callable[[], MeshSnapshot], telemetry: TelemetryService,
                 sync_views: Callable[[float, Iterable[str]], tuple[ProxySync, ...]],
                 nacks: Callable[[], list[Nack]],
                 stream_events: Callable[[], list[StreamEvent]],
                 identity_status: Callable[[], IdentityStatus],
                 history: Callable[[int], Awaitable[list[Change]]], agents: Agents,
                 process: Callable[[int], tuple[str, str]] = process_state) -> None:
        """``process``: a pid's (state letter, command line) on this host."""
        self._process = process
        self._mesh = mesh
        self._telemetry = telemetry
        self._sync_views = sync_views  # by the hub's threshold, with registered workloads
        self._nacks = nacks
        self._identity_status = identity_status
        self._history = history
        self._agents = agents
        self._stream_events = stream_events

    async def run(self, scope: Scope, window_s: float) -> dict[str, Any]:
        started = time.monotonic()
        evidence = await self.gather(window_s)
        result = diagnose(evidence, scope)
        return {
            "scope": scope.to_dict(),
            "windowSeconds": window_s,
            "findings": [f.to_dict() for f in result.findings],
            "ruleErrors": list(result.rule_errors),
            "gathered": {
                "meshVersion": evidence.mesh.version,
                "services": len(evidence.mesh.services),
                "workloads": len(evidence.mesh.workloads),
                "proxiesRead": sum(1 for p in evidence.proxies.values() if p.error is None),
                "proxiesFailed": sorted(n for n, p in evidence.proxies.items() if p.error),
                **freshness(evidence),
                "replicasMissing": dict(evidence.replicas_missing),
                **({"historyUnreadable": evidence.history_error}
                   if evidence.history_error else {}),
                "seconds": round(time.monotonic() - started, 3),
            },
        }

    async def gather(self, window_s: float) -> Evidence:
        mesh = self._mesh()
        telemetry = self._telemetry
        telemetry.window(window_s)  # a wrong window fails before any agent is asked
        nodes = sorted(mesh.workloads)
        # Read alongside the rest: a store that does not answer (etcd without its quorum)
        # must not hold diagnose past the CLI's wait, which would call this replica frozen.
        reading_history = asyncio.ensure_future(self._history(HISTORY_LIMIT))
        answers, proxies = await asyncio.gather(self.ask_reports(nodes),
                                                self.read_proxies(nodes))
        # The other replicas' agents report to them: what they hold joins ours.
        peers = await telemetry.ask_peers(window_s, TIMELINE_S)
        window = telemetry.window(window_s, peers)  # with the reports just made
        reports = {node: self._report(answers[node], _local_pid(mesh.workloads[node]),
                                      window.last_report_age.get(node)) for node in nodes}
        history, history_error = await _read_history(reading_history)
        now = time.time()
        return Evidence(
            mesh=mesh,
            window=window,
            nodes=MappingProxyType(telemetry.all_nodes(peers)),
            proxies=MappingProxyType(proxies),
            xds=MappingProxyType({p.node: p for p in self._sync_views(now, mesh.workloads)}),
            nacks=tuple(self._nacks()),
            stream_events=tuple(self._stream_events()),
            identity=self._identity_status(),
            history=history,
            history_error=history_error,
            now=now,
            timeline=tuple(TimeSlot(now - ago, length, MappingProxyType(dict(sample)))
                           for ago, length, sample in telemetry.timeline(TIMELINE_S, peers)),
            reports=MappingProxyType(reports),
            replicas_missing=MappingProxyType(dict(peers.missing)),
        )

    async def refresh(self) -> dict[str, Any]:
        """Every registered agent reports now: what `tulle check` asks before it reads the
        telemetry, so that it judges the traffic up to now. Says which proxies could not
        (and whether their agent or their Envoy did not answer)."""
        mesh = self._mesh()
        nodes = sorted(mesh.workloads)
        answers = await self.ask_reports(nodes)
        ages = self._telemetry.windows.window(self._telemetry.windows.slot_s).last_report_age
        reports = [self._report(answers[n], _local_pid(mesh.workloads[n]), ages.get(n))
                   for n in nodes]
        return {"asked": nodes, "fresh": [r.node for r in reports if r.fresh],
                "missing": [{"proxy": r.node, "reason": r.error or "no report",
                             "answering": r.answered and r.envoy_answers is not False}
                            for r in reports if not r.fresh]}

    async def ask_reports(self, nodes: Iterable[str]) -> dict[str, PageRead]:
        """Every named agent, at once: report your telemetry now, and how are your
        processes?"""
        return await self._agents.read_all(
            nodes, "/report", {}, method="POST", concurrency=ADMIN_CONCURRENCY,
            timeout_s=REPORT_TIMEOUT_S, deadline_s=GATHER_DEADLINE_S)

    def _report(self, read: PageRead, agent_pid: int, age: float | None) -> AgentReport:
        answer: Any = None
        if read.body is not None:
            try:
                answer = json.loads(read.body)
            except ValueError:
                answer = None
        if not isinstance(answer, dict):
            return AgentReport(read.node_id, answered=False, fresh=False,
                               error=read.error or "the agent's answer is not JSON",
                               agent=self._agent_process(agent_pid), last_report_age=age)
        envoy = answer.get("envoy")
        clock = agent_clock(read)
        return AgentReport(
            read.node_id, answered=True, fresh=bool(answer.get("reported")),
            error=None if answer.get("reported") else str(answer.get("error") or "no report"),
            agent=ProcessInfo.from_dict(answer.get("agent")),
            envoy=ProcessInfo.from_dict(envoy),
            envoy_answers=bool(envoy.get("answers")) if isinstance(envoy, dict) else None,
            app=ProcessInfo.from_dict(answer.get("app")), last_report_age=age,
            telemetry_off=answer.get("telemetry") == "off",
            clock_offset_s=clock.offset_s, clock_uncertainty_s=clock.uncertainty_s)

    def _agent_process(self, pid: int) -> ProcessInfo | None:
        """The registered agent's process on this host; gone when the pid now belongs to
        something else than tulle (pids are reused)."""
        if pid <= 0:
            return None
        state, command = self._process(pid)
        if state and "tulle" not in command:
            return ProcessInfo(pid, "")
        return ProcessInfo(pid, state, command)

    async def read_proxies(self, nodes: Iterable[str]) -> dict[str, ProxyEvidence]:
        """Every named sidecar's endpoints, read in parallel through its agent."""
        reads = await self._agents.read_all(
            nodes, "/admin/clusters", {"format": "json"}, concurrency=ADMIN_CONCURRENCY,
            timeout_s=ADMIN_TIMEOUT_S, deadline_s=GATHER_DEADLINE_S)
        return {node: _evidence(read) for node, read in reads.items()}


def freshness(evidence: Evidence) -> dict[str, Any]:
    """What the evidence is based on, for the report: which proxies were asked for a report
    now, which answered with one, which did not (and how old their last report is), the
    window, and the newest and oldest report."""
    reports = evidence.reports
    ages = [r.last_report_age for r in reports.values() if r.last_report_age is not None]
    return {
        "proxiesAsked": sorted(reports),
        "proxiesFresh": sorted(n for n, r in reports.items() if r.fresh),
        "proxiesMissing": [
            {"proxy": n, "reason": r.error or "no report",
             "lastReportSeconds": None if r.last_report_age is None
             else round(r.last_report_age, 1)}
            for n, r in sorted(reports.items()) if not r.fresh],
        "windowSeconds": evidence.window.seconds,
        "newestReportSeconds": round(min(ages), 1) if ages else None,
        "oldestReportSeconds": round(max(ages), 1) if ages else None,
    }


def _evidence(read: PageRead) -> ProxyEvidence:
    if read.body is None:
        return ProxyEvidence(read.node_id, error=read.error or "no answer")
    try:
        clusters = parse_clusters(json.loads(read.body))
    except (ValueError, AttributeError, TypeError) as exc:
        return ProxyEvidence(read.node_id, error=f"unreadable /clusters: {exc}")
    return ProxyEvidence(read.node_id, MappingProxyType(clusters))


def _local_pid(workload: Workload) -> int:
    """The agent's pid, when it runs on this host (0: on another, where ours means nothing)."""
    return 0 if workload.remote else workload.pid


async def _read_history(reading: asyncio.Future[list[Change]]
                        ) -> tuple[tuple[Change, ...], str]:
    """The newest changes, or why they could not be read (the rest is judged anyway)."""
    done, _ = await asyncio.wait({reading}, timeout=HISTORY_WAIT_S)
    if not done:
        reading.add_done_callback(lambda f: f.cancelled() or f.exception())  # never unread
        return (), f"the store did not answer within {HISTORY_WAIT_S:g}s"
    try:
        return tuple(reading.result()), ""
    except TulleError as exc:  # etcd without quorum
        return (), exc.message
