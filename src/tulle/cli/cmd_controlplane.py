"""`tulle up`, `tulle down`, `tulle status`: the control plane's lifecycle."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from tulle.cli.output import Format, OutputOption, age, emit, table
from tulle.errors import ControlPlaneUnavailable
from tulle.settings import StatePaths


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
    app.command()(status)


def up(
    ctx: typer.Context,
    foreground: Annotated[bool, typer.Option(
        "--foreground", help="Run in this process, logging to stderr (for supervisors and "
                             "containers)")] = False,
    api_port: Annotated[int | None, typer.Option(help="HTTP API port, 0 for any free one "
                                                      "[default: 15700, or the last one "
                                                      "used]")] = None,
    xds_port: Annotated[int | None, typer.Option(help="xDS (gRPC) port, 0 for any free one "
                                                      "[default: 15710, or the last one "
                                                      "used]")] = None,
    identity_port: Annotated[int | None, typer.Option(
        help="Port where agents get certificates, over TLS, 0 for any free one [default: "
             "15712, or the last one used]")] = None,
    trust_domain: Annotated[str | None, typer.Option(
        help="SPIFFE trust domain, fixed at first start [default: tulle.local]")] = None,
    join_token_ttl: Annotated[float | None, typer.Option(
        help="Seconds a workload's join token stays valid [default: 300]", hidden=True)
    ] = None,
    stale_after: Annotated[float | None, typer.Option(
        help="Seconds a push may stay un-ACKed (PENDING) before it counts as STALE "
             "(proxy-status, check, diagnose and /metrics report it) [default: 10]",
        min=0.5)] = None,
    store: Annotated[str | None, typer.Option(
        help="Where resources are kept: sqlite (store.db in the state directory), or an etcd "
             "cluster, etcd://HOST:PORT[,HOST:PORT...] (loopback only) or etcds://... (TLS) "
             "[default: sqlite, or the last one used]")] = None,
    etcd_ca: Annotated[str | None, typer.Option(
        help="etcds://: the CA file that signed etcd's server certificates")] = None,
    etcd_cert: Annotated[str | None, typer.Option(
        help="etcds://: this control plane's client certificate for etcd")] = None,
    etcd_key: Annotated[str | None, typer.Option(
        help="etcds://: the private key of --etcd-cert")] = None,
    ca_encryption_key: Annotated[str | None, typer.Option(
        help="Shared store: a file holding the key (32 bytes, base64: `openssl rand -base64 "
             "32`) that seals the CA's keys in the store; or set TULLE_CA_ENCRYPTION_KEY. "
             "Every replica needs the same one")] = None,
    listen: Annotated[str | None, typer.Option(
        help="An address of this host where agents on other hosts reach the xDS and identity "
             "ports (xDS then runs over TLS); the API stays on loopback [default: loopback "
             "only, or the last one used]")] = None,
    xds_workers: Annotated[int | None, typer.Option(
        help="Worker processes that serve the proxies' xDS streams, 0 to serve them in the "
             "control plane's own process [default: one per core but one, at least 1, at most 8]",
        min=0, max=64)] = None,
    history_keep: Annotated[int | None, typer.Option(
        help="How many of the newest revisions keep their changes for `tulle history` and "
             "`tulle rollback`; older ones are compacted away [default: 10000]",
        min=1)] = None,
    compact_every: Annotated[float | None, typer.Option(
        help="Seconds between compactions of the history and, on etcd, of etcd's own "
             "record of older values [default: 300]", min=1.0)] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Start the control plane (in the background unless --foreground)."""
    from tulle.controlplane import daemon

    paths = ctx.obj.paths
    current = daemon.running_status(paths)
    if current is not None:
        emit(current, output, lambda s: f"the control plane is already running "
                                         f"(pid {s['pid']}, API {s['apiUrl']})")
        return
    options = daemon.StartOptions(api_port=api_port, xds_port=xds_port,
                                  identity_port=identity_port, trust_domain=trust_domain,
                                  join_token_ttl_s=join_token_ttl,
                                  stale_after_s=stale_after, store=store, etcd_ca=etcd_ca,
                                  etcd_cert=etcd_cert, etcd_key=etcd_key,
                                  ca_encryption_key=ca_encryption_key, listen=listen,
                                  xds_workers=xds_workers, history_keep=history_keep,
                                  compact_every_s=compact_every)
    # A bad --store or --listen is refused here, before anything starts (exit 2, nothing
    # changed).
    daemon.resolve_store(paths, options)
    if listen is not None:
        daemon.listen_address(listen)
    if foreground:
        raise typer.Exit(daemon.run_foreground(paths, options))
    started = daemon.start_background(paths, options)
    emit(started, output, lambda s: "control plane started\n" + _status_table(s))
    for warning in started.get("warnings", ()):
        print(f"warning: {warning}", file=sys.stderr)


def down(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option(
        "--all", help="Stop the workloads started with `tulle run` too")] = False,
    output: OutputOption = Format.TABLE,
) -> None:
    """Stop the control plane. Workloads keep serving their last config until it is back, and
    are listed; with --all they are stopped first."""
    from tulle.controlplane import daemon

    paths = ctx.obj.paths
    _resume_if_stopped(paths)
    workloads = _running_workloads(paths)
    stopped_workloads = _stop_workloads(workloads) if all_ else []
    stopped = daemon.stop(paths)
    left = [w for w in workloads if w["name"] not in stopped_workloads]
    emit({"stopped": stopped, "workloadsStopped": stopped_workloads,
          "workloadsLeft": left}, output, _down_text)


def _running_workloads(paths: StatePaths) -> list[dict[str, Any]]:
    """The workloads registered with the control plane whose agent process still runs."""
    from tulle.client import ApiClient
    from tulle.errors import TulleError

    try:
        items = ApiClient.from_state(paths, timeout=2.0).get("/v1/workloads")
    except (TulleError, OSError):
        return []  # not running or not answering: nothing to list
    return [{"name": w["name"], "namespace": w["namespace"], "pid": w["pid"]}
            for w in items if w.get("pid") and _is_agent(int(w["pid"]))]


def _is_agent(pid: int) -> bool:
    """``pid`` is alive and runs tulle (a pid file or registration may outlive its process,
    and the number be reused)."""
    from pathlib import Path

    try:
        return b"tulle" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _stop_workloads(workloads: list[dict[str, Any]], timeout_s: float = 15.0) -> list[str]:
    """SIGTERM each workload's agent (it stops its application and sidecar, and sends its
    last report), then wait for them to exit. Returns the names that stopped."""
    import os
    import signal
    import time

    for workload in workloads:
        try:
            os.kill(int(workload["pid"]), signal.SIGTERM)
        except OSError:
            continue
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_is_agent(int(w["pid"])) for w in workloads):
        time.sleep(0.1)
    return [w["name"] for w in workloads if not _is_agent(int(w["pid"]))]


def _down_text(result: dict[str, Any]) -> str:
    lines = ["control plane stopped" if result["stopped"]
             else "the control plane was not running"]
    if result["workloadsStopped"]:
        lines.append(f"stopped {len(result['workloadsStopped'])} workload(s): "
                     + ", ".join(result["workloadsStopped"]))
    left = result["workloadsLeft"]
    if left:
        lines.append(f"{len(left)} workload(s) keep running and serving their last config "
                     "(they reconnect at the next `tulle up`):")
        lines += [f"  {w['name']}.{w['namespace']} (pid {w['pid']})" for w in left]
        lines.append("stop them with `tulle down --all`, or Ctrl-C where they run")
    return "\n".join(lines)


def status(ctx: typer.Context, output: OutputOption = Format.TABLE) -> None:
    """Show whether the control plane runs, where, and what it serves."""
    from tulle.controlplane import daemon

    paths = ctx.obj.paths
    current = daemon.running_status(paths)
    if current is None:
        raise _not_answering(paths) or ControlPlaneUnavailable(
            f"the control plane is not running (state directory {paths.root})",
            hint="start it with `tulle up`")
    emit(current, output, _status_table)


def _resume_if_stopped(paths: StatePaths) -> None:
    """A stopped process (SIGSTOP) neither answers its API nor handles SIGTERM: resume it so
    that it can be stopped cleanly, instead of waiting out the stop's timeout."""
    import os
    import signal

    from tulle.local import STOPPED_STATES, process_state, state_lock_held, state_lock_pid

    pid = state_lock_pid(paths)
    if pid is not None and state_lock_held(paths) and process_state(pid)[0] in STOPPED_STATES:
        os.kill(pid, signal.SIGCONT)


def _not_answering(paths: StatePaths) -> ControlPlaneUnavailable | None:
    """The error for a control plane whose process is alive (it holds the state directory's
    lock) but whose API does not answer; None when none is alive."""
    from tulle.local import STOPPED_STATES, process_state, state_lock_held, state_lock_pid

    pid = state_lock_pid(paths)
    if pid is None or not state_lock_held(paths):
        return None
    state, _ = process_state(pid)
    if state in STOPPED_STATES:
        return ControlPlaneUnavailable(
            f"the control plane (pid {pid}) is running but not answering: its process is "
            f"stopped (state {state})", hint=f"resume it: `kill -CONT {pid}`")
    return ControlPlaneUnavailable(
        f"the control plane (pid {pid}) is running but not answering (state {state or '?'})",
        hint=f"read {paths.log_file}; if it stays stuck: `tulle down && tulle up`")


def _workers(s: dict[str, Any]) -> str:
    pids = s.get("xdsWorkers") or []
    if not pids:
        return "none (the streams are served in the control plane's process)"
    restarts = s.get("xdsWorkerRestarts") or 0
    return (f"{len(pids)} (pids {', '.join(map(str, pids))})"
            + (f", {restarts} replaced since start" if restarts else ""))


def _status_table(s: dict[str, Any]) -> str:
    rows = [
        ("State", "running"),
        ("PID", s["pid"]),
        ("Uptime", age(s["startedAt"])),
        ("Version", s["version"]),
        ("State directory", s["stateDir"]),
        ("API", s["apiUrl"]),
        ("xDS", s["xdsAddress"]),
        ("xDS workers", _workers(s)),
        ("Identity (TLS)", s["identityAddress"]),
        ("Trust domain", s["trustDomain"]),
        ("Services", s["services"]),
        ("Workloads", s["workloads"]),
        ("Proxies connected", s["proxiesConnected"]),
        ("Store revision", s["storeRevision"]),
        ("NACKs received", s["nacksTotal"]),
    ]
    return table(("FIELD", "VALUE"), rows)
