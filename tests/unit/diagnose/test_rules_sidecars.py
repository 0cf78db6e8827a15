"""Sidecar rules (TUL1017, TUL1018) on hand-built evidence: a stopped listener or a server that
left LIVE on a registered workload, and an Envoy the agent keeps restarting; a healthy sidecar
has no finding."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import pytest

from tests.unit.model.workloads import workload
from tulle.diagnose.engine import diagnose
from tulle.diagnose.evidence import Evidence
from tulle.diagnose.model import Finding
from tulle.diagnose.rules import sidecars
from tulle.model.mesh import build_mesh
from tulle.model.workload import WorkloadState
from tulle.telemetry.query import NodeInfo
from tulle.telemetry.schema import SeriesKey
from tulle.telemetry.windows import Window

BOOKS, WEB = "books-1.default", "web-1.default"
PROXY, OUT = SeriesKey("proxy"), SeriesKey("out", "books.default")
LIVE = {"mem": 20 << 20, "uptime": 300, "state": 0, "lstopped": 0}
Series = Mapping[tuple[str, SeriesKey], Mapping[str, int]]


def evidence(gauges: Mapping[str, Mapping[str, int]], counters: Series | None = None,
             books_state: WorkloadState = WorkloadState.READY) -> Evidence:
    registered = [workload("books-1", "books", state=books_state), workload("web-1", "web")]
    mesh = build_mesh(3, [], registered)
    nodes = {w.node_id: NodeInfo(w.name, w.namespace, w.service, "") for w in registered}
    window = Window(60.0, 60.0, MappingProxyType(dict(counters or {})),
                    MappingProxyType({(n, PROXY): g for n, g in gauges.items()}),
                    MappingProxyType({}))
    return Evidence(mesh=mesh, window=window, nodes=MappingProxyType(nodes), now=1e6)


def findings(e: Evidence) -> list[Finding]:
    return list(diagnose(e, rules=sidecars.RULES).findings)


CALLED = {(WEB, OUT): {"rq2": 5, "rq5": 5}}

CASES = [
    ("a stopped listener on a ready instance",
     evidence({BOOKS: {**LIVE, "lstopped": 1}, WEB: LIVE}, CALLED), "TUL1017", BOOKS,
     "critical"),
    ("a server that left LIVE",
     evidence({BOOKS: {**LIVE, "state": 1}, WEB: LIVE}), "TUL1017", BOOKS, "critical"),
    ("a stopped listener on a workload that is not ready yet",
     evidence({BOOKS: {**LIVE, "lstopped": 2}, WEB: LIVE},
              books_state=WorkloadState.STARTING), "TUL1017", BOOKS, "error"),
    ("an Envoy restarted by its agent",
     evidence({BOOKS: LIVE, WEB: {**LIVE, "uptime": 4}}, {(WEB, PROXY): {"restarts": 3}}),
     "TUL1018", WEB, "error"),
]


@pytest.mark.parametrize(("case", "given", "code", "node", "severity"), CASES,
                         ids=[c[0] for c in CASES])
def test_the_sidecar_that_stopped_serving_is_named(case: str, given: Evidence, code: str,
                                                   node: str, severity: str) -> None:
    [finding] = findings(given)
    assert (finding.code, finding.subject, finding.severity.label) == \
        (code, f"proxy/{node}", severity)
    assert finding.fix and finding.evidence
    assert "service/" in " ".join(finding.related)


def test_callers_of_a_stopped_instance_are_its_sources() -> None:
    [finding] = findings(CASES[0][1])
    assert finding.sources == (f"proxy/{WEB}",)
    assert any("listener_stopped" in line for line in finding.evidence)


@pytest.mark.parametrize("gauges", [
    {BOOKS: LIVE, WEB: LIVE},
    {BOOKS: {"mem": 1}, WEB: {}},  # an agent too old to report state: no alarm
    {},  # no telemetry yet
])
def test_healthy_or_unknown_sidecars_have_no_finding(gauges: Mapping[str, Mapping[str, int]]
                                                     ) -> None:
    assert findings(evidence(gauges)) == []


def test_a_departed_workloads_stopped_listener_is_not_reported() -> None:
    """Only registered workloads are intended to serve: one that left has no finding."""
    given = evidence({BOOKS: LIVE, WEB: LIVE, "gone-1.default": {**LIVE, "lstopped": 1}})
    assert findings(given) == []
