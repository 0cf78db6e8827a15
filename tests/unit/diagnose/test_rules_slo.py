"""SLOs on a recorded window: `tulle slo`'s figures agree with a hand computation, and
diagnose's TUL1032 fires on a fast burn only, naming the instance, caller and route rule the
bad requests came from."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import pytest

from tests.unit.model.documents import parse
from tests.unit.model.workloads import workload
from tulle.controlplane.services.slos import slo_rows
from tulle.diagnose.engine import diagnose
from tulle.diagnose.evidence import Evidence
from tulle.diagnose.model import Severity
from tulle.diagnose.rules import slos as slo_rules
from tulle.model.mesh import build_mesh
from tulle.model.slo import mesh_slos
from tulle.telemetry.query import NodeInfo
from tulle.telemetry.schema import LATENCY_BOUNDS_MS, SeriesKey
from tulle.telemetry.slo import count
from tulle.telemetry.windows import Window

SLOS = """\
apiVersion: tulle.io/v1alpha1
kind: ServiceLevelObjective
metadata: {name: books}
spec:
  targetRef: {kind: Service, name: books}
  success: {objective: 99.9}
  latency: {threshold: 300ms, objective: 99}
---
apiVersion: tulle.io/v1alpha1
kind: ServiceLevelObjective
metadata: {name: canary}
spec:
  targetRef: {kind: HTTPRoute, name: books, sectionName: canary}
  window: 30d
  success: {objective: 99}
"""
IN = SeriesKey("in")
PLAIN = SeriesKey("in_plain")
CANARY = SeriesKey("route", "books.default", "default/books", "canary")
OTHER_RULE = SeriesKey("route", "books.default", "default/books", "0")

Counters = dict[tuple[str, SeriesKey], Mapping[str, int]]


def latency(within_300ms: int, over: int) -> dict[str, int]:
    """Requests timed at 200-300 ms (bucket lat14) and at 300-500 ms (lat15)."""
    assert LATENCY_BOUNDS_MS[14] == 300
    return {"lat14": within_300ms, "lat15": over}


def window(counters: Counters, seconds: float = 60.0) -> Window:
    return Window(seconds, seconds, MappingProxyType(counters), MappingProxyType({}),
                  MappingProxyType({}))


REGISTERED = (workload("books-1", "books"), workload("books-2", "books"),
              workload("web-1", "web"), workload("web-2", "web"))
NODES = {w.node_id: NodeInfo(w.name, w.namespace, w.service, "") for w in REGISTERED}

# 2,000 requests to books: books-1 answers 990 well and 10 with 5xx, books-2 1,000 well and
# 30 more in plaintext, 20 of them 5xx. 25 answered over 300 ms, all by books-1.
RECORDED: Counters = {
    ("books-1.default", IN): {"rq2": 990, "rq5": 10, **latency(975, 25)},
    ("books-2.default", IN): {"rq2": 970, **latency(970, 0)},
    ("books-2.default", PLAIN): {"rq2": 10, "rq5": 20, **latency(30, 0)},
    # web-1's requests chosen by the canary rule: 8 of 200 failed; web-2's: 2 of 100.
    ("web-1.default", CANARY): {"rq2": 192, "rq5": 8},
    ("web-2.default", CANARY): {"rq2": 98, "rq5": 2},
    ("web-1.default", OTHER_RULE): {"rq2": 1000, "rq5": 50},  # not the canary's
    # A caller's outbound series: not the service's own figures.
    ("web-1.default", SeriesKey("out", "books.default")): {"rq2": 5000, "rq5": 500},
}


def test_counting_success_and_latency() -> None:
    values = {"rq2": 90, "rq4": 5, "rq5": 5, "lat13": 40, "lat14": 50, "lat15": 10}
    assert (count(values).requests, count(values).bad) == (100, 5)
    assert (count(values, 300).requests, count(values, 300).bad) == (100, 10)
    assert (count(values, 200).requests, count(values, 200).bad) == (100, 60)
    with pytest.raises(ValueError):
        count(values, 250)


def rows() -> dict[tuple[str, str], dict[str, object]]:
    mesh_resources = parse(SLOS)
    slos = mesh_slos((r.key, r.spec) for r in mesh_resources)
    recent = {k: v for k, v in RECORDED.items() if k[0] != "books-1.default"}
    found = slo_rows(slos, window(RECORDED, 900), window(recent, 300), NODES)
    return {(row["name"], row["sli"]): row for row in found}  # type: ignore[misc]


def test_tulle_slo_agrees_with_a_hand_computation() -> None:
    table = rows()
    success = table[("books", "success")]
    # 2,000 requests, 30 bad: 98.5 % good; budget 0.1 % of 2,000 = 2, spent 15 times.
    assert (success["requests"], success["bad"], success["actual"]) == (2000, 30, 98.5)
    assert (success["burnRate"], success["budgetLeft"]) == (15.0, -1400.0)
    # The last 5 minutes hold books-2's only: 1,000 requests, 20 bad -> 20x.
    assert success["burnRateRecent"] == 20.0
    assert success["fastBurnRate"] == 13.44 and success["verdict"] == "burning fast"
    assert success["burnedBy"] == [{"proxy": "books-2.default", "bad": 20, "requests": 1000},
                                   {"proxy": "books-1.default", "bad": 10, "requests": 1000}]
    slow = table[("books", "latency")]
    # 25 of 2,000 over 300 ms: 1.25 %, a 1 % budget burnt 1.25 times; none in the last 5 m.
    assert (slow["requests"], slow["bad"], slow["burnRate"], slow["burnRateRecent"]) == (
        2000, 25, 1.25, 0.0)
    assert (slow["threshold"], slow["verdict"]) == ("300ms", "burning")
    canary = table[("canary", "success")]
    # The callers' canary-rule series only: 300 requests, 10 bad: 3.33 % against 1 %.
    assert (canary["requests"], canary["bad"], canary["burnRate"]) == (300, 10, 3.333)
    assert (canary["window"], canary["target"]) == ("30d", "httproute/books#canary")
    assert [b["proxy"] for b in canary["burnedBy"]] == ["web-1.default", "web-2.default"]


def evidence(counters: Counters) -> Evidence:
    route = parse("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
                  "metadata: {name: books}\nspec:\n"
                  "  parentRefs: [{kind: Service, name: books}]\n"
                  "  rules: [{name: canary, backendRefs: [{name: books, port: 80}]}]\n")
    mesh = build_mesh(2, [*route, *parse(SLOS)], REGISTERED)
    return Evidence(mesh=mesh, window=window(counters), nodes=MappingProxyType(NODES), now=1.0)


def test_a_fast_burn_is_a_finding_that_names_where_the_bad_requests_were() -> None:
    counters = dict(RECORDED)
    # web-1's canary requests: 60 of 200 failed (62 of 300 with web-2's, 20.7x a 1 % budget).
    counters[("web-1.default", CANARY)] = {"rq2": 140, "rq5": 60}
    found = sorted(diagnose(evidence(counters), rules=slo_rules.RULES).findings,
                   key=lambda f: f.subject)
    assert [(f.code, f.subject, f.severity) for f in found] == [
        ("TUL1032", "servicelevelobjective/books.default", Severity.ERROR),
        ("TUL1032", "servicelevelobjective/canary.default", Severity.ERROR)]
    books, canary = found
    text = "\n".join(books.evidence)
    assert "2000 requests" in text and "30 answered 5xx" in text, text
    assert "burn rate 15x (paging starts at 13.4x)" in text, text
    assert "instance books-2.default: 20 of the 30 bad requests" in text, text
    assert "route rule default/books#canary: 62 of its 300 requests bad" in text, text
    assert "route rule default/books#0: 50 of its 1050" in text, text
    assert books.related == ("service/books.default",) and books.symptom
    assert "caller web-1.default: 60 of the 62 bad requests (of its 200)" in \
        "\n".join(canary.evidence)
    assert canary.related == ("httproute/books.default#canary",)
    assert canary.sources == ("proxy/web-1.default", "proxy/web-2.default")


@pytest.mark.parametrize("counters", [
    # A burn under the paging rate: 3 of 2,000 (1.5x) is for Prometheus's ticket, not here.
    {("books-1.default", IN): {"rq2": 1997, "rq5": 3}},
    # Too few bad requests to tell: 4 of 10 is 400x, but 4 is no proof.
    {("books-1.default", IN): {"rq2": 6, "rq5": 4}},
    # No traffic at all.
    {},
], ids=["slow", "few", "none"])
def test_no_finding_without_a_proven_fast_burn(counters: Counters) -> None:
    assert diagnose(evidence(counters), rules=slo_rules.RULES).findings == ()


def test_describe_service_lists_the_objectives_on_it_and_on_its_route_rules() -> None:
    from tulle.cli.cmd_describe import _text
    from tulle.controlplane.services.describe import describe_service
    from tulle.model.meta import ServiceRef

    described = describe_service(evidence({}).mesh, ServiceRef("default", "books"))
    assert described["objectives"] == [
        {"name": "books", "namespace": "default", "target": "service/books", "window": "28d",
         "indicators": ["99.9 % of requests succeed (not 5xx)",
                        "99 % of requests within 300ms"]},
        {"name": "canary", "namespace": "default", "target": "httproute/books#canary",
         "window": "30d", "indicators": ["99 % of requests succeed (not 5xx)"]}]
    assert ("Objective canary (httproute/books#canary): 99 % of requests succeed (not 5xx), "
            "over 30d") in _text(described)
    web = describe_service(evidence({}).mesh, ServiceRef("default", "web"))
    assert web["objectives"] == []
