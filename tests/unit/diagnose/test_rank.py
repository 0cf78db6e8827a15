"""Ranking: causes above the symptoms they explain, then severity, then score."""

from __future__ import annotations

import pytest

from tulle.diagnose.model import Finding, Severity
from tulle.diagnose.rank import impact, rank


def finding(code: str, severity: Severity, score: float, subject: str, *,
            related: tuple[str, ...] = (), symptom: bool = False) -> Finding:
    return Finding(code, severity, score, subject, "cause.", ("fact",), "fix", related,
                   symptom=symptom)


CAUSE = finding("TUL1003", Severity.ERROR, 60, "proxy/books-2.default",
                related=("service/books.default",))
SYMPTOM = finding("TUL1013", Severity.CRITICAL, 99, "service/books.default", symptom=True)
UNRELATED = finding("TUL1010", Severity.WARNING, 50, "service/cart.default")
LONELY_SYMPTOM = finding("TUL1013", Severity.ERROR, 40, "service/shop.default", symptom=True)


@pytest.mark.parametrize(("given", "expected"), [
    ([SYMPTOM, CAUSE], ["proxy/books-2.default", "service/books.default"]),
    ([CAUSE, SYMPTOM, UNRELATED], ["proxy/books-2.default", "service/cart.default",
                                   "service/books.default"]),
    # A symptom nothing explains keeps its place by severity.
    ([UNRELATED, LONELY_SYMPTOM], ["service/shop.default", "service/cart.default"]),
    ([finding("TUL1005", Severity.ERROR, 50, "a/x.y"),
      finding("TUL1006", Severity.ERROR, 70, "a/z.y")], ["a/z.y", "a/x.y"]),
    ([finding("TUL1010", Severity.WARNING, 99, "a/x.y"),
      finding("TUL1001", Severity.CRITICAL, 1, "a/z.y")], ["a/z.y", "a/x.y"]),
], ids=["cause first", "explained symptom last", "unexplained symptom by severity",
        "score within severity", "severity before score"])
def test_rank(given: list[Finding], expected: list[str]) -> None:
    assert [f.subject for f in rank(given)] == expected


def test_explained_by_names_the_causes() -> None:
    ranked = rank([SYMPTOM, CAUSE])
    assert ranked[1].explained_by == ("TUL1003",)
    assert ranked[0].explained_by == ()
    assert rank([UNRELATED, LONELY_SYMPTOM])[1].explained_by == ()


@pytest.mark.parametrize(("failed", "total", "base", "score"), [
    (0, 0, 50, 50.0), (10, 10, 50, 90.0), (5, 10, 60, 80.0), (10, 10, 90, 100.0)])
def test_impact(failed: int, total: int, base: float, score: float) -> None:
    assert impact(failed, total, base) == score


def test_finding_round_trips_through_json() -> None:
    original = rank([SYMPTOM, CAUSE])[1]
    assert Finding.from_dict(original.to_dict()) == original
    assert original.to_dict()["docs"] == "docs/diagnostics/TUL1013.md"


def test_one_culprit_gives_one_top_finding() -> None:
    """Two causes naming one subject (or a route and one of its rules): the worst leads, the
    other follows every other cause, explained by it."""
    masked = finding("TUL1019", Severity.ERROR, 70, "service/books-v2.default")
    worse = finding("TUL1020", Severity.ERROR, 63, "service/books-v2.default")
    change = finding("TUL1026", Severity.ERROR, 99, "httproute/books.default#canary")
    no_route = finding("TUL1012", Severity.ERROR, 95, "httproute/books.default")
    ranked = rank([worse, no_route, UNRELATED, masked, change])
    assert [(f.code, f.explained_by) for f in ranked] == [
        ("TUL1026", ()), ("TUL1019", ()), ("TUL1010", ()), ("TUL1012", ("TUL1026",)),
        ("TUL1020", ("TUL1019",))]


def test_sharing_only_a_caller_does_not_explain_a_symptom() -> None:
    edge = Finding("TUL1013", Severity.ERROR, 40, "service/books.default", "cause.", ("f",),
                   "fix", ("service/books.default",), sources=("proxy/web-1.default",),
                   symptom=True)
    memory = finding("TUL1063", Severity.WARNING, 50, "proxy/cart-1.default")
    callers_memory = Finding("TUL1063", Severity.WARNING, 50, "proxy/web-1.default", "cause.",
                             ("f",), "fix")
    assert rank([edge, memory])[0].explained_by == ()
    # The caller's own sidecar named as the culprit does explain it.
    assert rank([edge, callers_memory])[1].explained_by == ("TUL1063",)
