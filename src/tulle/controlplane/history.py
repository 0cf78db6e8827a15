"""Rollback to an earlier store revision: `POST /v1/rollback`.

The state right after the chosen revision is computed from the history (see
:mod:`tulle.store.timeline`) and applied through the normal validated path as one new
transaction, so a rollback is itself a revision that can be rolled back. If the restored state
does not validate against the mesh as it is now (a route to a service that is gone), nothing
changes.

Body: ``{"revision": N, "dryRun": false}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from tulle.errors import ConfigError, NotFoundError, UsageError
from tulle.store.base import Store
from tulle.store.timeline import RestorePlan, plan_restore, state_at

if TYPE_CHECKING:
    from tulle.controlplane.app import ControlPlane


def register(router: web.UrlDispatcher, cp: ControlPlane) -> None:
    async def rollback(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError as exc:
            raise UsageError("the request body must be JSON",
                             hint='send {"revision": N, "dryRun": false}') from exc
        return web.json_response(rollback_to(cp, body))

    router.add_post("/v1/rollback", rollback)


def rollback_to(cp: ControlPlane, body: Any) -> dict[str, Any]:
    revision = _revision(body)
    dry_run = bool(body.get("dryRun", False))
    plan = restore_plan(cp.store, revision)
    manifests = [m for _, m in plan.create] + [then for _, _, then in plan.update]
    deletes = [key for key, _ in plan.delete]
    warnings: list[Any] = []
    new_revision = None
    if not plan.empty:
        try:
            results, warnings = cp.resources.replace(
                manifests, deletes, source=f"revision {revision}", dry_run=dry_run)
        except ConfigError as exc:
            count = len(exc.problems)
            raise ConfigError(exc.problems, message=(
                f"cannot restore revision {revision}: {count} problem"
                f"{'s' if count != 1 else ''} with the restored state; nothing was changed"
            )) from exc
        changed = [r.revision for r in results if r.action != "unchanged"]
        new_revision = max(changed) if changed else None
    return {"revision": revision, "dryRun": dry_run, "newRevision": new_revision,
            "storeRevision": cp.store.revision(), "changes": plan_view(plan),
            "warnings": [w.to_dict() for w in warnings]}


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


def plan_view(plan: RestorePlan) -> list[dict[str, Any]]:
    def entry(key: Any, action: str, before: Any, after: Any) -> dict[str, Any]:
        return {"kind": key.kind, "namespace": key.namespace, "name": key.name,
                "action": action, "before": before, "after": after}

    return ([entry(k, "created", None, m) for k, m in plan.create]
            + [entry(k, "configured", now, then) for k, now, then in plan.update]
            + [entry(k, "deleted", m, None) for k, m in plan.delete])


def _revision(body: Any) -> int:
    value = body.get("revision") if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"revision must be a whole number, not {value!r}",
                         hint="pick one from `tulle history`")
    return value
