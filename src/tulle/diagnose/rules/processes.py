"""Diagnosis rules: a workload's processes, frozen or gone, and evidence that could not be read.

Before judging, diagnose asks every registered sidecar's agent to report now
(``Evidence.reports``). The agent answers with the state of the processes it runs: its own,
its Envoy's (and whether Envoy's admin interface answered it), and its application's, each
from ``/proc/PID/stat`` (``T``: stopped, as by SIGSTOP). An agent that does not answer is
looked up by the control plane on this host. So a frozen process is told from a dead one:

- the application stopped: TUL1036 (callers time out; a dead application is TUL1002/TUL1003);
- Envoy alive but not answering: TUL1037 (a dead Envoy is restarted by the agent: TUL1018);
- the agent alive but not answering: TUL1038 when it is stopped or has not reported for
  ``STUCK_AFTER_S``; an agent that reported moments ago is only slow (a busy host): TUL1039;
- its process gone: TUL1015;
- an agent that answered without a fresh report, for no reason above: TUL1039.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from tulle.diagnose.evidence import AgentReport, Evidence, ProcessInfo, requests
from tulle.diagnose.model import Finding, Scope, Severity, proxy_subject, service_subject
from tulle.model.workload import WorkloadState
from tulle.telemetry.schema import OUTBOUND, SeriesKey

STUCK_AFTER_S = 12.0  # more than two report intervals (5 s) without a report


def _slow_agent(report: AgentReport) -> bool:
    """An agent that did not answer in time, alive and not stopped, that reported recently:
    more likely slow than stuck."""
    agent = report.agent
    return (not report.answered and agent is not None and agent.alive and not agent.stopped
            and report.last_report_age is not None
            and report.last_report_age < STUCK_AFTER_S)


def _age(report: AgentReport) -> str:
    age = report.last_report_age
    return "it never reported telemetry" if age is None \
        else f"its last telemetry report is {age:.1f}s old"


def _related(evidence: Evidence, node: str) -> tuple[str, ...]:
    ref = evidence.service_of(node)
    return (service_subject(ref),) if ref is not None else ()


def _callers(evidence: Evidence, node: str) -> tuple[list[str], list[str]]:
    """The callers of ``node``'s service, and evidence lines of their timeouts and errors."""
    ref = evidence.service_of(node)
    if ref is None:
        return [], []
    callers = evidence.callers_of(ref)
    lines = []
    for caller in callers:
        values = evidence.counters(caller, SeriesKey(OUTBOUND, ref.host))
        total = requests(values)
        timeouts, errors = values.get("timeout", 0), values.get("rq5", 0)
        if timeouts or errors:
            lines.append(f"caller {caller}: {timeouts} timeout(s), {errors} 5xx of {total} "
                         f"request(s) to {ref} in the last {evidence.window.seconds:g}s")
    return callers, lines


def _cont_or_restart(process: ProcessInfo, what: str) -> str:
    if process.stopped:
        return (f"resume it: `kill -CONT {process.pid}` (someone stopped it, with SIGSTOP, "
                f"Ctrl-Z or a debugger); if it stays stuck, restart the workload")
    return (f"find why {what} hangs (`py-spy dump --pid {process.pid}`, `gdb -p "
            f"{process.pid}`), then restart the workload")


def app_frozen(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1036: the application is alive but stopped."""
    for node, report in sorted(evidence.reports.items()):
        app = report.app
        if app is None or not app.alive or not app.stopped:
            continue
        workload = evidence.workloads.get(node)
        callers, lines = _callers(evidence, node)
        serving = workload is not None and workload.inbound_port is not None
        evidence_lines = [f"application of {node}: {app.describe()}"]
        if workload is not None and workload.app_port:
            evidence_lines.append(f"it listens on port {workload.app_port}: the kernel still "
                                  "accepts connections for it, but nothing answers them")
        evidence_lines += lines
        yield Finding(
            "TUL1036", Severity.CRITICAL if serving else Severity.ERROR,
            95.0 if serving else 70.0, proxy_subject(node),
            f"The application of {node} is stopped (frozen), not dead: it holds its port, so "
            "its sidecar and callers still send it requests, which wait until they time out."
            if serving else
            f"The application of {node} is stopped (frozen), not dead: it makes no calls.",
            tuple(evidence_lines), _cont_or_restart(app, "the application"),
            related=_related(evidence, node),
            sources=tuple(proxy_subject(c) for c in callers))


def envoy_frozen(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1037: the agent answers, its Envoy is alive but does not."""
    for node, report in sorted(evidence.reports.items()):
        envoy = report.envoy
        if envoy is None or not report.answered or not envoy.alive:
            continue
        if not envoy.stopped and (report.envoy_answers is not False or report.fresh):
            continue  # it answered its agent, or its stats came: busy, not frozen
        workload = evidence.workloads.get(node)
        callers, lines = _callers(evidence, node)
        serving = workload is not None and workload.serves_traffic
        yield Finding(
            "TUL1037", Severity.CRITICAL if serving else Severity.ERROR,
            92.0 if serving else 75.0, proxy_subject(node),
            f"The Envoy of {node} is alive but does not answer (frozen): every request "
            "through it, in or out, waits; the agent cannot restart it, as it has not exited.",
            (f"Envoy of {node}: {envoy.describe()}",
             "its admin interface did not answer its agent"
             if report.envoy_answers is False else "its admin interface answered its agent",
             *lines),
            _cont_or_restart(envoy, "Envoy"),
            related=_related(evidence, node),
            sources=tuple(proxy_subject(c) for c in callers))


def agent_frozen(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1038: the agent does not answer, its process is alive. TUL1015: it is gone."""
    for node, report in sorted(evidence.reports.items()):
        if report.answered or _host_cut_off(evidence, node):
            continue
        agent = report.agent
        lines = [f"the agent of {node} did not answer: {report.error or 'no answer'}",
                 _age(report)]
        if _slow_agent(report):
            continue  # TUL1039
        if agent is not None and agent.alive:
            yield Finding(
                "TUL1038", Severity.ERROR, 60.0, proxy_subject(node),
                f"The agent of {node} is alive but does not answer (frozen): its Envoy may "
                "still serve, but nothing reports its telemetry, readiness or certificate "
                "renewals, and diagnose cannot read its state.",
                (f"agent of {node}: {agent.describe()}", *lines),
                _cont_or_restart(agent, "the agent"),
                related=_related(evidence, node))
            continue
        if agent is not None:
            lines.append(f"its process (pid {agent.pid}) is gone")
        yield Finding(
            "TUL1015", Severity.WARNING, 40.0, proxy_subject(node),
            f"The agent of {node} cannot be reached and its process is not running here, "
            "while the workload is still registered: its evidence is missing.",
            tuple(lines),
            "check the workload (`tulle get workloads`); restart it with `tulle run`, or "
            "wait for the control plane to remove it",
            related=_related(evidence, node))


def _host_cut_off(evidence: Evidence, node: str) -> bool:
    """``node`` runs on another host none of whose agents answered: TUL1093 says so, once
    for the host (its process cannot be looked up here)."""
    workload = evidence.mesh.workloads.get(node)
    if workload is None or not workload.remote:
        return False
    return not any(r.answered for n, r in evidence.reports.items()
                   if (w := evidence.mesh.workloads.get(n)) is not None
                   and w.host == workload.host)


def evidence_missing(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1039: an agent answered, but without a fresh report, and nothing frozen says why."""
    fresh = [r.last_report_age for r in evidence.reports.values()
             if r.fresh and r.last_report_age is not None]
    for node, report in sorted(evidence.reports.items()):
        if report.fresh or report.telemetry_off or not (report.answered
                                                         or _slow_agent(report)):
            continue  # not answering at all is TUL1038 or TUL1015
        workload = evidence.workloads.get(node)
        if workload is not None and workload.state is WorkloadState.STARTING:
            continue  # its sidecar may still be starting: nothing to report yet
        envoy = report.envoy
        if envoy is not None and envoy.alive and (envoy.stopped
                                                  or report.envoy_answers is False):
            continue  # TUL1037 explains it (it is not fresh)
        lines = [f"{node} could not report now: {report.error or 'no report'}", _age(report)]
        if fresh:
            lines.append(f"{len(fresh)} other sidecar(s) reported fresh evidence, "
                         f"{min(fresh):.1f}-{max(fresh):.1f}s old")
        yield Finding(
            "TUL1039", Severity.WARNING, 20.0, proxy_subject(node),
            f"Fresh evidence from {node} is missing: what diagnose says about it rests on "
            "older telemetry.",
            tuple(lines),
            f"run `tulle diagnose` again in a few seconds; if it persists, read the agent's "
            f"log (agent.log in the workload's directory) and `tulle proxy logs {node}`",
            related=_related(evidence, node))


RULES = (app_frozen, envoy_frozen, agent_frozen, evidence_missing)

# What a frozen process causes on its own proxy, seen by other rules: a stopped application
# fills its listen backlog, so its sidecar's connects to it fail (TUL1003) and the agent's
# probe calls it not ready (TUL1002); a stopped Envoy ACKs nothing (TUL1061). These stay in
# the report, as consequences listed under the frozen process (one cause, one top finding).
CONSEQUENCES = {
    "TUL1036": frozenset({"TUL1002", "TUL1003", "TUL1009", "TUL1013", "TUL1024"}),
    "TUL1037": frozenset({"TUL1002", "TUL1003", "TUL1017", "TUL1061", "TUL1062"}),
    "TUL1038": frozenset({"TUL1052", "TUL1062"}),
}


def as_consequences(found: Iterable[Finding]) -> list[Finding]:
    """Mark as symptoms the findings a frozen process explains on the same subject, so that
    ranking lists them after it, explained by it."""
    found = list(found)
    explained = {(f.subject, code) for f in found for code in CONSEQUENCES.get(f.code, ())}
    return [replace(f, symptom=True) if (f.subject, f.code) in explained else f
            for f in found]
