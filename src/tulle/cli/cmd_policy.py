"""`tulle policy promote NAME`: enforce a policy or an HTTPRoute that runs in dry run."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from tulle.cli import complete
from tulle.cli.messages import render_warnings
from tulle.cli.output import Format, OutputOption, emit
from tulle.client import ApiClient
from tulle.errors import NotFoundError, StateError, UsageError
from tulle.model.route_trials import IN_FORCE

policy = typer.Typer(help="Policies in dry run: see them in `tulle stat`, then promote them.",
                     no_args_is_help=True)

PROMOTABLE = ("AuthorizationPolicy", "TrafficPolicy", "HTTPRoute")


def register(app: typer.Typer) -> None:
    app.add_typer(policy, name="policy")


@policy.command()
def promote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The policy in dry run",
                                        autocompletion=complete.names)],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    kind: Annotated[str | None, typer.Option(
        "--kind", help="AuthorizationPolicy, TrafficPolicy or HTTPRoute, when more than one "
                       "has this name")] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Enforce what runs with spec.mode: DryRun: an AuthorizationPolicy, a TrafficPolicy's
    rate limit, or an HTTPRoute (callers route by it from then on). The change is an apply
    like any other: recorded in history, undone with `tulle rollback`."""
    client = ApiClient.from_state(ctx.obj.paths)
    kinds = [k for k in PROMOTABLE if kind is None or k.lower() == kind.lower()]
    if not kinds:
        raise UsageError(f"--kind {kind!r}: only {', '.join(PROMOTABLE)} have a dry run")
    found = {}
    for candidate in kinds:
        try:
            found[candidate] = client.get(f"/v1/resources/{candidate.lower()}/{namespace}/{name}")
        except NotFoundError:
            continue
    if not found:
        raise NotFoundError(f"no {' or '.join(kinds)} {namespace}/{name}",
                            hint="`tulle get authorizationpolicies`, `tulle get "
                                 "trafficpolicies` and `tulle get httproutes` list them")
    if len(found) > 1:
        raise UsageError(f"{' and '.join(found)} are all named {namespace}/{name}",
                         hint="say which with --kind")
    [(chosen, stored)] = found.items()
    manifest: dict[str, Any] = stored["manifest"]
    where = f"{chosen} {namespace}/{name}"
    if manifest.get("spec", {}).get("mode", "Enforce") != "DryRun":
        raise UsageError(f"{where} is enforced already (spec.mode is not DryRun)",
                         hint=f"`tulle get {chosen.lower()} {name} -n {namespace} -o yaml` "
                              "shows it")
    # An HTTPRoute's version in force goes with its dry run (route_trials.py).
    metadata = dict(manifest["metadata"])
    annotations = {k: v for k, v in metadata.pop("annotations", {}).items() if k != IN_FORCE}
    if annotations:
        metadata["annotations"] = annotations
    promoted = {**manifest, "metadata": metadata,
                "spec": {**manifest["spec"], "mode": "Enforce"}}
    path = f"/v1/resources/{chosen.lower()}/{namespace}/{name}"
    # Apply replaces the whole resource: make sure it is still what was read.
    if client.get(path)["manifest"] != manifest:
        raise StateError(f"{where} changed while it was being promoted",
                         hint=f"run `tulle policy promote {name} -n {namespace}` again")
    result = client.post("/v1/resources/apply", {"documents": [
        {"source": f"tulle policy promote {name}", "manifest": promoted}]})
    emit(result, output, lambda r: f"{chosen.lower()}/{name} ({namespace}) promoted: "
                                   + ("callers route by it from now on" if chosen == "HTTPRoute"
                                      else "enforced from now on"))
    if result.get("warnings"):
        print(render_warnings(result["warnings"], "promote"), file=sys.stderr)
