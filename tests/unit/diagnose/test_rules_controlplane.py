"""Control-plane rules (TUL1060-TUL1066) on hand-built evidence."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest

from tests.unit.model.workloads import workload
from tulle.diagnose.engine import diagnose
from tulle.diagnose.evidence import AgentReport, Evidence, TimeSlot
from tulle.diagnose.model import Severity
from tulle.diagnose.rules import controlplane
from tulle.diagnose.rules.controlplane import diff_summary
from tulle.model.mesh import build_mesh
from tulle.model.meta import ResourceKey
from tulle.model.workload import WorkloadState
from tulle.store.base import Change
from tulle.telemetry.schema import SeriesKey
from tulle.telemetry.windows import Window
from tulle.xds.admission import StreamEvent, StreamEventKind
from tulle.xds.sync import (
    DEFAULT_STALE_AFTER_S,
    Nack,
    ProxySync,
    SyncState,
    view_of,
    with_disconnected,
)
from tulle.xds.tracker import ProxyStatus, TypeStatus
from tulle.xds.types import PUSH_ORDER, short_name
from tulle.xds.types import ROUTE as ROUTE_TYPE

NOW = 1_000_000.0
PROXY, BOOKS = SeriesKey("proxy"), SeriesKey("out", "books.default")
NODES = ("books-1.default", "web-1.default", "web-2.default")
ROUTE = ResourceKey("HTTPRoute", "default", "books")
ROUTE_V1 = {"kind": "HTTPRoute", "spec": {"parentRefs": [{"name": "books"}],
                                          "rules": [{"backendRefs": [{"name": "books"}]}]}}
ROUTE_V2 = {"kind": "HTTPRoute", "spec": {"parentRefs": [{"name": "books"}], "rules": [
    {"backendRefs": [{"name": "books"}], "filters": [{"type": "RequestHeaderModifier"}]}]}}


def synced() -> TypeStatus:
    return TypeStatus(sent_version="a1", sent_nonce="1", sent_at=NOW - 60, sent_mesh_version=4,
                      answered_nonce="1", acked_version="a1", acked_at=NOW - 60,
                      acked_mesh_version=4)


def unanswered(age: float) -> TypeStatus:
    """Version b2 (mesh version 5) sent ``age`` seconds ago; a1 (4) ACKed before."""
    return TypeStatus(sent_version="b2", sent_nonce="2", sent_at=NOW - age, sent_mesh_version=5,
                      answered_nonce="1", acked_version="a1", acked_at=NOW - 60,
                      acked_mesh_version=4)


def refused() -> TypeStatus:
    nack = Nack("web-1.default", ROUTE_TYPE, "2", "b2", "a1",
                "route: {...}\n':-prefixed or host headers may not be modified", NOW - 29)
    return replace(unanswered(29), answered_nonce="2", last_nack=nack)


def proxy(node: str, stale_after: float = DEFAULT_STALE_AFTER_S,
          **pushes: TypeStatus) -> ProxySync:
    """``node`` as the control plane classifies it: every type synced but ``pushes``."""
    status = ProxyStatus(node, "delta", NOW - 3600)
    for url in PUSH_ORDER:
        status.types[url] = pushes.get(short_name(url)) or synced()
    return view_of(status, NOW, stale_after)


def only(node: str, sync: ProxySync) -> dict[str, ProxySync]:
    """Every node synced, except ``node``."""
    return {**{n: proxy(n) for n in NODES}, node: sync}


def evidence(xds: Mapping[str, ProxySync] | None = None,
             gauges: Mapping[str, Any] | None = None,
             history: tuple[Change, ...] = (), timeline: tuple[TimeSlot, ...] = (),
             stream_events: tuple[StreamEvent, ...] = ()) -> Evidence:
    mesh = build_mesh(5, [], [workload("books-1", "books"), workload("web-1", "web"),
                              workload("web-2", "web")])
    window = Window(60.0, 60.0, MappingProxyType({}),
                    MappingProxyType({(n, PROXY): g for n, g in (gauges or {}).items()}),
                    MappingProxyType({}))
    connected = xds if xds is not None else {n: proxy(n) for n in NODES}
    # As the control plane gathers it: registered workloads without a stream are DISCONNECTED.
    views = with_disconnected(connected.values(), mesh.workloads, DEFAULT_STALE_AFTER_S)
    return Evidence(mesh=mesh, window=window, now=NOW, history=history, timeline=timeline,
                    xds=MappingProxyType({v.node: v for v in views}),
                    stream_events=stream_events)


CHANGE = Change(7, NOW - 30, ROUTE, "configured", ROUTE_V1, ROUTE_V2)
NACKED = refused()
STALE = unanswered(25)


def slot(start: float, requests: int, errors: int) -> TimeSlot:
    return TimeSlot(start, 5.0, MappingProxyType({("web-1.default", BOOKS): {
        "rq2": requests - errors, "rq5": errors}}))




def stream_event(kind: StreamEventKind, node: str = "books-1.default", at: float = NOW - 20
                 ) -> StreamEvent:
    return StreamEvent(kind, node, "ipv4:127.0.0.1:41000", at, "why", "ipv4:127.0.0.1:39000",
                       NOW - 3600)


STOLEN = (stream_event(StreamEventKind.DUPLICATE),)
ERRORS_AFTER = tuple(slot(NOW - 60 + 5 * i, 20, 0 if i < 6 else 10) for i in range(12))
MEM = {"books-1.default": {"mem": 20 << 20, "stats": 900},
       "web-1.default": {"mem": 22 << 20, "stats": 950},
       "web-2.default": {"mem": 150 << 20, "stats": 9000}}

CASES: list[tuple[str, Evidence, str, str]] = [
    ("nack", evidence(only("web-1.default", proxy("web-1.default", RDS=NACKED)),
                      history=(CHANGE,)), "TUL1060", "proxy/web-1.default"),
    ("stale", evidence(only("web-1.default", proxy("web-1.default", RDS=STALE)),
                       history=(CHANGE,)), "TUL1061", "proxy/web-1.default"),
    ("disconnected", evidence({n: proxy(n) for n in NODES if n != "web-2.default"}),
     "TUL1062", "proxy/web-2.default"),
    ("memory", evidence(gauges=MEM), "TUL1063", "proxy/web-2.default"),
    ("change then errors", evidence(history=(CHANGE,), timeline=ERRORS_AFTER),
     "TUL1065", "httproute/books.default"),
    ("credential presented twice", evidence(stream_events=STOLEN), "TUL1066",
     "proxy/books-1.default"),
    # A copied credential outranks the config troubles of another proxy.
    ("credential presented twice, and a NACK",
     evidence(only("web-1.default", proxy("web-1.default", RDS=NACKED)),
              stream_events=STOLEN), "TUL1066", "proxy/books-1.default"),
]


@pytest.mark.parametrize(("case", "given", "code", "subject"), CASES,
                         ids=[c[0] for c in CASES])
def test_the_failure_is_found_first(case: str, given: Evidence, code: str,
                                    subject: str) -> None:
    result = diagnose(given, rules=controlplane.RULES)
    assert result.rule_errors == ()
    first = result.findings[0]
    assert (first.code, first.subject) == (code, subject), [f.code for f in result.findings]
    assert first.fix and first.evidence


def test_a_healthy_mesh_has_no_finding() -> None:
    assert diagnose(evidence(), rules=controlplane.RULES).findings == ()


def test_nack_quotes_envoy_and_names_the_change() -> None:
    given = evidence(only("web-1.default", proxy("web-1.default", RDS=NACKED)),
                     history=(CHANGE,))
    (found,) = diagnose(given, rules=controlplane.RULES).findings
    assert any("may not be modified" in line for line in found.evidence)
    assert "httproute/books.default" in found.related
    assert "tulle rollback --revert 7 --dry-run" in found.fix
    assert any("revision 7" in line and "filters" in line for line in found.evidence)


def test_a_push_younger_than_the_limit_is_not_stale() -> None:
    young = proxy("web-1.default", RDS=unanswered(3))
    assert young.state is SyncState.PENDING
    assert diagnose(evidence(only("web-1.default", young)),
                    rules=controlplane.RULES).findings == ()


def test_the_control_planes_stale_threshold_is_honoured() -> None:
    strict = proxy("web-1.default", stale_after=2.0, RDS=unanswered(3))
    (found,) = diagnose(evidence(only("web-1.default", strict)),
                        rules=controlplane.RULES).findings
    assert found.subject == "proxy/web-1.default"
    assert any("threshold is 2s" in line for line in found.evidence)


def test_a_registered_workload_that_is_not_ready_is_not_reported_disconnected() -> None:
    given = evidence({n: proxy(n) for n in NODES if n != "web-2.default"})
    assert given.xds["web-2.default"].state is SyncState.DISCONNECTED
    not_ready = replace(given, mesh=build_mesh(5, [], [
        workload("books-1", "books"), workload("web-1", "web"),
        workload("web-2", "web", state=WorkloadState.STARTING)]))
    assert diagnose(not_ready, rules=controlplane.RULES).findings == ()


def test_stale_says_what_it_misses() -> None:
    given = evidence(only("web-1.default", proxy("web-1.default", RDS=STALE)),
                     history=(CHANGE,))
    (found,) = diagnose(given, rules=controlplane.RULES).findings
    assert any("revision 7" in line for line in found.evidence)
    assert any("mesh version 4" in line and "sent 5" in line for line in found.evidence)


def test_stats_explosion() -> None:
    codes = {f.code for f in diagnose(evidence(gauges=MEM), rules=controlplane.RULES).findings}
    assert codes == {"TUL1063", "TUL1064"}


def test_one_peer_is_not_enough_to_call_an_outlier() -> None:
    two = {n: MEM[n] for n in ("web-1.default", "web-2.default")}
    assert diagnose(evidence(gauges=two), rules=controlplane.RULES).findings == ()


def test_errors_before_the_change_are_not_blamed_on_it() -> None:
    always = tuple(slot(NOW - 60 + 5 * i, 20, 10) for i in range(12))
    assert diagnose(evidence(history=(CHANGE,), timeline=always),
                    rules=controlplane.RULES).findings == ()


def test_change_finding_shows_rates_before_and_after() -> None:
    (found,) = diagnose(evidence(history=(CHANGE,), timeline=ERRORS_AFTER),
                        rules=controlplane.RULES).findings
    assert "service/books.default" in found.related
    assert any("before it: 0%" in line and "since: 50%" in line for line in found.evidence)
    assert "tulle rollback --revert 7 --dry-run" in found.fix


def test_a_change_to_another_service_is_not_blamed() -> None:
    other = Change(7, NOW - 30, ResourceKey("HTTPRoute", "default", "reviews"), "created",
                   None, {"spec": {"parentRefs": [{"name": "reviews"}]}})
    assert diagnose(evidence(history=(other,), timeline=ERRORS_AFTER),
                    rules=controlplane.RULES).findings == ()


@pytest.mark.parametrize(("before", "after", "summary"), [
    (None, ROUTE_V1, "created"),
    (ROUTE_V1, None, "deleted"),
    (ROUTE_V1, ROUTE_V2, "changed spec.rules[0].filters"),
    (ROUTE_V1, {**ROUTE_V1, "metadata": {"labels": {"a": "b"}}}, "metadata only"),
])
def test_diff_summary(before: Any, after: Any, summary: str) -> None:
    assert diff_summary(Change(1, 0.0, ROUTE, "configured", before, after)) == summary


def test_a_refused_second_stream_names_both_peers_and_the_fix() -> None:
    (found,) = diagnose(evidence(stream_events=STOLEN), rules=controlplane.RULES).findings
    assert found.severity is Severity.CRITICAL
    assert any("ipv4:127.0.0.1:41000" in line and "ipv4:127.0.0.1:39000" in line
               for line in found.evidence)
    assert "service/books.default" in found.related
    assert "restart the workload" in found.fix and "bootstrap.json" in found.fix


@pytest.mark.parametrize("events", [
    # Streams that expose no credential: silence, a wrong credential, an old registration's.
    tuple(stream_event(k) for k in StreamEventKind if k is not StreamEventKind.DUPLICATE),
    # A workload no longer registered.
    (stream_event(StreamEventKind.DUPLICATE, node="gone-1.default"),),
], ids=["other kinds", "unregistered"])
def test_only_a_live_credentials_duplicate_is_a_finding(events: tuple[StreamEvent, ...]
                                                         ) -> None:
    assert diagnose(evidence(stream_events=events), rules=controlplane.RULES).findings == ()


def test_a_new_registration_clears_the_finding() -> None:
    given = evidence(stream_events=STOLEN)
    again = replace(given, mesh=build_mesh(5, [], [
        replace(workload("books-1", "books"), registered_at=NOW - 10),
        workload("web-1", "web"), workload("web-2", "web")]))
    assert diagnose(again, rules=controlplane.RULES).findings == ()


def test_a_change_before_the_service_had_traffic_is_not_blamed() -> None:
    """The service appeared after the change: "before it: 0 % of 0 requests" blames nothing."""
    newborn = tuple(slot(NOW - 60 + 5 * i, 0 if i < 6 else 20, 0 if i < 6 else 20)
                    for i in range(12))
    assert diagnose(evidence(history=(CHANGE,), timeline=newborn),
                    rules=controlplane.RULES).findings == ()


def test_a_mesh_change_needs_healthy_traffic_of_that_service_before_it() -> None:
    mesh_change = Change(7, NOW - 30, ResourceKey("Mesh", "", "default"), "configured",
                         {"spec": {}}, {"spec": {"mtls": {"mode": "STRICT"}}})
    newborn = tuple(slot(NOW - 60 + 5 * i, 0 if i < 6 else 20, 0 if i < 6 else 20)
                    for i in range(12))
    assert diagnose(evidence(history=(mesh_change,), timeline=newborn),
                    rules=controlplane.RULES).findings == ()
    (found,) = diagnose(evidence(history=(mesh_change,), timeline=ERRORS_AFTER),
                        rules=controlplane.RULES).findings
    assert found.fix.startswith("`tulle rollback --revert 7 --dry-run`")


def _straddling(registered_at: float) -> Evidence:
    """The change falls in the slot where web-1's healthy traffic began; errors follow."""
    web = replace(workload("web-1", "web"), registered_at=registered_at)
    mesh = build_mesh(5, [], [workload("books-1", "books"), web])
    change = Change(7, NOW - 33, ROUTE, "configured", ROUTE_V1, ROUTE_V2)
    timeline = (slot(NOW - 35, 20, 0), *(slot(NOW - 30 + 5 * i, 20, 10) for i in range(6)))
    return replace(evidence(history=(change,), timeline=timeline), mesh=mesh)


def test_healthy_calls_in_the_changes_slot_count_only_from_callers_that_ran_before_it(
        ) -> None:
    assert [f.code for f in diagnose(_straddling(0.0), rules=controlplane.RULES).findings] \
        == ["TUL1065"]
    # A caller that started after the change had no traffic before it.
    assert diagnose(_straddling(NOW - 32), rules=controlplane.RULES).findings == ()


def _clocks(offsets: Mapping[str, float | None], remote: frozenset[str] = frozenset()
            ) -> Evidence:
    """Reports with these clock offsets; ``remote``: workloads that joined from 10.0.0.9."""
    base = evidence()
    workloads = [replace(w, address="10.0.0.9", key_dir="/keys") if w.node_id in remote else w
                 for w in base.mesh.workloads.values()]
    mesh = build_mesh(5, [], workloads)
    reports = {n: AgentReport(n, answered=True, fresh=True, clock_offset_s=o,
                              clock_uncertainty_s=0.002) for n, o in offsets.items()}
    return replace(base, mesh=mesh, reports=MappingProxyType(reports))


REMOTE_WEB = frozenset({"web-1.default", "web-2.default"})


@pytest.mark.parametrize(("offsets", "remote", "expected"), [
    ({"books-1.default": 0.0, "web-1.default": 0.3, "web-2.default": None}, REMOTE_WEB, []),
    ({"books-1.default": 0.0, "web-1.default": 4.0, "web-2.default": 4.2}, REMOTE_WEB,
     [("host/10.0.0.9", Severity.WARNING, "+4.1s")]),
    ({"books-1.default": 0.0, "web-1.default": -45.0, "web-2.default": -45.5}, REMOTE_WEB,
     [("host/10.0.0.9", Severity.ERROR, "-45.2s")]),
    # One agent's odd answer does not move its host: the median does.
    ({"books-1.default": 0.0, "web-1.default": 0.1, "web-2.default": 0.2}, frozenset(), []),
])
def test_a_hosts_clock_is_judged_by_its_agents_median(
        offsets: Mapping[str, float | None], remote: frozenset[str],
        expected: list[tuple[str, Severity, str]]) -> None:
    findings = [f for f in diagnose(_clocks(offsets, remote), rules=controlplane.RULES).findings
                if f.code == "TUL1092"]
    assert [(f.subject, f.severity) for f in findings] == [(s, v) for s, v, _ in expected]
    for finding, (_, _, says) in zip(findings, expected, strict=True):
        assert says in finding.cause and "NTP" in finding.fix
        assert any("web-1.default on 10.0.0.9" in line for line in finding.evidence)


def _answers(answered: Mapping[str, bool], remote: frozenset[str] = REMOTE_WEB) -> Evidence:
    """Reports: who answered; the silent ones last reported 42 s ago."""
    base = evidence()
    workloads = [replace(w, address="10.0.0.9", key_dir="/keys") if w.node_id in remote else w
                 for w in base.mesh.workloads.values()]
    reports = {n: AgentReport(n, answered=a, fresh=a, error=None if a else "connect failed",
                              last_report_age=None if a else 42.0)
               for n, a in answered.items()}
    return replace(base, mesh=build_mesh(5, [], workloads), reports=MappingProxyType(reports))


@pytest.mark.parametrize(("answered", "remote", "cut"), [
    ({"books-1.default": True, "web-1.default": False, "web-2.default": False}, REMOTE_WEB,
     True),
    # One agent of the host answers: the host is reachable (the other is the agent's fault).
    ({"books-1.default": True, "web-1.default": True, "web-2.default": False}, REMOTE_WEB,
     False),
    # Agents on the control plane's own host are looked up as processes (TUL1015/TUL1038).
    ({"books-1.default": True, "web-1.default": False, "web-2.default": False}, frozenset(),
     False),
])
def test_a_host_none_of_whose_agents_answers_is_cut_off(
        answered: Mapping[str, bool], remote: frozenset[str], cut: bool) -> None:
    findings = diagnose(_answers(answered, remote)).findings
    hosts = [f for f in findings if f.code == "TUL1093"]
    if not cut:
        assert not hosts
        return
    [finding] = hosts
    assert finding.subject == "host/10.0.0.9" and finding.severity is Severity.ERROR
    assert "for 42s (since" in finding.cause
    assert set(finding.related) == {"proxy/web-1.default", "proxy/web-2.default"}
    # Not also a "process not running here" for each of them: it runs on its host.
    assert not [f for f in findings if f.code in ("TUL1015", "TUL1038")]
