"""Data-plane rules (TUL1001-TUL1013) on hand-built evidence: each failure ranks its cause
first and names the right resource; a healthy mesh has no finding; scopes narrow the result."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest

from tests.unit.model.workloads import workload
from tulle.diagnose.engine import diagnose
from tulle.diagnose.evidence import Evidence, HostHealth, ProxyEvidence, parse_clusters
from tulle.diagnose.model import Scope
from tulle.diagnose.rules import endpoints, errors, limits, resilience, routing
from tulle.model.mesh import build_mesh
from tulle.model.parse import resource_from_manifest
from tulle.model.workload import Workload, WorkloadState
from tulle.telemetry.query import NodeInfo
from tulle.telemetry.schema import SeriesKey
from tulle.telemetry.windows import Window

NOW = 1_000_000.0
# This area's rules only: the identity and control-plane rules read evidence (xDS states,
# certificates) that these tables leave out.
RULES = (*endpoints.RULES, *resilience.RULES, *errors.RULES, *limits.RULES, *routing.RULES)
WEB, B1, B2 = "web-1.default", "books-1.default", "books-2.default"
IN, OUT, PROXY = SeriesKey("in"), SeriesKey("out", "books.default"), SeriesKey("proxy")
Counters = Mapping[tuple[str, SeriesKey], Mapping[str, int]]

POOL: dict[str, Any] = {"apiVersion": "tulle.io/v1alpha1", "kind": "TrafficPolicy",
        "metadata": {"name": "books-pool"},
        "spec": {"targetRefs": [{"kind": "Service", "name": "books"}],
                 "connectionPool": {"maxPendingRequests": 1, "maxRequests": 1}}}
LIMIT: dict[str, Any] = {"apiVersion": "tulle.io/v1alpha1", "kind": "TrafficPolicy",
         "metadata": {"name": "books-limit"},
         "spec": {"targetRefs": [{"kind": "Service", "name": "books"}],
                  "rateLimit": {"requests": 3, "interval": "10s"}}}
OUTLIERS: dict[str, Any] = {"apiVersion": "tulle.io/v1alpha1", "kind": "TrafficPolicy",
            "metadata": {"name": "books-outliers"},
            "spec": {"targetRefs": [{"kind": "Service", "name": "books"}],
                     "outlierDetection": {"consecutive5xx": 2}}}


def route(rule: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "books"},
            "spec": {"parentRefs": [{"name": "books"}],
                     "rules": [{"backendRefs": [{"name": "books"}], **rule}]}}


def web() -> Workload:
    return workload("web-1", "web", upstreams=(("default", "books"),))


def evidence(counters: Counters, *, manifests: tuple[dict[str, Any], ...] = (),
             workloads: tuple[Workload, ...] | None = None,
             views: Mapping[str, tuple[HostHealth, ...]] | None = None,
             departed: tuple[str, ...] = ()) -> Evidence:
    registered = workloads if workloads is not None else (web(), workload("books-1", "books"))
    mesh = build_mesh(2, [resource_from_manifest(m) for m in manifests], registered)
    nodes = {w.node_id: NodeInfo(w.name, w.namespace, w.service, "") for w in registered}
    nodes |= {n: NodeInfo(n.split(".")[0], "default", "books", "") for n in departed}
    proxies = {WEB: ProxyEvidence(WEB, MappingProxyType({"books.default": tuple(views[WEB])}))
               } if views else {}
    window = Window(60.0, 60.0, MappingProxyType(dict(counters)), MappingProxyType({}),
                    MappingProxyType(dict.fromkeys(departed, 3.0)))
    return Evidence(mesh=mesh, window=window, nodes=MappingProxyType(nodes),
                    proxies=MappingProxyType(proxies), now=NOW)


def failing(**values: int) -> dict[str, int]:
    return {"rq2": 2, "rq5": 10, "c503": 10, **values}


HEALTHY = evidence({(WEB, OUT): {"rq2": 200, "cxt": 2}, (B1, IN): {"rq2": 200},
                    (WEB, PROXY): {"mem": 1}})

CASES: list[tuple[str, Evidence, str, str]] = [
    ("instances gone", evidence(
        {(WEB, OUT): failing(no_healthy=10), (B1, IN): {"rq2": 5}},
        workloads=(web(),), departed=(B1,)), "TUL1001", "service/books.default"),
    ("undeclared, its last instance gone: callers get 502 unknown host", evidence(
        {(WEB, OUT): {"rq2": 200}, (B1, IN): {"rq2": 200}, (WEB, PROXY): {"nohost": 40}},
        workloads=(workload("web-1", "web"),), departed=(B1,)), "TUL1001", "service/books.default"),
    # Scoped outbound routes: a host no scope matches is Envoy's own 404 (NR), so it counts as
    # no_route, not as a direct response.
    ("undeclared, its last instance gone: the 404s count as no route", evidence(
        {(WEB, OUT): {"rq2": 200}, (B1, IN): {"rq2": 200}, (WEB, PROXY): {"noroute": 40}},
        workloads=(workload("web-1", "web"),), departed=(B1,)), "TUL1001", "service/books.default"),
    ("never ran", evidence({(WEB, OUT): failing(no_healthy=10)}, workloads=(web(),)),
     "TUL1001", "service/books.default"),
    ("all ejected", evidence(
        {(WEB, OUT): failing(eject=3)}, manifests=(OUTLIERS,),
        views={WEB: (HostHealth("127.0.0.1:1", "books-1", False,
                                ("failed_outlier_check",)),)}),
     "TUL1001", "service/books.default"),
    ("app on the wrong port", evidence(
        {(WEB, OUT): failing(no_healthy=10)},
        workloads=(web(), workload("books-1", "books", state=WorkloadState.STARTING))),
     "TUL1002", "proxy/books-1.default"),
    ("app refuses connections", evidence(
        {(WEB, OUT): failing(), (B1, IN): {"rq5": 10, "app_cfail": 10}}),
     "TUL1003", "proxy/books-1.default"),
    ("callers cannot connect", evidence({(WEB, OUT): failing(cfail=10)}),
     "TUL1004", "service/books.default"),
    ("circuit breaker", evidence({(WEB, OUT): failing(overflow=10)}, manifests=(POOL,)),
     "TUL1005", "trafficpolicy/books-pool.default"),
    ("circuit breaker at Envoy's defaults", evidence({(WEB, OUT): failing(overflow=10)}),
     "TUL1005", "service/books.default"),
    ("outlier named by the caller's Envoy", evidence(
        {(WEB, OUT): failing(eject=2), (B2, IN): {"rq5": 10, "rq2": 1}},
        workloads=(web(), workload("books-1", "books"), workload("books-2", "books")),
        manifests=(OUTLIERS,),
        views={WEB: (HostHealth("127.0.0.1:1", "books-1", True),
                     HostHealth("127.0.0.1:2", "books-2", False, ("failed_outlier_check",)))}),
     "TUL1006", "proxy/books-2.default"),
    ("retries exhausted", evidence(
        {(WEB, OUT): failing(retry=20, retry_exhausted=10)},
        manifests=(route({"retry": {"attempts": 2, "codes": [503]}}),)),
     "TUL1007", "httproute/books.default"),
    ("retry amplification", evidence(
        {(WEB, OUT): {"rq2": 10, "rq5": 1, "retry": 30, "retry_overflow": 4}}),
     "TUL1008", "service/books.default"),
    ("timeouts", evidence(
        {(WEB, OUT): {"rq5": 3, "c504": 3, "timeout": 3}, (B1, IN): {"rq2": 3, "lat20": 3}},
        manifests=(route({"timeouts": {"request": "300ms"}}),)),
     "TUL1009", "httproute/books.default#0"),  # the rule whose timeout fires
    ("service rate limit", evidence(
        {(WEB, OUT): {"rq2": 3, "rq4": 9, "c429": 9}, (B1, IN): {"rq2": 3, "limited": 9}},
        manifests=(LIMIT,)), "TUL1010", "trafficpolicy/books-limit.default"),
    ("no route", evidence(
        {(WEB, PROXY): {"noroute": 5}},
        manifests=(route({"matches": [{"path": {"type": "PathPrefix",
                                                "value": "/search"}}]}),)),
     "TUL1012", "httproute/books.default"),
    ("no route, from a new caller that never reached books", evidence(
        {(WEB, PROXY): {"noroute": 5}},
        workloads=(workload("web-1", "web"), workload("books-1", "books")),
        manifests=(route({"matches": [{"path": {"type": "PathPrefix",
                                                "value": "/search"}}]}),)),
     "TUL1012", "httproute/books.default"),
    ("no route, and two services it may have been", evidence(
        {(WEB, PROXY): {"noroute": 5}},
        workloads=(workload("web-1", "web"), workload("books-1", "books"),
                   workload("authors-1", "authors")),
        manifests=(route({"matches": [{"path": {"type": "PathPrefix", "value": "/search"}}]}),
                   {**route({"matches": [{"path": {"type": "Exact", "value": "/a"}}],
                             "backendRefs": [{"name": "authors"}]}),
                    "metadata": {"name": "authors"},
                    "spec": {"parentRefs": [{"name": "authors"}], "rules": [{
                        "matches": [{"path": {"type": "Exact", "value": "/a"}}],
                        "backendRefs": [{"name": "authors"}]}]}})),
     "TUL1012", "proxy/web-1.default"),
    ("no route to an unknown host", evidence({(WEB, PROXY): {"noroute": 5}}),
     "TUL1012", "proxy/web-1.default"),
    ("5xx from the application itself", evidence(
        {(WEB, OUT): failing(), (B1, IN): {"rq5": 10}}), "TUL1013", "service/books.default"),
]


@pytest.mark.parametrize(("case", "given", "code", "subject"), CASES,
                         ids=[c[0] for c in CASES])
def test_the_cause_ranks_first(case: str, given: Evidence, code: str, subject: str) -> None:
    result = diagnose(given, rules=RULES)
    assert result.rule_errors == ()
    assert result.findings, case
    first = result.findings[0]
    assert (first.code, first.subject) == (code, subject), [
        (f.code, f.subject) for f in result.findings]
    assert first.cause.endswith(".") and first.evidence and first.fix
    assert not first.symptom or not first.explained_by


def test_a_healthy_mesh_has_no_finding() -> None:
    assert diagnose(HEALTHY, rules=RULES).findings == ()


def test_symptoms_follow_the_cause_that_explains_them() -> None:
    result = diagnose(evidence({(WEB, OUT): failing(overflow=10)}, manifests=(POOL,)), rules=RULES)
    codes = [f.code for f in result.findings]
    assert codes == ["TUL1005", "TUL1013"]
    assert result.findings[1].explained_by == ("TUL1005",)


def test_a_not_ready_instance_explains_no_healthy_endpoints() -> None:
    result = diagnose(evidence(
        {(WEB, OUT): failing(no_healthy=10)},
        workloads=(web(), workload("books-1", "books", state=WorkloadState.STARTING))), rules=RULES)
    assert [f.code for f in result.findings][:1] == ["TUL1002"]
    uh = next(f for f in result.findings if f.code == "TUL1001")
    assert uh.symptom and "TUL1002" in uh.explained_by


def test_a_young_starting_instance_is_not_a_finding() -> None:
    young = workload("books-1", "books", state=WorkloadState.STARTING)
    young = Workload(**{**young.__dict__, "registered_at": NOW - 2})
    assert diagnose(evidence({}, workloads=(web(), young)), rules=RULES).findings == ()


@pytest.mark.parametrize(("scope", "expected"), [
    (Scope(), ["TUL1005", "TUL1013"]),
    (Scope(service="books"), ["TUL1005", "TUL1013"]),
    (Scope(service="web"), ["TUL1005", "TUL1013"]),  # web calls books: it is involved
    (Scope(service="cart"), []),
    (Scope(namespace="shop"), []),
    (Scope(source="web-1", destination="books"), ["TUL1005", "TUL1013"]),
    (Scope(source="web", destination="books.default"), ["TUL1005", "TUL1013"]),
    (Scope(source="books", destination="web-1"), []),
    (Scope(destination="books-1"), ["TUL1005", "TUL1013"]),  # an instance of books
], ids=["mesh", "service", "caller service", "other service", "other namespace", "edge",
        "edge by service", "reverse edge", "to an instance"])
def test_scope(scope: Scope, expected: list[str]) -> None:
    given = evidence({(WEB, OUT): failing(overflow=10)}, manifests=(POOL,))
    assert [f.code for f in diagnose(given, scope, RULES).findings] == expected


def test_a_crashing_rule_is_reported_and_the_others_still_run() -> None:
    def broken(evidence: Evidence, scope: Scope) -> list[object]:
        raise ValueError("boom")

    result = diagnose(evidence({(WEB, OUT): failing(overflow=10)}, manifests=(POOL,)),
                      rules=(broken, *resilience.RULES))  # type: ignore[arg-type]
    assert [f.code for f in result.findings][:1] == ["TUL1005"]
    assert result.rule_errors and "boom" in result.rule_errors[0]


def test_parse_clusters_reads_outbound_hosts_and_flags() -> None:
    document = {"cluster_statuses": [
        {"name": "inbound|8080", "host_statuses": [{}]},
        {"name": "outbound|books.default", "host_statuses": [
            {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15006}},
             "hostname": "books-1", "health_status": {"eds_health_status": "HEALTHY"}},
            {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15007}},
             "hostname": "books-2", "health_status": {"eds_health_status": "HEALTHY",
                                                      "failed_outlier_check": True}}]}]}
    assert parse_clusters(document) == {"books.default": (
        HostHealth("127.0.0.1:15006", "books-1", True),
        HostHealth("127.0.0.1:15007", "books-2", False, ("failed_outlier_check",)))}


def test_callers_failing_on_a_starting_instance_need_no_grace() -> None:
    young = workload("books-1", "books", state=WorkloadState.STARTING)
    young = Workload(**{**young.__dict__, "registered_at": NOW - 2})
    result = diagnose(evidence({(WEB, OUT): failing(no_healthy=10)}, workloads=(web(), young)),
                      rules=RULES)
    assert [(f.code, f.subject) for f in result.findings][:1] == [
        ("TUL1002", "proxy/books-1.default")]


def test_retries_exhausted_while_most_calls_succeed_is_a_warning_below_amplification(
        ) -> None:
    given = evidence({(WEB, OUT): {"rq2": 970, "rq5": 30, "c503": 30, "retry": 1200,
                                   "retry_exhausted": 30}},
                     manifests=(route({"retry": {"attempts": 2, "codes": [503]}}),))
    found = {f.code: f for f in diagnose(given, rules=RULES).findings}
    assert found["TUL1007"].severity.label == "warning"
    assert not found["TUL1008"].symptom
    codes = [f.code for f in diagnose(given, rules=RULES).findings]
    assert codes.index("TUL1008") < codes.index("TUL1007")


@pytest.mark.parametrize(("ok", "failed", "severity"), [
    (100, 0, "warning"), (97, 3, "warning"), (80, 20, "error"), (10, 90, "critical")])
def test_every_instance_ejected_is_as_severe_as_what_callers_saw(
        ok: int, failed: int, severity: str) -> None:
    given = evidence(
        {(WEB, OUT): {"rq2": ok, "rq5": failed, "eject": 3}}, manifests=(OUTLIERS,),
        views={WEB: (HostHealth("127.0.0.1:1", "books-1", False, ("failed_outlier_check",)),)})
    found = [f for f in diagnose(given, rules=RULES).findings if f.code == "TUL1001"]
    assert [f.severity.label for f in found] == ([severity] if failed else [])


THREE = (web(), workload("books-1", "books"), workload("books-2", "books"),
         workload("books-3", "books"))
B3 = "books-3.default"


def test_one_instance_failing_is_the_subject_not_the_service() -> None:
    given = evidence({(WEB, OUT): {"rq2": 270, "rq5": 30, "c500": 30},
                      (B1, IN): {"rq2": 100}, (B2, IN): {"rq2": 100},
                      (B3, IN): {"rq2": 70, "rq5": 30}}, workloads=THREE)
    first = diagnose(given, rules=RULES).findings[0]
    assert (first.code, first.subject) == ("TUL1013", "proxy/books-3.default")
    assert "service/books.default" in first.related and not first.symptom
    assert "30%" in first.cause and "application produced" in first.cause


def test_an_eager_outlier_policy_is_the_culprit_of_ejecting_a_healthy_instance() -> None:
    given = evidence(
        {(WEB, OUT): {"rq2": 200, "rq5": 1, "eject": 4}, (B2, IN): {"rq2": 99, "rq5": 1}},
        workloads=(web(), workload("books-1", "books"), workload("books-2", "books")),
        manifests=(OUTLIERS,),
        views={WEB: (HostHealth("127.0.0.1:1", "books-1", True),
                     HostHealth("127.0.0.1:2", "books-2", False, ("failed_outlier_check",)))})
    found = next(f for f in diagnose(given, rules=RULES).findings if f.code == "TUL1006")
    assert found.subject == "trafficpolicy/books-outliers.default"
    assert "proxy/books-2.default" in found.related


@pytest.mark.parametrize(("values", "code", "severity"), [
    ({"rq2": 990, "rq5": 2, "cfail": 3}, "TUL1004", "warning"),
    ({"rq2": 90, "rq5": 10, "cfail": 10}, "TUL1004", "error"),
], ids=["connect failures callers hardly notice", "connect failures that fail calls"])
def test_severity_follows_what_callers_saw(values: dict[str, int], code: str,
                                          severity: str) -> None:
    found = next(f for f in diagnose(evidence({(WEB, OUT): values}), rules=RULES).findings
                 if f.code == code)
    assert found.severity.label == severity


@pytest.mark.parametrize(("missed", "severity"), [(3, "warning"), (60, "error")])
def test_no_route_severity_follows_the_share_of_requests(missed: int, severity: str) -> None:
    given = evidence({(WEB, OUT): {"rq2": 500}, (WEB, PROXY): {"noroute": missed}})
    (found,) = diagnose(given, rules=RULES).findings
    assert (found.code, found.severity.label) == ("TUL1012", severity)


def test_an_instance_whose_application_crashed_and_left_is_the_services_finding() -> None:
    """Its sidecar's last report shows connect failures to the dead application; the
    instance is gone, so the finding is the service's: no instance left (TUL1001)."""
    given = evidence({(WEB, OUT): failing(no_healthy=5), (B1, IN): {"rq5": 5, "app_cfail": 5}},
                     workloads=(web(),), departed=(B1,))
    assert [(f.code, f.subject) for f in diagnose(given, rules=RULES).findings][:1] == [
        ("TUL1001", "service/books.default")]


def test_an_undeclared_service_stopped_that_nobody_calls_any_more_is_no_finding() -> None:
    given = evidence({(WEB, OUT): {"rq2": 200}, (B1, IN): {"rq2": 200}},
                     workloads=(workload("web-1", "web"),), departed=(B1,))
    assert not diagnose(given, rules=RULES).findings


TCP_BOOKS: dict[str, Any] = {"apiVersion": "tulle.io/v1alpha1", "kind": "Service",
                             "metadata": {"name": "books"}, "spec": {"protocol": "tcp"}}


@pytest.mark.parametrize(("counters", "connections", "failed"), [
    ({"no_healthy": 5}, 5, 5),  # through --upstream: a TCP proxy, no request at all
    ({"rq5": 1, "c503": 1, "no_healthy": 1}, 1, 1),  # a CONNECT answered 503: counted once
    ({"rq5": 1, "no_healthy": 6, "cxt": 0}, 6, 6),  # both ways
    # Four tunnels: one failed to connect (Envoy counts the attempt in cxt, answers 503).
    ({"rq2": 3, "rq5": 1, "cxt": 4, "cfail": 1}, 4, 1),
], ids=["upstream", "connect", "both", "connect failure"])
def test_a_tcp_services_callers_count_connections(counters: dict[str, int], connections: int,
                                                  failed: int) -> None:
    starting = workload("books-1", "books", state=WorkloadState.STARTING)
    given = evidence({(WEB, OUT): counters}, manifests=(TCP_BOOKS,),
                     workloads=(web(), starting))
    assert endpoints._failures_by_caller(given, starting.service_ref) == [
        (WEB, connections, failed)]


def test_a_tcp_service_whose_application_listens_elsewhere_speaks_of_connections() -> None:
    starting = workload("books-1", "books", state=WorkloadState.STARTING)
    given = evidence({(WEB, OUT): {"no_healthy": 5}}, manifests=(TCP_BOOKS,),
                     workloads=(web(), starting))
    result = diagnose(given, rules=RULES)
    top = result.findings[0]
    assert (top.code, top.subject) == ("TUL1002", "proxy/books-1.default")
    assert "5 connections of its callers to books.default (a tcp service) found no " \
           "instance to reach" in top.cause
    assert f"{WEB} -> books.default: 5 connections, 5 failed before reaching an instance" \
        in top.evidence[1]
    uh = next(f for f in result.findings if f.code == "TUL1001")
    assert "the mesh refused these connections itself" in uh.cause
    assert "5 connections found no healthy upstream" in " ".join(uh.evidence)


def test_a_tcp_services_application_refusing_connections_is_tul1003_in_l4_terms() -> None:
    given = evidence({(WEB, OUT): {"rq2": 4, "cxt": 4}, (B1, IN): {"cxt": 4, "app_cfail": 4}},
                     manifests=(TCP_BOOKS,))
    top = diagnose(given, rules=RULES).findings[0]
    assert (top.code, top.subject) == ("TUL1003", "proxy/books-1.default")
    assert "its sidecar closes each connection a caller opens to it (UF" in top.cause
    assert "503" not in top.cause
