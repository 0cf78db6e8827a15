"""The pure part of rollouts: validation, the analysis, the next move, the status, and what an
apply keeps of a stored status."""

from __future__ import annotations

from typing import Any

import pytest

from tulle.errors import ConfigError
from tulle.model.meta import ServiceRef
from tulle.model.parse import Document, parse_document
from tulle.model.references import reference_problems
from tulle.model.rollout import (
    STATUS,
    LatencyAnalysis,
    Move,
    RolloutAnalysis,
    RolloutSpec,
    RolloutStatus,
    RolloutStep,
    Side,
    SuccessAnalysis,
    analyse,
    next_move,
    route_spec,
)
from tulle.model.staging import staged

SPEC = RolloutSpec(service="books", stable="v1", canary="v2",
                   steps=(RolloutStep(10, "30s"), RolloutStep(50, "30s")),
                   analysis=RolloutAnalysis(min_requests=100))


def rollout(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> Any:
    metadata: dict[str, Any] = {"name": "books"}
    if annotations:
        metadata["annotations"] = annotations
    return parse_document(Document("rollout.yaml", {
        "apiVersion": "tulle.io/v1alpha1", "kind": "Rollout", "metadata": metadata,
        "spec": spec}))


GOOD = {"service": "books", "stable": "v1", "canary": "v2",
        "steps": [{"weight": 10, "pause": "30s"}, {"weight": 50, "pause": "1m"}]}


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"canary": "v1"}, "spec.canary", "the canary is the stable version"),
    ({"steps": [{"weight": 50}, {"weight": 20}]}, "spec.steps[1].weight", "must grow"),
    ({"steps": [{"weight": 10, "pause": "soon"}]}, "spec.steps[0].pause", "not a duration"),
    ({"steps": [{"weight": 10, "pause": "2d"}]}, "spec.steps[0].pause", "between 1s and 24h"),
    ({"steps": [{"weight": 0}]}, "spec.steps[0].weight", ""),
    ({"steps": []}, "spec.steps", ""),
    ({"analysis": {"successRate": None, "latency": None}}, "spec.analysis", "no check"),
    ({"analysis": {"latency": {"maxP99Ratio": 1}}}, "spec.analysis.latency.maxP99Ratio", ""),
    ({"stable": "v 1"}, "spec.stable", ""),
])
def test_a_bad_rollout_names_its_field(change: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as raised:
        rollout({**GOOD, **change})
    problems = raised.value.problems
    assert any(p.field == field and words in p.message for p in problems), problems
    assert all(p.source == "rollout.yaml" and p.resource == "Rollout default/books"
               for p in problems), problems


def test_a_good_rollout_parses_with_defaults() -> None:
    spec = rollout(GOOD).spec
    assert spec.analysis.min_requests == 50
    assert spec.analysis.success_rate == SuccessAnalysis(1.0)
    assert spec.analysis.latency == LatencyAnalysis(1.5)


@pytest.mark.parametrize(("canary", "stable", "outcome", "words"), [
    (Side(99, 0, 10.0), Side(900, 0, 10.0), "wait", "99 of the 100"),
    (Side(100, 5, 10.0), Side(900, 0, 10.0), "fail", "95.00 % (5 of 100 failed)"),
    (Side(100, 1, 10.0), Side(900, 0, 10.0), "pass", ""),  # 99 %: exactly one point under
    (Side(100, 2, 10.0), Side(1000, 10, 10.0), "pass", ""),  # 98 against 99
    (Side(100, 0, 30.0), Side(900, 0, 15.0), "fail", "2.00 times stable's 15 ms"),
    (Side(100, 0, 22.0), Side(900, 0, 15.0), "pass", ""),
    (Side(100, 0, 30.0), Side(0, 0, None), "pass", "stable no requests"),
    (Side(100, 2, None), Side(0, 0, None), "fail", "under stable's 100.00 %"),
])
def test_the_canary_is_held_to_stable(canary: Side, stable: Side, outcome: str,
                                      words: str) -> None:
    verdict = analyse(SPEC.analysis, canary, stable)
    assert verdict.outcome == outcome, verdict
    assert words in verdict.reason, verdict.reason
    assert verdict.numbers["canary"]["requests"] == canary.requests


PASS = analyse(SPEC.analysis, Side(100, 0, 10.0), Side(900, 0, 10.0))
FAIL = analyse(SPEC.analysis, Side(100, 9, 10.0), Side(900, 0, 10.0))
WAIT = analyse(SPEC.analysis, Side(3, 0, 10.0), Side(900, 0, 10.0))
AT_STEP_1 = RolloutStatus("Progressing", 0, 10, step_started=1000.0)
AT_STEP_2 = RolloutStatus("Progressing", 1, 50, step_started=1000.0)


@pytest.mark.parametrize(("status", "now", "verdict", "missing", "expected"), [
    (RolloutStatus(), 1000.0, None, "no canary", None),
    (RolloutStatus(), 1000.0, None, None, ("Progressing", 0, 10)),
    (AT_STEP_1, 1005.0, PASS, None, None),  # the pause is not over
    (AT_STEP_1, 1031.0, PASS, None, ("Progressing", 1, 50)),
    (AT_STEP_1, 1031.0, WAIT, None, None),  # over, but too few requests
    (AT_STEP_1, 1031.0, None, None, None),  # cannot see: hold
    (AT_STEP_1, 1001.0, FAIL, None, ("RolledBack", 0, 0)),  # at once, not at the pause's end
    (AT_STEP_2, 1031.0, PASS, None, ("Promoted", 1, 100)),
    (RolloutStatus("Paused", 0, 10), 5000.0, PASS, None, None),
    (RolloutStatus("Stopped", 0, 10), 5000.0, FAIL, None, None),
    (RolloutStatus("Promoted", 1, 100), 5000.0, FAIL, None, None),
])
def test_the_next_move(status: RolloutStatus, now: float, verdict: Any, missing: str | None,
                       expected: tuple[str, int, int] | None) -> None:
    move = next_move(SPEC, status, now, verdict, missing)
    assert (None if move is None else (move.phase, move.step, move.weight)) == expected
    if move is not None and verdict is not None:
        assert move.numbers == verdict.numbers


def test_a_rollback_says_why_with_the_numbers() -> None:
    move = next_move(SPEC, AT_STEP_1, 1002.0, FAIL, None)
    assert move is not None
    assert "rolled back at step 1: canary success rate 91.00 %" in move.reason
    assert move.numbers["canary"] == {"requests": 100, "failed": 9, "successRate": 91.0,
                                      "p99Ms": 10.0}


def test_the_status_survives_its_annotation() -> None:
    move = Move(1000.0, "Progressing", 0, 10, "step 1", {"canary": {"requests": 3}})
    status = RolloutStatus().moved(move, "{}")
    assert RolloutStatus.from_json(status.to_json()) == status
    assert RolloutStatus.from_json("not json").phase == "Waiting"
    many = status
    for i in range(30):
        many = many.moved(Move(float(i), "Progressing", 0, 10, f"m{i}"), "{}")
    assert len(many.moves) == 20 and many.moves[-1].reason == "m29"


def test_the_route_splits_between_the_subsets() -> None:
    assert route_spec(SPEC, 10)["rules"] == [{"name": "rollout", "backendRefs": [
        {"name": "books-v1", "weight": 90}, {"name": "books-v2", "weight": 10}]}]


def test_an_apply_keeps_the_status_of_the_same_spec_and_drops_it_for_another() -> None:
    stored = rollout(GOOD, {STATUS: '{"phase":"Progressing"}', "owner": "me"})
    # A manifest's own status is never taken: only tulle writes it.
    again = staged(rollout(GOOD, {STATUS: '{"phase":"Promoted"}'}), stored)
    assert dict(again.meta.annotations)[STATUS] == '{"phase":"Progressing"}'
    changed = staged(rollout({**GOOD, "canary": "v3"}, {STATUS: "x"}), stored)
    assert STATUS not in dict(changed.meta.annotations)
    fresh = staged(rollout(GOOD, {STATUS: "x"}), None)
    assert STATUS not in dict(fresh.meta.annotations)
    internal = staged(rollout(GOOD, {STATUS: '{"phase":"Paused"}'}), stored, internal=True)
    assert dict(internal.meta.annotations)[STATUS] == '{"phase":"Paused"}'


def _manifest(kind: str, name: str, spec: dict[str, Any],
              annotations: dict[str, str] | None = None) -> Any:
    versions = {"Service": "tulle.io/v1alpha1", "HTTPRoute": "gateway.networking.k8s.io/v1"}
    metadata: dict[str, Any] = {"name": name}
    if annotations:
        metadata["annotations"] = annotations
    return parse_document(Document("mesh.yaml", {"apiVersion": versions[kind], "kind": kind,
                                                 "metadata": metadata, "spec": spec}))


ROUTE = {"parentRefs": [{"name": "books"}], "rules": [{"backendRefs": [{"name": "books"}]}]}


@pytest.mark.parametrize(("others", "field", "words"), [
    ([], None, ""),
    ([_manifest("Service", "books-v2", {"selector": {"service": "books", "version": "v3"}})],
     "spec.canary", "does not select"),
    ([_manifest("Service", "books-v1", {"selector": {"service": "books", "version": "v1"}})],
     None, ""),
    ([_manifest("HTTPRoute", "books", ROUTE)], "metadata.name", "not written by this rollout"),
    ([_manifest("HTTPRoute", "books", ROUTE, {"tulle.io/managed-by": "rollout/books"})],
     None, ""),
])
def test_a_rollout_writes_only_under_names_it_may(others: list[Any], field: str | None,
                                                  words: str) -> None:
    resource = rollout(GOOD)
    proposed = {r.key: r for r in [*others, resource]}
    known = frozenset({ServiceRef("default", "books")})
    problems = reference_problems([resource], known, {}, proposed)
    assert [(p.field, words in p.message) for p in problems] == \
        ([] if field is None else [(field, True)]), problems


def test_a_rollout_of_an_unknown_service_is_refused() -> None:
    resource = rollout(GOOD)
    [problem] = reference_problems([resource], frozenset(), {}, {resource.key: resource})
    assert problem.field == "spec.service" and 'unknown service "books"' in problem.message
