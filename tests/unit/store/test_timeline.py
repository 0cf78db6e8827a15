"""The state at an earlier revision, from the current state and the history after it."""

from __future__ import annotations

from typing import Any

import pytest

from tulle.model.meta import ResourceKey
from tulle.store.base import Change
from tulle.store.timeline import plan_restore, state_at

A = ResourceKey("Service", "default", "a")
B = ResourceKey("Service", "default", "b")
R = ResourceKey("HTTPRoute", "default", "r")


def m(key: ResourceKey, version: int) -> dict[str, Any]:
    return {"kind": key.kind, "metadata": {"name": key.name}, "spec": {"v": version}}


def change(revision: int, key: ResourceKey, before: int | None, after: int | None) -> Change:
    action = "created" if before is None else "deleted" if after is None else "configured"
    return Change(revision, float(revision), key, action,  # type: ignore[arg-type]
                  None if before is None else m(key, before),
                  None if after is None else m(key, after))


# History: 1 creates A1, 2 creates R1, 3 updates R to 2 and creates B1, 4 deletes A,
# 5 updates R to 3. The current state is then {B: 1, R: 3}.
HISTORY = [change(1, A, None, 1), change(2, R, None, 1), change(3, R, 1, 2),
           change(3, B, None, 1), change(4, A, 1, None), change(5, R, 2, 3)]
CURRENT = {B: m(B, 1), R: m(R, 3)}


@pytest.mark.parametrize(("revision", "expected"), [
    (5, {B: 1, R: 3}),
    (4, {B: 1, R: 2}),
    (3, {A: 1, B: 1, R: 2}),
    (2, {A: 1, R: 1}),
    (1, {A: 1}),
    (0, {}),
])
def test_state_at_each_revision(revision: int, expected: dict[ResourceKey, int]) -> None:
    after = [c for c in HISTORY if c.revision > revision]
    assert state_at(CURRENT, after) == {k: m(k, v) for k, v in expected.items()}


def test_state_at_ignores_the_order_changes_come_in() -> None:
    after = [c for c in HISTORY if c.revision > 2]
    assert state_at(CURRENT, list(reversed(after))) == state_at(CURRENT, after)


def test_plan_restore_creates_updates_and_deletes() -> None:
    target = {A: m(A, 1), R: m(R, 1)}
    plan = plan_restore(2, CURRENT, target)
    assert plan.create == ((A, m(A, 1)),)
    assert plan.update == ((R, m(R, 3), m(R, 1)),)
    assert plan.delete == ((B, m(B, 1)),)
    assert not plan.empty


def test_plan_restore_of_the_current_state_is_empty() -> None:
    assert plan_restore(5, CURRENT, dict(CURRENT)).empty
