"""The store's history, rollback to an earlier revision, and the revert of one revision.

A rollback restores the state right after the chosen revision, computed from the history (see
:mod:`tulle.store.timeline`): every change made since is undone. A revert undoes the changes
of one revision only (its inverse), and refuses when a later revision changed the same
resource, since undoing it would then silently undo that later change too. Either is applied
through the normal validated path as one new transaction, so it is itself a revision that can
be undone. If the result does not validate against the mesh as it is now (a route to a service
that is gone), nothing changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from tulle.analysis.engine import Message
from tulle.controlplane.services.resources import ResourceService
from tulle.errors import ConfigError, ConflictError, NotFoundError
from tulle.model.meta import ResourceKey
from tulle.store.base import ApplyResult, Change, Store
from tulle.store.timeline import (
    RestorePlan,
    later_changes,
    plan_restore,
    plan_revert,
    state_at,
)

Mode = Literal["restore", "revert"]
T = TypeVar("T")


@dataclass(frozen=True)
class Rollback:
    revision: int  # restore: the state right after this revision; revert: the one undone
    dry_run: bool
    new_revision: int | None  # None: nothing changed (or a dry run)
    store_revision: int
    plan: RestorePlan
    warnings: tuple[Message, ...]
    mode: Mode = "restore"


class HistoryService:
    """``remote_io``: the store is remote (etcd): its reads and writes run in a thread, so
    the event loop goes on serving proxies and agents while etcd answers slowly or not at
    all (its quorum lost: up to 10 s before the error)."""

    def __init__(self, store: Store, resources: ResourceService,
                 remote_io: bool = False) -> None:
        self._store = store
        self._resources = resources
        self._remote_io = remote_io

    def changes(self, key: ResourceKey | None, limit: int) -> list[Change]:
        return self._store.history(key, limit=limit)

    async def changes_async(self, key: ResourceKey | None, limit: int) -> list[Change]:
        return await self._off_loop(self.changes, key, limit)

    async def rollback_async(self, revision: int, *, dry_run: bool) -> Rollback:
        """Restore every resource as it was right after ``revision``."""
        plan = await self._off_loop(restore_plan, self._store, revision)
        return await self._carry_out(plan, "restore", dry_run)

    async def revert_async(self, revision: int, *, dry_run: bool) -> Rollback:
        """Undo the changes made at ``revision``, and nothing else."""
        plan = await self._off_loop(revert_plan, self._store, revision)
        return await self._carry_out(plan, "revert", dry_run)

    async def _off_loop(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(call, *args) if self._remote_io else call(*args)

    async def _carry_out(self, plan: RestorePlan, mode: Mode, dry_run: bool) -> Rollback:
        results: list[ApplyResult] = []
        warnings: list[Message] = []
        if not plan.empty:
            manifests = [m for _, m in plan.create] + [then for _, _, then in plan.update]
            deletes = [key for key, _ in plan.delete]
            try:
                results, warnings = await self._resources.replace_async(
                    manifests, deletes, source=f"revision {plan.revision}", dry_run=dry_run)
            except ConfigError as exc:
                count = len(exc.problems)
                raise ConfigError(exc.problems, message=(
                    f"cannot {mode} revision {plan.revision}: {count} problem"
                    f"{'s' if count != 1 else ''} with the resulting state; nothing was "
                    "changed")) from exc
        changed = [r.revision for r in results if r.action != "unchanged"]
        return Rollback(plan.revision, dry_run, max(changed) if changed else None,
                        await self._off_loop(self._store.revision), plan, tuple(warnings),
                        mode)


def restore_plan(store: Store, revision: int) -> RestorePlan:
    """What restoring the state right after ``revision`` changes, or a clear error."""
    _check_exists(store, revision)
    oldest = store.oldest_revision()
    if revision < oldest - 1:
        raise NotFoundError(f"revision {revision} is older than the kept history "
                            f"(the oldest kept revision is {oldest})",
                            hint=f"roll back to revision {oldest - 1} or later; list them with "
                                 "`tulle history`")
    current = {s.key: s.manifest for s in store.resources()}
    target = state_at(current, store.changes_after(revision))
    return plan_restore(revision, current, target)


def revert_plan(store: Store, revision: int) -> RestorePlan:
    """The inverse of the changes made at ``revision``, or a clear error: the revision does
    not exist, its changes are no longer kept, or a later revision changed the same
    resource since (a conflict, naming the resource and that revision)."""
    _check_exists(store, revision)
    oldest = store.oldest_revision()
    if revision < oldest:
        raise NotFoundError(f"revision {revision} is older than the kept history "
                            f"(the oldest kept revision is {oldest})",
                            hint=f"revert revision {oldest} or later; list them with "
                                 "`tulle history`")
    since = store.changes_after(revision - 1)
    conflicts = later_changes(revision, since)
    if conflicts:
        described = "; ".join(
            f"{key} by revision{'s' if len(revs) > 1 else ''} "
            + ", ".join(str(r) for r in revs) for key, revs in conflicts.items())
        newest = max(r for revs in conflicts.values() for r in revs)
        raise ConflictError(
            f"cannot revert revision {revision}: a later revision changed the same "
            f"resource since ({described}); nothing was changed",
            hint=f"see them with `tulle history`; revert the later change first "
                 f"(`tulle rollback --revert {newest} --dry-run`), or restore a whole "
                 f"earlier state with `tulle rollback {revision - 1} --dry-run`")
    current = {s.key: s.manifest for s in store.resources()}
    return plan_revert(revision, current, since)


def _check_exists(store: Store, revision: int) -> None:
    latest = store.revision()
    if revision < 1 or revision > latest:
        raise NotFoundError(f"revision {revision} does not exist",
                            hint=f"revisions run from 1 to {latest}; list them with "
                                 "`tulle history`" if latest else
                                 "nothing has been applied yet")
