"""`tulle policy promote NAME`: enforce a policy that runs in dry run."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from tulle.cli import complete
from tulle.cli.messages import render_warnings
from tulle.cli.output import Format, OutputOption, emit
from tulle.client import ApiClient
from tulle.errors import StateError, UsageError

policy = typer.Typer(help="Policies in dry run: see them in `tulle stat`, then promote them.",
                     no_args_is_help=True)

PROMOTABLE = "authorizationpolicy"


def register(app: typer.Typer) -> None:
    app.add_typer(policy, name="policy")


@policy.command()
def promote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The AuthorizationPolicy in dry run",
                                        autocompletion=complete.names)],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    output: OutputOption = Format.TABLE,
) -> None:
    """Enforce an AuthorizationPolicy that runs with spec.mode: DryRun. The change is an
    apply like any other: recorded in history, undone with `tulle rollback`."""
    client = ApiClient.from_state(ctx.obj.paths)
    path = f"/v1/resources/{PROMOTABLE}/{namespace}/{name}"
    manifest: dict[str, Any] = client.get(path)["manifest"]
    where = f"AuthorizationPolicy {namespace}/{name}"
    if manifest.get("spec", {}).get("mode", "Enforce") != "DryRun":
        raise UsageError(f"{where} is enforced already (spec.mode is not DryRun)",
                         hint="`tulle get authorizationpolicies` shows each policy's mode")
    promoted = {**manifest, "spec": {**manifest["spec"], "mode": "Enforce"}}
    # Apply replaces the whole resource: make sure it is still what was read.
    if client.get(path)["manifest"] != manifest:
        raise StateError(f"{where} changed while it was being promoted",
                         hint=f"run `tulle policy promote {name} -n {namespace}` again")
    result = client.post("/v1/resources/apply", {"documents": [
        {"source": f"tulle policy promote {name}", "manifest": promoted}]})
    emit(result, output, lambda r: f"authorizationpolicy/{name} ({namespace}) promoted: "
                                   "enforced from now on")
    if result.get("warnings"):
        print(render_warnings(result["warnings"], "promote"), file=sys.stderr)
