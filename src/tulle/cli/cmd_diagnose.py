"""`tulle diagnose`: live evidence, ranked findings, each with a fix.

The control plane gathers the evidence and runs the rules (``GET /v1/diagnose``); this
command renders them. Exit code 0 when nothing is wrong, 1 when there is a finding. When the
control plane itself cannot be reached, that is the finding (TUL1016), not a stack trace.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from tulle.cli.output import Format, OutputOption, emit
from tulle.client import ApiClient
from tulle.diagnose.model import Finding, Scope, Severity
from tulle.errors import ControlPlaneUnavailable, StateError
from tulle.settings import StatePaths


def register(app: typer.Typer) -> None:
    app.command("diagnose")(diagnose)


def diagnose(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Argument(
        help="Look at this service (NAME or NAME.NAMESPACE); the whole mesh without it")] = None,
    source: Annotated[str | None, typer.Option(
        "--from", help="Only the edge from this workload or service...")] = None,
    destination: Annotated[str | None, typer.Option(
        "--to", help="...to this workload or service")] = None,
    namespace: Annotated[str | None, typer.Option("-n", "--namespace")] = None,
    window: Annotated[str, typer.Option(
        "--window", help="How much recent telemetry to read: 30s, 1m, 5m (at most 15m)")] = "1m",
    output: OutputOption = Format.TABLE,
) -> None:
    """Find what is wrong now, rank the causes first, and say how to fix each."""
    paths: StatePaths = ctx.obj.paths
    query = {"service": service, "from": source, "to": destination,
             "namespace": namespace, "window": window}
    try:
        report: dict[str, Any] = ApiClient.from_state(paths, timeout=60.0).get(
            "/v1/diagnose", query)
    except (ControlPlaneUnavailable, StateError) as exc:
        report = unreachable_report(paths, exc, Scope(namespace, service, source, destination))
    emit(report, output, render)
    if report["findings"]:
        raise typer.Exit(1)


def unreachable_report(paths: StatePaths, error: Exception, scope: Scope) -> dict[str, Any]:
    """The report when the control plane cannot be asked: that is the top finding."""
    evidence = [f"state directory: {paths.root}"
                + ("" if paths.root.exists() else " (does not exist)")]
    from tulle.local import state_lock_pid

    pid = state_lock_pid(paths)
    if pid is None:
        evidence.append(f"pid file {paths.lock_file}: absent or empty")
    else:
        evidence.append(f"pid file {paths.lock_file}: pid {pid}, "
                        + ("running" if _alive(pid) else "no such process"))
    evidence.append(f"connection: {error}")
    if paths.log_file.exists():
        evidence.append(f"log: {paths.log_file}")
    finding = Finding(
        "TUL1016", Severity.CRITICAL, 100.0, "mesh/controlplane",
        "The control plane is not running or does not answer: nothing can be diagnosed and "
        "no sidecar gets new configuration, though sidecars keep serving their last one.",
        tuple(evidence),
        f"start it with `tulle up` (state directory {paths.root}); if it crashed, read "
        f"{paths.log_file} first")
    return {"scope": scope.to_dict(), "windowSeconds": None, "findings": [finding.to_dict()],
            "ruleErrors": [], "gathered": {"controlPlane": "unreachable"}}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- rendering ---------------------------------------------------------------------------------

def render(report: dict[str, Any]) -> str:
    findings = report["findings"]
    gathered = report.get("gathered", {})
    window = report.get("windowSeconds")
    if not findings:
        return (f"No problems found (last {window:g}s of traffic; "
                f"{gathered.get('services', 0)} services, {gathered.get('workloads', 0)} "
                f"workloads, {gathered.get('proxiesRead', 0)} sidecars read).")
    lines = [f"{len(findings)} finding{'s' if len(findings) != 1 else ''}, most likely cause "
             "first" + (f" (last {window:g}s of traffic)" if window else "") + ":"]
    for index, finding in enumerate(findings, 1):
        lines += ["", f"{index}. [{finding['severity'].upper()}] {finding['code']} "
                  f"{finding['subject']}", f"   {finding['cause']}"]
        if finding.get("explainedBy"):
            lines.append(f"   (a consequence of {', '.join(finding['explainedBy'])} above)")
        lines += [f"   - {line}" for line in finding["evidence"]]
        lines += [f"   fix: {finding['fix']}", f"   docs: {finding['docs']}"]
    for error in report.get("ruleErrors", ()):
        lines += ["", f"warning: a diagnosis rule failed (a bug in tulle): {error}"]
    failed = gathered.get("proxiesFailed") or []
    if failed:
        lines += ["", f"note: {len(failed)} sidecar(s) did not answer: {', '.join(failed[:5])}"]
    return "\n".join(lines)
