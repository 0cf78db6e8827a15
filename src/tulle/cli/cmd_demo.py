"""`tulle demo`: start the control plane if needed, then a bookstore through sidecars."""

from __future__ import annotations

import signal
import sys

import typer

from tulle.cli.output import Format, OutputOption


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo(ctx: typer.Context, output: OutputOption = Format.TABLE) -> None:
    """Run a demo bookstore (web, books x2, authors, traffic) until Ctrl-C."""
    from tulle.cli.output import emit
    from tulle.client import ApiClient
    from tulle.controlplane import daemon
    from tulle.demo.hints import current_cli, next_steps
    from tulle.demo.runner import WORKLOADS, Demo

    paths = ctx.obj.paths
    started_here = daemon.running_status(paths) is None
    if started_here:
        print("starting the control plane...", file=sys.stderr)
        # Ports the kernel chooses: another mesh on this host (tulle's default ports) must
        # not stop the demo. They are recorded, so every tulle command finds them.
        daemon.start_background(paths, daemon.StartOptions(api_port=0, xds_port=0,
                                                           identity_port=0))
    runner = Demo(paths, ApiClient.from_state(paths))
    # Ctrl-C must work even when started from a shell that ignores SIGINT in background jobs
    # (the child inherits the ignore); SIGTERM (a supervisor, `kill`) stops it just as cleanly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        print("starting workloads (each with an Envoy sidecar)...", file=sys.stderr)
        runner.start()
        summary = {"stateDir": str(paths.root), "webPort": runner.web_port(),
                   "workloads": [w.name for w in WORKLOADS]}
        emit(summary, output,
             lambda s: next_steps(current_cli(), s["webPort"], str(paths.root)))
        sys.stdout.flush()
        problem = runner.watch()
    finally:
        print("\nstopping the demo...", file=sys.stderr)
        runner.stop()
        if started_here:
            daemon.stop(paths)
    if problem:
        print(f"the demo stopped: {problem}", file=sys.stderr)
        raise typer.Exit(1)
    print("demo stopped", file=sys.stderr)

