"""The engine: which analyzers run on which inputs, overlays, validation failures, what an
analyzer may read, suppressions and the failure threshold."""

from __future__ import annotations

import pytest

from tests.unit.analysis.support import NO_TRAFFIC, documents, run
from tulle.analysis.analyzers import ANALYZERS
from tulle.analysis.codes import UNKNOWN_ROUTE, UNKNOWN_SERVICE, Level
from tulle.analysis.engine import (
    AnalysisInput,
    AnalysisResult,
    Analyzer,
    Need,
    UndeclaredInput,
    analyze,
)
from tulle.analysis.filters import fails, parse_suppression, unsuppressed
from tulle.analysis.run import parse_for_analysis, run_analysis
from tulle.errors import ConfigError, UsageError
from tulle.model.kinds import HTTP_ROUTE, SERVICE

STORED = """\
apiVersion: tulle.io/v1alpha1
kind: Service
metadata: {name: books}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules: [{backendRefs: [{name: books}]}]
"""
CHANGE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books}
spec:
  parentRefs: [{name: books}]
  rules: [{backendRefs: [{name: bookz}]}]
"""


def test_files_alone_skip_what_needs_the_live_mesh() -> None:
    result = run(STORED)
    needing = {a.name for a in ANALYZERS if a.needs}
    assert {s.analyzer for s in result.skipped} == needing
    assert set(result.ran) == {a.name for a in ANALYZERS} - needing
    assert all("--live" in s.reason for s in result.skipped)
    telemetry = next(s for s in result.skipped if s.analyzer == "rate-limits")
    assert "needs telemetry" in telemetry.reason


def test_live_runs_everything() -> None:
    result = run(STORED, workloads=[], traffic=NO_TRAFFIC)
    assert result.skipped == () and len(result.ran) == len(ANALYZERS)


def test_files_overlay_the_store_as_if_applied() -> None:
    stored = parse_for_analysis(documents(STORED, "store"))
    assert run_analysis((), stored, [], NO_TRAFFIC).messages == ()
    result = run_analysis(documents(CHANGE, "change.yaml"), stored, [], NO_TRAFFIC)
    [message] = result.messages
    assert (message.code, message.source) == ("TUL0001", "change.yaml:1")
    assert message.field == "spec.rules[0].backendRefs[0].name"
    assert "running workloads were not checked" not in message.message  # live: they were


def test_files_that_fail_validation_are_not_analyzed() -> None:
    broken = CHANGE.replace("rules:", "rulez:")
    with pytest.raises(ConfigError) as caught:
        run(broken)
    assert "before the files can be analyzed" in caught.value.message
    problem = next(p for p in caught.value.problems if p.field == "spec.rulez")
    assert problem.source == "t.yaml:1"
    assert 'did you mean "rules"?' in problem.hint


def _analyzer(run_it: object, **extra: object) -> Analyzer:
    return Analyzer("probe", "reads things", (SERVICE,), (UNKNOWN_SERVICE,),
                    run_it, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("reads", [
    lambda ctx: ctx.resources(HTTP_ROUTE),
    lambda ctx: ctx.workloads(),
    lambda ctx: ctx.traffic(),
    lambda ctx: ctx.report(UNKNOWN_ROUTE, ctx.resources(SERVICE)[0].key),
], ids=["an undeclared kind", "workloads", "telemetry", "an undeclared code"])
def test_an_analyzer_sees_only_what_it_declares(reads: object) -> None:
    given = AnalysisInput(parse_for_analysis(documents(STORED)), {}, (), NO_TRAFFIC)
    with pytest.raises(UndeclaredInput):
        analyze(given, [_analyzer(reads)])


def test_optional_inputs_are_none_when_missing() -> None:
    seen: list[object] = []
    probe = _analyzer(lambda ctx: seen.append(ctx.workloads()), uses=frozenset({Need.WORKLOADS}))
    analyze(AnalysisInput(()), [probe])
    analyze(AnalysisInput((), {}, ()), [probe])
    assert seen == [None, ()]


def test_result_round_trips_through_json() -> None:
    result = run(CHANGE)
    assert AnalysisResult.from_dict(result.to_dict()) == result


@pytest.mark.parametrize(("text", "matches"), [
    ("TUL0001=HTTPRoute/books", True),
    ("tul0001=route/books", True),
    ("TUL0001=HTTPRoute/*", True),
    ("TUL0001=HTTPRoute/default/books", True),
    ("TUL0001=HTTPRoute/shop/books", False),
    ("TUL0001=HTTPRoute/other", False),
    ("TUL0002=HTTPRoute/books", False),
    ("TUL0001=Service/books", False),
])
def test_suppressions(text: str, matches: bool) -> None:
    messages = list(run(CHANGE).messages)
    kept = unsuppressed(messages, [parse_suppression(text)])
    assert (kept == []) is matches


@pytest.mark.parametrize(("text", "says"), [
    ("TUL0001", "is not CODE=KIND/NAME"),
    ("TUL0001=books", "is not CODE=KIND/NAME"),
    ("TUL9999=HTTPRoute/books", "unknown code"),
    ("TUL0001=Gizmo/books", "unknown kind"),
    ("TUL0001=HTTPRoute/a/b/c", "is not CODE=KIND/NAME"),
])
def test_bad_suppressions_are_usage_errors(text: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_suppression(text)
    assert says in caught.value.message


@pytest.mark.parametrize(("threshold", "expected"), [
    (Level.ERROR, False), (Level.WARNING, True), (Level.INFO, True)])
def test_failure_threshold(threshold: Level, expected: bool) -> None:
    # 3 retries of 1 s in a 2 s request: a warning.
    text = STORED.replace("rules: [{backendRefs: [{name: books}]}]", (
        "rules: [{backendRefs: [{name: books}], retry: {attempts: 3},\n"
        "          timeouts: {request: 2s, backendRequest: 1s}}]"))
    messages = run(text).messages
    assert [str(m.level) for m in messages] == ["warning"]
    assert fails(messages, threshold) is expected
