"""The state at an earlier revision, from the current state and the history after it."""

from __future__ import annotations

from typing import Any

import pytest

from tulle.model.meta import ResourceKey
from tulle.store.base import Change
from tulle.store.timeline import later_changes, plan_restore, plan_revert, state_at

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


def since(revision: int) -> list[Change]:
    return [c for c in HISTORY if c.revision >= revision]


@pytest.mark.parametrize(("revision", "later"), [
    (5, {}),
    (4, {}),
    (3, {R: (5,)}),  # B created at 3 is untouched since; R was updated again at 5
    (2, {R: (3, 5)}),
    (1, {A: (4,)}),
])
def test_later_changes_name_each_resource_and_revision(
        revision: int, later: dict[ResourceKey, tuple[int, ...]]) -> None:
    assert later_changes(revision, since(revision)) == later


def test_revert_of_an_update_restores_the_spec_from_before_it() -> None:
    plan = plan_revert(5, CURRENT, since(5))
    assert plan.update == ((R, m(R, 3), m(R, 2)),)
    assert not plan.create and not plan.delete


def test_revert_of_a_delete_recreates_and_of_a_create_deletes() -> None:
    assert plan_revert(4, CURRENT, since(4)).create == ((A, m(A, 1)),)
    # Revision 3 created B and updated R; R's later change is the caller's conflict to
    # refuse, the inverse itself only ever touches what revision 3 changed.
    plan = plan_revert(3, CURRENT, since(3))
    assert plan.delete == ((B, m(B, 1)),)
    assert [key for key, _, _ in plan.update] == [R]
    assert all(key in {B, R} for key, *_ in (*plan.create, *plan.update, *plan.delete))


def test_revert_of_a_change_already_undone_is_empty() -> None:
    undone = {**CURRENT, R: m(R, 2)}
    assert plan_revert(5, undone, since(5)).empty
