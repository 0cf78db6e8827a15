"""`tulle history` and `tulle rollback`: applied changes, restoring an earlier state, and
reverting one change."""

from __future__ import annotations

import difflib
import sys
import time
from collections.abc import Mapping
from typing import Annotated, Any

import typer
import yaml

from tulle.cli.messages import render_warnings
from tulle.cli.output import Format, OutputOption, emit
from tulle.client import ApiClient
from tulle.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command()(history)
    app.command()(rollback)


def history(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Argument(help="Only this kind (with NAME)")] = None,
    name: Annotated[str | None, typer.Argument(help="Only this resource")] = None,
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many changes")
                     ] = 100,
    output: OutputOption = Format.TABLE,
) -> None:
    """Every applied change, newest first: revision, time, action, resource and its diff."""
    query: dict[str, Any] = {"limit": limit}
    if kind is not None:
        if name is None:
            raise UsageError("history KIND needs a NAME too",
                             hint="e.g. `tulle history httproute books`; without both, "
                                  "every change is shown")
        query.update(_resource_query(kind, name, namespace))
    changes = ApiClient.from_state(ctx.obj.paths).get("/v1/history", query)
    emit(changes, output, render_history)


def rollback(
    ctx: typer.Context,
    revision: Annotated[int | None, typer.Argument(
        help="Restore the state right after this revision (see `tulle history`)")] = None,
    revert: Annotated[int | None, typer.Option(
        "--revert", metavar="REVISION",
        help="Undo only the change made at REVISION (its inverse), nothing else")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; "
                                          "change nothing")] = False,
    output: OutputOption = Format.TABLE,
) -> None:
    """Restore every resource as it was right after REVISION, as one new revision; or, with
    --revert REVISION, undo exactly the change made at REVISION."""
    if (revision is None) == (revert is None):
        raise UsageError("give either REVISION (restore the state right after it) or "
                         "--revert REVISION (undo only that change)",
                         hint="e.g. `tulle rollback --revert 7 --dry-run`; list the "
                              "revisions with `tulle history`")
    path, number = ("/v1/revert", revert) if revert is not None else ("/v1/rollback", revision)
    result = ApiClient.from_state(ctx.obj.paths).post(
        path, {"revision": number, "dryRun": dry_run})
    emit(result, output, render_rollback)
    if result.get("warnings"):
        what = "revert" if revert is not None else "rollback"
        print(render_warnings(result["warnings"], what + (" (dry run)" if dry_run else "")),
              file=sys.stderr)


def _resource_query(kind: str, name: str, namespace: str) -> dict[str, str]:
    from tulle.model.kinds import KINDS, find_kind

    info = find_kind(kind)
    if info is None:
        raise UsageError(f'unknown resource kind "{kind}"',
                         hint="kinds: " + ", ".join(k.plural for k in KINDS))
    return {"kind": info.kind, "name": name,
            "namespace": namespace if info.namespaced else ""}


# -- rendering (pure) -------------------------------------------------------------------------

def manifest_diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
                  label: str) -> list[str]:
    """A unified diff of the YAML of a resource before and after a change."""
    def lines(manifest: Mapping[str, Any] | None) -> list[str]:
        if manifest is None:
            return []
        return yaml.safe_dump(dict(manifest), sort_keys=False,
                              default_flow_style=False).splitlines()

    return list(difflib.unified_diff(lines(before), lines(after),
                                     fromfile=f"{label} (before)" if before else "/dev/null",
                                     tofile=f"{label} (after)" if after else "/dev/null",
                                     lineterm=""))


def _label(change: Mapping[str, Any]) -> str:
    where = f"{change['namespace']}/" if change.get("namespace") else ""
    return f"{change['kind']} {where}{change['name']}"


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def render_history(changes: list[dict[str, Any]]) -> str:
    if not changes:
        return "No changes yet."
    blocks = []
    for change in changes:
        head = (f"REVISION {change['revision']}  {_when(change['at'])}  "
                f"{change['action']}  {_label(change)}")
        diff = manifest_diff(change.get("before"), change.get("after"), _label(change))
        blocks.append("\n".join([head, *("    " + line for line in diff)]))
    return "\n\n".join(blocks)


def render_rollback(result: dict[str, Any]) -> str:
    revision = result["revision"]
    changes = result["changes"]
    revert = result.get("mode") == "revert"
    if not changes:
        if revert:
            return f"The changes of revision {revision} are already undone; nothing to change."
        return f"The resources are already as they were after revision {revision}; " \
               "nothing to change."
    if result["dryRun"]:
        what = f"Reverting revision {revision}" if revert \
            else f"Rolling back to revision {revision}"
        lines = [f"{what} would change (dry run, nothing changed):"]
    elif revert:
        lines = [f"Reverted revision {revision} as new revision {result['newRevision']}:"]
    else:
        lines = [f"Rolled back to revision {revision} as new revision "
                 f"{result['newRevision']}:"]
    for change in changes:
        where = f" ({change['namespace']})" if change["namespace"] else ""
        lines.append(f"  {change['kind'].lower()}/{change['name']}{where} {change['action']}")
    if result["dryRun"]:
        for change in changes:
            diff = manifest_diff(change["before"], change["after"], _label(change))
            lines += ["", *("    " + line for line in diff)]
    return "\n".join(lines)
