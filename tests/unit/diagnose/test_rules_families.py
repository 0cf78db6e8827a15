"""The newer families (TUL1019-TUL1027) on hand-built evidence: a canary mesh (books-1 v1,
books-2 v2, books-3 v1 behind subsets books-v1/books-v2 and a weighted route), each fault
ranks its culprit first with the right subject; the healthy mesh, with some 404s and 401s,
has no finding of severity error or above."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest

from tests.unit.model.workloads import workload
from tulle.diagnose.engine import diagnose
from tulle.diagnose.evidence import Evidence, TimeSlot
from tulle.diagnose.model import Scope, Severity
from tulle.model.mesh import build_mesh
from tulle.model.meta import ResourceKey
from tulle.model.parse import resource_from_manifest
from tulle.model.workload import Workload
from tulle.store.base import Change
from tulle.telemetry.query import NodeInfo
from tulle.telemetry.schema import SeriesKey
from tulle.telemetry.windows import Window

NOW = 1_000_000.0
WEB, B1, B2, B3 = "web-1.default", "books-1.default", "books-2.default", "books-3.default"
IN, PROXY = SeriesKey("in"), SeriesKey("proxy")
V1, V2 = SeriesKey("out", "books-v1.default"), SeriesKey("out", "books-v2.default")
CANARY = SeriesKey("route", "books.default", "default/books", "canary")
Counters = Mapping[tuple[str, SeriesKey], Mapping[str, int]]


def subset(version: str) -> dict[str, Any]:
    return {"apiVersion": "tulle.io/v1alpha1", "kind": "Service",
            "metadata": {"name": f"books-{version}"},
            "spec": {"selector": {"service": "books", "version": version}}}


def canary_route(*, v2_weight: int = 20, backend: str = "books-v2",
                 timeout: str | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": "canary",
                            "backendRefs": [{"name": "books-v1", "weight": 100 - v2_weight},
                                            {"name": backend, "weight": v2_weight}],
                            "retry": {"attempts": 2, "codes": [503]}}
    if timeout:
        rule["timeouts"] = {"request": timeout}
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "books"},
            "spec": {"parentRefs": [{"name": "books"}], "rules": [rule]}}


FAULT: dict[str, Any] = {"apiVersion": "tulle.io/v1alpha1", "kind": "TrafficPolicy",
                         "metadata": {"name": "books-chaos"},
                         "spec": {"targetRefs": [{"kind": "Service", "name": "books"}],
                                  "faultInjection": {"abort": {"httpStatus": 503,
                                                               "percent": 25}}}}
MESH = (subset("v1"), subset("v2"), canary_route())


def instances() -> tuple[Workload, ...]:
    return (workload("web-1", "web", upstreams=(("default", "books"),)),
            workload("books-1", "books", version="v1"),
            workload("books-2", "books", version="v2"),
            workload("books-3", "books", version="v1"))


def lat(ms_bucket: str, n: int) -> dict[str, int]:
    """``n`` answers in one latency bucket (``lat5`` is <= 7.5 ms, ``lat18`` <= 1.5 s)."""
    return {ms_bucket: n}


def ok(n: int, bucket: str = "lat5") -> dict[str, int]:
    return {"rq2": n, "c200": n, **lat(bucket, n)}


def evidence(counters: Counters, *, manifests: tuple[dict[str, Any], ...] = MESH,
             timeline: tuple[TimeSlot, ...] = (), history: tuple[Change, ...] = (),
             workloads: tuple[Workload, ...] | None = None) -> Evidence:
    registered = instances() if workloads is None else workloads
    mesh = build_mesh(2, [resource_from_manifest(m) for m in manifests], registered)
    nodes = {w.node_id: NodeInfo(w.name, w.namespace, w.service, "") for w in registered}
    window = Window(60.0, 60.0, MappingProxyType(dict(counters)), MappingProxyType({}),
                    MappingProxyType({}))
    return Evidence(mesh=mesh, window=window, nodes=MappingProxyType(nodes), now=NOW,
                    timeline=timeline, history=history)


def steady(counters: Counters, *, recent: Counters | None = None, slots: int = 12
           ) -> tuple[TimeSlot, ...]:
    """A minute of 5 s slots: ``counters`` in each; the last 6 (30 s) ``recent`` when given."""
    return tuple(TimeSlot(NOW - 60 + 5 * i, 5.0, MappingProxyType(dict(
        recent if recent is not None and i >= slots - 6 else counters))) for i in range(slots))


def healthy_counters() -> dict[tuple[str, SeriesKey], dict[str, int]]:
    return {(WEB, V1): {**ok(800), "rq4": 20, "c404": 14, "c401": 6},
            (WEB, V2): ok(200), (B1, IN): {**ok(400), "rq4": 10},
            (B3, IN): {**ok(400), "rq4": 10}, (B2, IN): ok(200)}


CANARY_BUG = {(WEB, V1): ok(800), (WEB, V2): {**ok(200), "retry": 40},
              (B1, IN): ok(400), (B3, IN): ok(400),
              (B2, IN): {"rq2": 200, "rq5": 40, "c503": 40, "lat5": 240}}
SLOW = {(WEB, V1): ok(800), (WEB, V2): ok(200), (B1, IN): ok(400),
        (B3, IN): ok(400, "lat18"), (B2, IN): ok(200)}
SLOW_V2 = {(WEB, V1): ok(800), (WEB, V2): ok(200, "lat17"), (B1, IN): ok(400),
           (B3, IN): ok(400), (B2, IN): ok(200, "lat17")}
ROUTE_SLOW = {(WEB, V1): ok(800), (WEB, V2): ok(200),
              (WEB, CANARY): ok(100, "lat15")}  # 300-500 ms against 500 ms
NOTHING = {(WEB, V1): ok(800), (WEB, SeriesKey("out", "books-v3.default")): {
    "rq5": 200, "c503": 200, "no_healthy": 200}}
FAULTED = {(WEB, V1): ok(600), (WEB, V2): ok(150), (WEB, PROXY): {"fault_aborts": 250}}

ROUTE_KEY = ResourceKey("HTTPRoute", "default", "books")
REWRITE = Change(9, NOW - 25, ROUTE_KEY, "configured", canary_route(), {
    **canary_route(), "spec": {**canary_route()["spec"], "rules": [{
        **canary_route()["spec"]["rules"][0],
        "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {
            "type": "ReplacePrefixMatch", "replacePrefixMatch": "/v9"}}}]}]}})
BEFORE_REWRITE = {(WEB, V1): ok(80), (WEB, V2): ok(20)}
AFTER_REWRITE = {(WEB, V1): {"rq2": 30, "rq4": 50, "c404": 50},
                 (WEB, V2): {"rq2": 5, "rq4": 15, "c404": 15}}

HANG_BEFORE = {(WEB, V1): ok(60), (WEB, V2): ok(20), (B1, IN): ok(30), (B3, IN): ok(30),
               (B2, IN): ok(20)}
HANG_NOW = {(WEB, V1): {"rq2": 40, "rq5": 6, "c504": 6, "timeout": 6}, (WEB, V2): ok(20),
            (B1, IN): ok(40), (B2, IN): ok(20)}

CASES: list[tuple[str, Evidence, str, str]] = [
    ("canary bug hidden by retries", evidence(CANARY_BUG), "TUL1019",
     "service/books-v2.default"),
    ("one instance hidden by retries", evidence({
        (WEB, V1): {**ok(800), "retry": 60}, (WEB, V2): ok(200), (B1, IN): ok(400),
        (B3, IN): {"rq2": 400, "rq5": 60, "lat5": 460}, (B2, IN): ok(200)}),
     "TUL1019", "proxy/books-3.default"),
    ("a worse version without retries", evidence(
        {(WEB, V1): ok(800), (WEB, V2): {**ok(160), "rq5": 40, "c500": 40},
         (B1, IN): ok(400), (B3, IN): ok(400), (B2, IN): {**ok(160), "rq5": 40}}),
     "TUL1020", "service/books-v2.default"),
    ("a slower version", evidence(SLOW_V2), "TUL1020", "service/books-v2.default"),
    ("one slow instance of three", evidence(SLOW), "TUL1022", "proxy/books-3.default"),
    ("near the route's timeout", evidence(ROUTE_SLOW, manifests=(
        subset("v1"), subset("v2"), canary_route(timeout="500ms"))),
     "TUL1023", "httproute/books.default#canary"),
    ("a frozen instance", evidence(
        HANG_NOW, timeline=steady(HANG_BEFORE, recent=HANG_NOW)), "TUL1024",
     "proxy/books-3.default"),
    ("fault injection left on", evidence(FAULTED, manifests=(*MESH, FAULT)), "TUL1025",
     "trafficpolicy/books-chaos.default"),
    ("404s after a rewrite", evidence(
        AFTER_REWRITE, history=(REWRITE,),
        timeline=steady(BEFORE_REWRITE, recent=AFTER_REWRITE)), "TUL1026",
     "httproute/books.default#canary"),
    ("a share routed to nothing", evidence(NOTHING, manifests=(
        subset("v1"), subset("v3"), canary_route(backend="books-v3"))), "TUL1027",
     "httproute/books.default#canary"),
]


@pytest.mark.parametrize(("case", "given", "code", "subject"), CASES,
                         ids=[c[0] for c in CASES])
def test_the_culprit_ranks_first(case: str, given: Evidence, code: str, subject: str) -> None:
    result = diagnose(given)
    assert result.rule_errors == ()
    found = [(f.code, f.subject, f.severity.label) for f in result.findings]
    assert found and found[0][:2] == (code, subject), found
    first = result.findings[0]
    assert first.cause.endswith(".") and first.evidence and first.fix


def test_a_healthy_canary_mesh_with_client_errors_has_no_error() -> None:
    counters = healthy_counters()
    given = evidence(counters, timeline=steady(counters))
    assert [f for f in diagnose(given).findings if f.severity >= Severity.ERROR] == []


def test_masked_failures_give_the_numbers() -> None:
    (found,) = [f for f in diagnose(evidence(CANARY_BUG)).findings if f.code == "TUL1019"]
    text = "\n".join(found.evidence)
    assert found.severity is Severity.ERROR  # 17 % of attempts fail
    assert "books-2.default answered 40 of 240 requests with 5xx" in text
    assert "20% retry rate" in text and "latency cost" in text
    assert "httproute/books.default#canary" in found.related
    assert "application produced" in found.cause


def test_a_version_names_the_rule_and_weight_that_feed_it() -> None:
    found = next(f for f in diagnose(evidence(CANARY_BUG)).findings if f.code == "TUL1020")
    assert any("#canary" in line and "20%" in line and "weight 20" in line
               for line in found.evidence), found.evidence
    assert "service/books.default" in found.related
    assert found.explained_by == ("TUL1019",)  # one culprit: one top finding


def test_a_slow_instance_says_how_much_slower() -> None:
    found = next(f for f in diagnose(evidence(SLOW)).findings if f.code == "TUL1022")
    assert found.severity is Severity.ERROR
    assert "ms slower than its peers" in found.cause


def test_latency_regressed_against_its_past_is_linked_to_the_slow_instance() -> None:
    before = {(WEB, V1): ok(100), (WEB, V2): ok(25), (B1, IN): ok(50), (B3, IN): ok(50),
              (B2, IN): ok(25)}
    now = {(WEB, V1): {"rq2": 100, "lat5": 50, "lat18": 50}, (WEB, V2): ok(25),
           (B1, IN): ok(50), (B3, IN): ok(50, "lat18"), (B2, IN): ok(25)}
    result = diagnose(evidence(now, timeline=steady(before, recent=now)))
    codes = [f.code for f in result.findings]
    assert codes[0] == "TUL1022"
    regression = next(f for f in result.findings if f.code == "TUL1021")
    assert regression.subject == "service/books-v1.default"
    assert "TUL1022" in regression.explained_by


@pytest.mark.parametrize(("aborts", "severity"), [(250, Severity.ERROR), (20, Severity.WARNING),
                                                  (0, Severity.WARNING)])
def test_fault_injection_severity_follows_the_share_it_fails(aborts: int,
                                                             severity: Severity) -> None:
    counters = {**FAULTED, (WEB, PROXY): {"fault_aborts": aborts}}
    (found,) = [f for f in diagnose(evidence(counters, manifests=(*MESH, FAULT))).findings
                if f.code == "TUL1025"]
    assert found.severity is severity
    assert "mesh produced these answers" in found.cause


def test_client_errors_after_a_change_name_it_and_its_dry_run() -> None:
    given = evidence(AFTER_REWRITE, history=(REWRITE,),
                     timeline=steady(BEFORE_REWRITE, recent=AFTER_REWRITE))
    found = next(f for f in diagnose(given).findings if f.code == "TUL1026")
    assert "revision 9" in found.cause and "application answered" in found.cause
    assert "`tulle rollback --revert 9 --dry-run`" in found.fix
    assert any("filters" in line for line in found.evidence)


def test_client_errors_without_traffic_before_blame_no_change() -> None:
    given = evidence(AFTER_REWRITE, history=(REWRITE,),
                     timeline=steady({}, recent=AFTER_REWRITE))
    assert "TUL1026" not in {f.code for f in diagnose(given).findings}


def test_429s_after_a_change_are_left_to_the_rate_limit_findings() -> None:
    """A policy that adds a rate limit is a change too, and its 429s rise right after it:
    TUL1010/TUL1011 explain them, TUL1026 must not claim them (failed once in CI)."""
    limited = {(WEB, V1): {"rq2": 30, "rq4": 50, "c429": 50},
               (WEB, V2): {"rq2": 5, "rq4": 15, "c429": 15}}
    given = evidence(limited, history=(REWRITE,),
                     timeline=steady(BEFORE_REWRITE, recent=limited))
    assert "TUL1026" not in {f.code for f in diagnose(given).findings}


def _only_around(straddle: Counters, after: Counters) -> tuple[TimeSlot, ...]:
    """No calls until the slot the change (at NOW - 23) falls in; ``after`` from then on."""
    return tuple(TimeSlot(NOW - 60 + 5 * i, 5.0, MappingProxyType(dict(
        {} if i < 7 else straddle if i == 7 else after))) for i in range(12))


@pytest.mark.parametrize(("straddle", "blamed"), [
    ({(WEB, V1): {**ok(60), "rq4": 20, "c404": 20}}, True),  # 25 % then 65 %: >= 49 before
    ({(WEB, V1): {"rq2": 35, "rq4": 65, "c404": 65}}, False),  # as bad as since: no before
])
def test_the_slot_a_change_fell_in_stands_for_thin_telemetry_before_it(
        straddle: Counters, blamed: bool) -> None:
    change = Change(9, NOW - 23, ROUTE_KEY, "configured", REWRITE.before, REWRITE.after)
    given = evidence(AFTER_REWRITE, history=(change,),
                     timeline=_only_around(straddle, AFTER_REWRITE))
    found = [f for f in diagnose(given).findings if f.code == "TUL1026"]
    assert bool(found) is blamed
    if blamed:
        assert any("the change fell in" in line and "at most" in line
                   for line in found[0].evidence)


def test_routing_to_nothing_gives_the_share_and_explains_no_healthy_upstream() -> None:
    given = evidence(NOTHING, manifests=(subset("v1"), subset("v3"),
                                         canary_route(backend="books-v3")))
    result = diagnose(given)
    first = result.findings[0]
    assert "20% of its traffic" in first.cause and "version=v3" in "\n".join(first.evidence)
    uh = next(f for f in result.findings if f.code == "TUL1001")
    assert uh.symptom and "TUL1027" in uh.explained_by


def test_a_route_to_a_version_not_called_yet_is_only_a_warning() -> None:
    given = evidence({(WEB, V1): ok(800)}, manifests=(subset("v1"), subset("v3"),
                                                     canary_route(backend="books-v3")))
    (found,) = [f for f in diagnose(given).findings if f.code == "TUL1027"]
    assert found.severity is Severity.WARNING


@pytest.mark.parametrize(("scope", "covered"), [
    (Scope(service="books"), True), (Scope(service="books-v2"), True),
    (Scope(service="web"), True), (Scope(service="authors"), False),
    (Scope(namespace="default"), True), (Scope(namespace="shop"), False),
    (Scope(destination="books"), True)])
def test_diagnosing_a_service_covers_the_versions_its_routes_send_to(
        scope: Scope, covered: bool) -> None:
    codes = {f.code for f in diagnose(evidence(CANARY_BUG), scope).findings}
    assert ("TUL1019" in codes) is covered, codes


def test_a_short_timeout_on_a_lone_instance_is_slower_than_allowed_not_a_hang() -> None:
    manifests = (subset("v1"), canary_route(v2_weight=0, timeout="300ms"))
    alone = (instances()[0], instances()[1])
    before = {(WEB, V1): ok(60), (B1, IN): ok(60)}
    now = {(WEB, V1): {"rq5": 20, "c504": 20, "timeout": 20}}
    result = diagnose(evidence(now, manifests=manifests, workloads=alone,
                               timeline=steady(before, recent=now)))
    codes = [f.code for f in result.findings]
    assert "TUL1024" not in codes and codes[0] == "TUL1009", codes
    assert result.findings[0].subject == "httproute/books.default#canary"


def test_an_instance_silent_while_its_peers_answer_hangs_whatever_the_timeout() -> None:
    manifests = (subset("v1"), subset("v2"), canary_route(timeout="300ms"))
    result = diagnose(evidence(HANG_NOW, manifests=manifests,
                               timeline=steady(HANG_BEFORE, recent=HANG_NOW)))
    assert [(f.code, f.subject) for f in result.findings][:1] == [
        ("TUL1024", "proxy/books-3.default")]


def test_one_rule_slower_than_its_past_while_the_services_are_not() -> None:
    before = {(WEB, V1): ok(100), (WEB, V2): ok(25), (WEB, CANARY): ok(60)}
    now = {(WEB, V1): ok(100), (WEB, V2): ok(25), (WEB, CANARY): ok(30, "lat17")}
    result = diagnose(evidence(now, timeline=steady(before, recent=now)))
    found = [(f.code, f.subject, f.symptom) for f in result.findings if f.code == "TUL1021"]
    assert found == [("TUL1021", "httproute/books.default#canary", True)]


def test_a_canary_deployed_by_a_route_change_blames_the_version_not_the_change() -> None:
    """v2 entered as a 20 % canary with a route change and fails a share of its calls, while
    v1 answers well: the version is the culprit (TUL1020); the change (TUL1065) follows it."""
    v1_only = {**canary_route(), "spec": {**canary_route()["spec"], "rules": [
        {"backendRefs": [{"name": "books-v1"}]}]}}
    change = Change(9, NOW - 30, ROUTE_KEY, "configured", v1_only, canary_route())
    before = {(WEB, V1): ok(100)}
    after = {(WEB, V1): ok(80), (WEB, V2): {**ok(16), "rq5": 4, "c500": 4},
             (B1, IN): ok(40), (B3, IN): ok(40), (B2, IN): {**ok(16), "rq5": 4}}
    given = evidence(after, history=(change,), timeline=steady(before, recent=after))
    ranked = [(f.code, f.subject, f.explained_by) for f in diagnose(given).findings]
    assert ranked[0][:2] == ("TUL1020", "service/books-v2.default"), ranked
    [change_finding] = [f for f in diagnose(given).findings if f.code == "TUL1065"]
    assert "had none before" in change_finding.cause
    assert change_finding.explained_by == ("TUL1020",) or "TUL1020" in change_finding.explained_by


def test_a_canary_blamed_on_its_version_when_its_first_calls_fell_in_the_changes_slot() -> None:
    """The route change lands mid-slot; that slot holds v1's calls and v2's first few, which
    all happened to succeed. v2 still had no traffic before the change: the version leads."""
    v1_only = {**canary_route(), "spec": {**canary_route()["spec"], "rules": [
        {"backendRefs": [{"name": "books-v1"}]}]}}
    change = Change(9, NOW - 27.5, ROUTE_KEY, "configured", v1_only, canary_route())
    before = {(WEB, V1): ok(100)}
    after = {(WEB, V1): ok(80), (WEB, V2): {**ok(16), "rq5": 4, "c500": 4},
             (B1, IN): ok(40), (B3, IN): ok(40), (B2, IN): {**ok(16), "rq5": 4}}
    timeline = list(steady(before, recent=after))
    straddle = timeline[6]
    assert straddle.start < change.at < straddle.start + straddle.seconds
    timeline[6] = TimeSlot(straddle.start, straddle.seconds, MappingProxyType(
        {(WEB, V1): ok(60), (WEB, V2): ok(3)}))
    given = evidence(after, history=(change,), timeline=tuple(timeline))
    found = diagnose(given).findings
    assert (found[0].code, found[0].subject) == ("TUL1020", "service/books-v2.default"), found
    [change_finding] = [f for f in found if f.code == "TUL1065"]
    assert "had none before" in change_finding.cause and change_finding.explained_by
