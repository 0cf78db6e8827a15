"""The store's state at an earlier revision, computed from its history (pure, no I/O).

Every change records the manifest before and after it, so undoing the changes made after a
revision, newest first, gives the state as it was right after that revision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tulle.model.meta import ResourceKey
from tulle.store.base import Change

Manifests = Mapping[ResourceKey, Mapping[str, Any]]


@dataclass(frozen=True)
class RestorePlan:
    """What restoring an earlier state does to the current one."""

    revision: int
    create: tuple[tuple[ResourceKey, Mapping[str, Any]], ...]
    update: tuple[tuple[ResourceKey, Mapping[str, Any], Mapping[str, Any]], ...]  # key, now, then
    delete: tuple[tuple[ResourceKey, Mapping[str, Any]], ...]

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def state_at(current: Manifests, changes_after: Iterable[Change]) -> dict[ResourceKey,
                                                                           Mapping[str, Any]]:
    """The resources as they were before ``changes_after`` (every change made since), given
    the ``current`` resources."""
    state = dict(current)
    ordered = sorted(changes_after, key=lambda c: c.revision)
    for change in reversed(ordered):
        if change.before is None:
            state.pop(change.key, None)
        else:
            state[change.key] = change.before
    return state


def plan_restore(revision: int, current: Manifests, target: Manifests) -> RestorePlan:
    """The creates, updates and deletes that turn ``current`` into ``target``."""
    create = tuple((k, target[k]) for k in sorted(target) if k not in current)
    update = tuple((k, current[k], target[k]) for k in sorted(target)
                   if k in current and dict(current[k]) != dict(target[k]))
    delete = tuple((k, current[k]) for k in sorted(current) if k not in target)
    return RestorePlan(revision, create, update, delete)


def later_changes(revision: int, changes_since: Iterable[Change]
                  ) -> dict[ResourceKey, tuple[int, ...]]:
    """For each resource ``revision`` changed, the later revisions that changed it again
    (``changes_since``: the changes made at ``revision`` and after it)."""
    changes = list(changes_since)
    touched = {c.key for c in changes if c.revision == revision}
    later: dict[ResourceKey, set[int]] = {}
    for change in changes:
        if change.revision > revision and change.key in touched:
            later.setdefault(change.key, set()).add(change.revision)
    return {key: tuple(sorted(revisions)) for key, revisions in sorted(later.items())}


def plan_revert(revision: int, current: Manifests, changes_since: Iterable[Change]
                ) -> RestorePlan:
    """The inverse of the changes made at ``revision``, and nothing else: a create becomes a
    delete, an update restores the spec from before it, a delete re-creates the resource.

    The caller checks :func:`later_changes` first: once a later revision changed the same
    resource, its inverse would silently undo that later change too."""
    create: list[tuple[ResourceKey, Mapping[str, Any]]] = []
    update: list[tuple[ResourceKey, Mapping[str, Any], Mapping[str, Any]]] = []
    delete: list[tuple[ResourceKey, Mapping[str, Any]]] = []
    for change in sorted((c for c in changes_since if c.revision == revision),
                         key=lambda c: c.key):
        now = current.get(change.key)
        if change.before is None:
            if now is not None:
                delete.append((change.key, now))
        elif now is None:
            create.append((change.key, change.before))
        elif dict(now) != dict(change.before):
            update.append((change.key, now, change.before))
    return RestorePlan(revision, tuple(create), tuple(update), tuple(delete))
