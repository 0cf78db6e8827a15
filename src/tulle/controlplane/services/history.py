"""The store's history, and rollback to an earlier revision.

The state right after the chosen revision is computed from the history (see
:mod:`tulle.store.timeline`) and applied through the normal validated path as one new
transaction, so a rollback is itself a revision that can be rolled back. If the restored state
does not validate against the mesh as it is now (a route to a service that is gone), nothing
changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from tulle.analysis.engine import Message
from tulle.controlplane.services.resources import ResourceService
from tulle.errors import ConfigError, NotFoundError
from tulle.model.meta import ResourceKey
from tulle.store.base import Change, Store
from tulle.store.timeline import RestorePlan, plan_restore, state_at


@dataclass(frozen=True)
class Rollback:
    revision: int  # the state restored is the one right after this revision
    dry_run: bool
    new_revision: int | None  # None: nothing changed (or a dry run)
    store_revision: int
    plan: RestorePlan
    warnings: tuple[Message, ...]


class HistoryService:
    def __init__(self, store: Store, resources: ResourceService) -> None:
        self._store = store
        self._resources = resources

    def changes(self, key: ResourceKey | None, limit: int) -> list[Change]:
        return self._store.history(key, limit=limit)

    def rollback(self, revision: int, *, dry_run: bool) -> Rollback:
        plan = restore_plan(self._store, revision)
        manifests = [m for _, m in plan.create] + [then for _, _, then in plan.update]
        deletes = [key for key, _ in plan.delete]
        warnings: tuple[Message, ...] = ()
        new_revision = None
        if not plan.empty:
            try:
                results, found = self._resources.replace(
                    manifests, deletes, source=f"revision {revision}", dry_run=dry_run)
            except ConfigError as exc:
                count = len(exc.problems)
                raise ConfigError(exc.problems, message=(
                    f"cannot restore revision {revision}: {count} problem"
                    f"{'s' if count != 1 else ''} with the restored state; nothing was changed"
                )) from exc
            warnings = tuple(found)
            changed = [r.revision for r in results if r.action != "unchanged"]
            new_revision = max(changed) if changed else None
        return Rollback(revision, dry_run, new_revision, self._store.revision(), plan,
                        warnings)


def restore_plan(store: Store, revision: int) -> RestorePlan:
    """What restoring the state right after ``revision`` changes, or a clear error."""
    latest = store.revision()
    if revision < 1 or revision > latest:
        raise NotFoundError(f"revision {revision} does not exist",
                            hint=f"revisions run from 1 to {latest}; list them with "
                                 "`tulle history`" if latest else
                                 "nothing has been applied yet")
    oldest = store.oldest_revision()
    if revision < oldest - 1:
        raise NotFoundError(f"revision {revision} is older than the kept history "
                            f"(the oldest kept revision is {oldest})",
                            hint=f"roll back to revision {oldest - 1} or later; list them with "
                                 "`tulle history`")
    current = {s.key: s.manifest for s in store.resources()}
    target = state_at(current, store.changes_after(revision))
    return plan_restore(revision, current, target)
