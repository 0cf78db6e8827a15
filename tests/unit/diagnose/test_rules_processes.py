"""Process rules (TUL1036-TUL1039, TUL1015) on hand-built evidence: what each agent said when
diagnose asked it to report now. A frozen process is told from a dead one; healthy sidecars and
sidecars that are only starting give no finding."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest

from tests.unit.model.workloads import workload
from tulle.diagnose.engine import diagnose
from tulle.diagnose.evidence import AgentReport, Evidence, ProcessInfo
from tulle.diagnose.model import Finding, Severity
from tulle.diagnose.rules import processes
from tulle.model.mesh import build_mesh
from tulle.model.workload import WorkloadState
from tulle.telemetry.query import NodeInfo
from tulle.telemetry.schema import SeriesKey
from tulle.telemetry.windows import Window

BOOKS, WEB = "books-1.default", "web-1.default"
AGENT = ProcessInfo(100, "S", "python -m tulle.cli run --service books")
ENVOY = ProcessInfo(101, "S", "envoy -c bootstrap.json")
APP = ProcessInfo(102, "S", "python3 app.py 8080")
STOPPED = "T"


def fresh(node: str, **changes: object) -> AgentReport:
    fields: dict[str, object] = {"answered": True, "fresh": True, "agent": AGENT,
                                 "envoy": ENVOY, "envoy_answers": True, "app": APP,
                                 "last_report_age": 0.3}
    fields.update(changes)
    return AgentReport(node, **fields)  # type: ignore[arg-type]


def evidence(books: AgentReport, books_state: WorkloadState = WorkloadState.READY
             ) -> Evidence:
    registered = [workload("books-1", "books", state=books_state), workload("web-1", "web")]
    mesh = build_mesh(3, [], registered)
    nodes = {w.node_id: NodeInfo(w.name, w.namespace, w.service, "") for w in registered}
    counters: Mapping[tuple[str, SeriesKey], Mapping[str, int]] = {
        (WEB, SeriesKey("out", "books.default")): {"rq2": 5, "rq5": 7, "timeout": 7}}
    window = Window(60.0, 60.0, MappingProxyType(dict(counters)), MappingProxyType({}),
                    MappingProxyType({}))
    return Evidence(mesh=mesh, window=window, nodes=MappingProxyType(nodes), now=1e6,
                    reports=MappingProxyType({BOOKS: books, WEB: fresh(WEB)}))


def findings(e: Evidence) -> list[Finding]:
    return list(diagnose(e, rules=processes.RULES).findings)


def stopped(process: ProcessInfo) -> ProcessInfo:
    return ProcessInfo(process.pid, STOPPED, process.command)


CASES = [
    ("a stopped application", fresh(BOOKS, app=stopped(APP)), "TUL1036", "critical", 102),
    ("a stopped Envoy", fresh(BOOKS, envoy=stopped(ENVOY), envoy_answers=False, fresh=False,
                              error="Envoy's stats did not arrive within 1.2s"),
     "TUL1037", "critical", 101),
    ("an Envoy alive but not answering",
     fresh(BOOKS, envoy_answers=False, fresh=False, error="timeout"), "TUL1037", "critical",
     101),
    ("a stopped agent", AgentReport(BOOKS, answered=False, fresh=False,
                                    error="agent did not answer: no answer in time",
                                    agent=stopped(AGENT), last_report_age=12.0),
     "TUL1038", "error", 100),
    ("an agent whose process is gone",
     AgentReport(BOOKS, answered=False, fresh=False, error="agent did not answer: refused",
                 agent=ProcessInfo(100, ""), last_report_age=30.0), "TUL1015", "warning", 100),
    ("an agent that answered without a fresh report",
     fresh(BOOKS, fresh=False, error="the control plane did not take the report",
           last_report_age=9.0), "TUL1039", "warning", None),
]


@pytest.mark.parametrize(("report", "code", "severity", "pid"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_process_fault_is_named_on_its_proxy(report: AgentReport, code: str,
                                                   severity: str, pid: int | None) -> None:
    found = findings(evidence(report))
    assert [(f.code, f.subject) for f in found] == [(code, f"proxy/{BOOKS}")]
    (finding,) = found
    assert finding.severity.label == severity
    assert "service/books.default" in finding.related
    if pid is not None:
        assert any(f"pid {pid}" in line for line in finding.evidence), finding.evidence
    processes = (report.app, report.agent, report.envoy)
    if any(p is not None and p.stopped for p in processes):
        assert f"kill -CONT {pid}" in finding.fix


def test_a_frozen_application_names_its_callers_timeouts() -> None:
    (finding,) = findings(evidence(fresh(BOOKS, app=stopped(APP))))
    assert f"proxy/{WEB}" in finding.sources
    assert any("caller web-1.default: 7 timeout(s)" in line for line in finding.evidence)


@pytest.mark.parametrize("report", [
    fresh(BOOKS),
    fresh(BOOKS, app=None),  # a workload with no application
    fresh(BOOKS, app=ProcessInfo(102, "Z", "python3 app.py")),  # dead: TUL1002/TUL1003
    fresh(BOOKS, fresh=False, error="Envoy's stats did not arrive", telemetry_off=True),
    fresh(BOOKS, envoy_answers=False),  # its stats came: a slow probe, not a frozen Envoy
], ids=["healthy", "no app", "dead app", "telemetry off", "slow Envoy probe"])
def test_no_finding_without_a_frozen_process_or_missing_evidence(report: AgentReport
                                                                  ) -> None:
    assert findings(evidence(report)) == []


def test_a_starting_workload_without_a_report_is_not_missing_evidence() -> None:
    report = fresh(BOOKS, fresh=False, error="the sidecar is still starting")
    assert findings(evidence(report, WorkloadState.STARTING)) == []


def test_process_info_reads_alive_stopped_and_gone() -> None:
    assert ProcessInfo(1, "S").alive and not ProcessInfo(1, "S").stopped
    assert ProcessInfo(1, "T").alive and ProcessInfo(1, "T").stopped
    assert not ProcessInfo(1, "").alive and not ProcessInfo(1, "Z").alive
    assert ProcessInfo(7, "T", "envoy").describe() == "pid 7 (envoy), state T (stopped)"
    assert ProcessInfo.from_dict({"pid": 3, "state": "R", "command": "x"}) == \
        ProcessInfo(3, "R", "x")
    assert ProcessInfo.from_dict(None) is None and ProcessInfo.from_dict({"pid": None}) is None


@pytest.mark.parametrize(("age", "code"), [(3.0, "TUL1039"), (40.0, "TUL1038"),
                                           (None, "TUL1038")])
def test_a_slow_agent_that_reported_recently_is_not_called_frozen(age: float | None,
                                                                   code: str) -> None:
    """Alive, not stopped, no answer in time: stuck only if it has not reported for a while;
    a busy host's agent that reported seconds ago is missing evidence, not a fault."""
    report = AgentReport(BOOKS, answered=False, fresh=False,
                         error="agent did not answer: no answer in time", agent=AGENT,
                         last_report_age=age)
    assert [f.code for f in findings(evidence(report))] == [code]


def test_what_a_frozen_process_causes_on_its_proxy_ranks_under_it() -> None:
    """A stopped application fills its backlog: its sidecar's connects fail (TUL1003) and it
    looks not ready (TUL1002). One cause, one top finding: those are listed under it."""
    def other(code: str, subject: str, score: float = 100.0) -> Finding:
        return Finding(code, Severity.CRITICAL, score, subject, "x", ("y",), "z",
                       related=(f"service/{subject[6:].partition('-')[0]}.default",))

    def symptoms_rule(e: Evidence, scope: Any) -> list[Finding]:
        return [other("TUL1003", f"proxy/{BOOKS}"), other("TUL1002", f"proxy/{BOOKS}"),
                other("TUL1003", f"proxy/{WEB}", 50.0)]

    found = diagnose(evidence(fresh(BOOKS, app=stopped(APP))),
                     rules=(*processes.RULES, symptoms_rule)).findings
    assert found[0].code == "TUL1036"
    explained = {(f.code, f.subject) for f in found if f.explained_by == ("TUL1036",)}
    assert explained == {("TUL1003", f"proxy/{BOOKS}"), ("TUL1002", f"proxy/{BOOKS}")}
    assert not next(f for f in found if f.subject == f"proxy/{WEB}").symptom
