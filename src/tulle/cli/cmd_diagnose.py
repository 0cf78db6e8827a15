"""`tulle diagnose`: live evidence, ranked findings, each with a fix.

The control plane gathers the evidence and runs the rules (``GET /v1/diagnose``); this
command renders them. Exit code 0 when nothing is wrong, 1 when there is a finding. When the
control plane itself cannot be reached, that is the finding, not a stack trace: TUL1016 when
it is not running, TUL1090 when its process is alive but does not answer (frozen). Either way
the command answers within its deadline: the control plane reads sidecars with deadlines of
its own, well inside ours.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tulle.cli.output import Format, OutputOption, emit
from tulle.client import ApiClient
from tulle.diagnose.model import Finding, Scope, Severity
from tulle.errors import ControlPlaneUnavailable, StateError
from tulle.local import STOPPED_STATES, process_state, state_lock_held, state_lock_pid
from tulle.settings import StatePaths

# The control plane gives its sidecars 2.5 s at most; the rest is rules and the round trip.
DIAGNOSE_TIMEOUT_S = 8.0


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
    scope = Scope(namespace, service, source, destination)
    stopped = _stopped_controlplane(paths)
    if stopped is not None:  # it cannot answer: no need to wait for a timeout to say so
        report = unreachable_report(paths, ControlPlaneUnavailable(
            f"its process (pid {stopped}) is stopped"), scope)
    else:
        try:
            report = ApiClient.from_state(paths, timeout=DIAGNOSE_TIMEOUT_S).get(
                "/v1/diagnose", query)
        except (ControlPlaneUnavailable, StateError) as exc:
            report = unreachable_report(paths, exc, scope)
    emit(report, output, render)
    if report["findings"]:
        raise typer.Exit(1)


def _stopped_controlplane(paths: StatePaths) -> int | None:
    """The pid of this state directory's control plane when it is stopped (SIGSTOP)."""
    pid = state_lock_pid(paths)
    if pid is None or not state_lock_held(paths):
        return None
    return pid if process_state(pid)[0] in STOPPED_STATES else None


def unreachable_report(paths: StatePaths, error: Exception, scope: Scope) -> dict[str, Any]:
    """The report when the control plane cannot be asked: that is the top finding. Whether
    it runs is the state directory's lock (held by the live control plane, released by the
    kernel when it dies), not the pid in the lock file, which a dead one leaves behind."""
    evidence = [f"state directory: {paths.root}"
                + ("" if paths.root.exists() else " (does not exist)")]
    pid = state_lock_pid(paths)
    held = state_lock_held(paths) if paths.root.exists() else False
    state, command = process_state(pid) if pid is not None else ("", "")
    if pid is None:
        evidence.append(f"pid file {paths.lock_file}: absent or empty")
    elif not held:
        evidence.append(f"pid file {paths.lock_file}: pid {pid}, left by a control plane "
                        "that is gone (the lock is free)"
                        + (f"; that pid is now another process ({command[:60]})"
                           if state else "; no such process"))
    log_line = [f"log: {paths.log_file}"] if paths.log_file.exists() else []
    if held and pid is not None and state not in ("", "Z", "X"):
        frozen = state in STOPPED_STATES
        finding = Finding(
            "TUL1090", Severity.CRITICAL, 100.0, "mesh/controlplane",
            f"The control plane (pid {pid}) is running but does not answer"
            + (": its process is stopped (SIGSTOP, Ctrl-Z or a debugger)." if frozen
               else ": it is stuck or overloaded.")
            + " Nothing can be diagnosed and no sidecar gets new configuration, though "
            "sidecars keep serving their last one.",
            (*evidence, f"pid {pid} holds the state directory's lock: state {state}"
             + (" (stopped)" if frozen else "") + f", command {command[:80]}",
             f"connection: {error}", *log_line),
            f"resume it: `kill -CONT {pid}`" if frozen else
            f"read {paths.log_file}; if it stays stuck, restart it: `tulle down && tulle up` "
            f"(or `kill {pid}` then `tulle up`)")
    else:
        finding = Finding(
            "TUL1016", Severity.CRITICAL, 100.0, "mesh/controlplane",
            "The control plane is not running: nothing can be diagnosed and no sidecar gets "
            "new configuration, though sidecars keep serving their last one.",
            (*evidence, f"connection: {error}", *log_line),
            f"start it with `tulle up` (state directory {paths.root}); if it crashed, read "
            f"{paths.log_file} first")
    return {"scope": scope.to_dict(), "windowSeconds": None, "findings": [finding.to_dict()],
            "ruleErrors": [], "gathered": {"controlPlane": "unreachable"}}


# -- rendering ---------------------------------------------------------------------------------

def based_on(gathered: dict[str, Any]) -> str:
    """What a report rests on: "7/7 sidecars read fresh; reports 0.4-2.1s old"."""
    asked = gathered.get("proxiesAsked")
    if asked is None:  # a control plane from before fresh reports
        return f"{gathered.get('proxiesRead', 0)} sidecars read"
    text = f"{len(gathered.get('proxiesFresh', []))}/{len(asked)} sidecars read fresh"
    newest, oldest = gathered.get("newestReportSeconds"), gathered.get("oldestReportSeconds")
    if newest is not None and oldest is not None:
        text += f"; reports {newest:.1f}-{oldest:.1f}s old"
    return text


def _missing_lines(gathered: dict[str, Any]) -> list[str]:
    lines = []
    for missing in gathered.get("proxiesMissing", []):
        age = missing.get("lastReportSeconds")
        lines.append(f"  - {missing['proxy']}: {missing['reason']}; "
                     + ("never reported" if age is None else f"last report {age:.1f}s old"))
    if gathered.get("historyUnreadable"):
        lines.append(f"  - the change history: {gathered['historyUnreadable']} (findings "
                     "about recent changes could not be made)")
    return lines


def render(report: dict[str, Any]) -> str:
    findings = report["findings"]
    gathered = report.get("gathered", {})
    window = report.get("windowSeconds")
    missing = _missing_lines(gathered)
    if not findings:
        summary = (f"in the last {window:g}s of traffic: {gathered.get('services', 0)} "
                   f"services, {gathered.get('workloads', 0)} workloads; {based_on(gathered)}.")
        if not missing:
            return f"No problems found {summary}"
        # Never "everything is fine" on partial evidence: say what could not be read.
        return "\n".join([f"No problems found in the evidence read, but it is incomplete "
                          f"{summary}", "Could not read fresh evidence from:", *missing])
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
    if window:
        lines += ["", f"based on: {based_on(gathered)}"]
    if missing:
        lines += ["could not read fresh evidence from:", *missing]
    return "\n".join(lines)
