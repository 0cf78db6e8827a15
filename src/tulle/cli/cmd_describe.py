"""`tulle describe service NAME`: the routes and policies in force, and their sources."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tulle.cli import complete
from tulle.cli.output import Format, OutputOption, emit, table
from tulle.client import ApiClient

describe = typer.Typer(help="What is in force for a resource, and where it comes from.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(describe, name="describe")
    for alias in ("svc", "services"):  # the short names `tulle get` accepts
        describe.command(alias, hidden=True)(service)


@describe.command()
def service(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Service name",
                                        autocompletion=complete.services)],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    output: OutputOption = Format.TABLE,
) -> None:
    """Instances, routes (in match order), policies and subsets of a service."""
    data = ApiClient.from_state(ctx.obj.paths).get(f"/v1/services/{namespace}/{name}/describe")
    emit(data, output, _text)


def _routes_table(routes: list[dict[str, Any]]) -> str:
    rows = []
    for number, route in enumerate(routes, 1):
        backends = ", ".join(f"{b['service']} ({b['weight']})" for b in route["backends"]) \
            or "redirect"
        rows.append((number, route["match"], backends, "; ".join(route["details"]),
                     f"{route['from'] or 'default'} {route['rule']}"))
    return table(("#", "MATCH", "BACKENDS (WEIGHT)", "DETAILS", "FROM"), rows)


def _text(d: dict[str, Any]) -> str:
    origin = d["declaredBy"] or "derived from its workloads"
    protocol = d["protocol"]
    if d.get("protocolSource") == "detected":
        protocol += " detected: each hop speaks the caller's HTTP version (1.1 or h2c)"
    lines = [f"Service {d['name']}.{d['namespace']} ({protocol}, mTLS {d['mtlsMode']}; "
             f"{origin})"]
    if d["selector"]:
        lines.append("Selector: " + ", ".join(f"{k}={v}" for k, v in d["selector"].items()))
    instances = ", ".join(
        f"{i['name']} ({i['version'] or 'no version'}, {i['state']}"
        + (f": {i['stateReason']}" if i.get("stateReason") else "") + ")"
        for i in d["instances"])
    lines.append(f"Instances: {instances or 'none'}")
    lines.append("Identities: " + (", ".join(d["identities"]) or "-"))
    lines += ["", "Routes, in match order:", _routes_table(d["routes"])]
    if d.get("routesInDryRun"):
        trial = d["routesInDryRun"]
        lines += ["", f"Routes with {', '.join(trial['trying'])} in force (dry run: tried, "
                      "not in force; `tulle stat` counts what they would do):",
                  _routes_table(trial["routes"])]
    lines += ["", "Policies:"]
    lines.append(table(("SETTING", "VALUE", "FROM"), [
        (p["setting"], json.dumps(p["value"], separators=(",", ":")), p["from"])
        for p in d["policy"]]) if d["policy"] else "  none")
    authz = d.get("authorization") or {}
    lines += ["", "Authorization, in the order it decides:"]
    lines.append(table(("ACTION", "RULE", "FROM"), [
        (r["action"], r["rule"], r["from"]) for r in authz.get("rules", ())])
        if authz.get("rules") else "  no rules")
    lines.append(f"  any other call: {authz.get('unmatched', 'ALLOW')}"
                 + (f" (from {authz['unmatchedFrom']})" if authz.get("unmatchedFrom") else ""))
    if authz.get("dryRun"):
        trial = ", ".join(f"{r['action']} {r['from']} rule {r['rule']}"
                          for r in authz["dryRun"]["rules"])
        lines.append(f"  in dry run (enforced nowhere): {trial or 'no rules'}; any other "
                     f"call: {authz['dryRun']['unmatched']}")
    if d["subsets"]:
        lines += ["", "Subsets: " + ", ".join(
            f"{s['name']} ({', '.join(f'{k}={v}' for k, v in s['selector'].items())})"
            for s in d["subsets"])]
    if d["backendOf"]:
        lines.append("Backend of: " + ", ".join(d["backendOf"]))
    for slo in d.get("objectives", ()):
        lines.append(f"Objective {slo['name']} ({slo['target']}): "
                     + "; ".join(slo["indicators"]) + f", over {slo['window']} (`tulle slo`)")
    for rollout in d.get("rollouts", ()):
        lines.append(f"Rollout {rollout['name']}: {rollout['stable']} -> {rollout['canary']}, "
                     f"{rollout['phase']} at step {rollout['step'] or '-'}/{rollout['steps']}, "
                     f"{rollout['weight']} % to {rollout['canary']} (`tulle rollout status "
                     f"{rollout['name']}`)")
    for conflict in d["conflicts"]:
        lines.append(f"conflict: {conflict['setting']} from {conflict['ignored']} is ignored; "
                     f"{conflict['kept']} sets it first")
    return "\n".join(lines)
