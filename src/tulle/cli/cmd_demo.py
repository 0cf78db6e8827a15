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
    from tulle.demo.runner import WORKLOADS, Demo

    paths = ctx.obj.paths
    started_here = daemon.running_status(paths) is None
    if started_here:
        print("starting the control plane...", file=sys.stderr)
        daemon.start_background(paths)
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
        emit(summary, output, lambda s: _next_steps(s, str(paths.root)))
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


def _next_steps(summary: dict[str, object], state_dir: str) -> str:
    flag = "" if state_dir.endswith("/.tulle") else f" --state-dir {state_dir}"
    return f"""
The tulle demo bookstore is running: 5 workloads, each behind its own Envoy sidecar.

  web-1 (front end) -> books-1 (v1), books-2 (v2) and authors-1; traffic-1 calls web every 0.5s.

Try:
  Open the bookstore (the web app's own port):
      curl http://127.0.0.1:{summary['webPort']}/
  Call it through the mesh, by service name, from a one-shot workload:
      tulle{flag} run --service me -- curl -s http://web/api
  See what the mesh knows:
      tulle{flag} get services
      tulle{flag} get workloads
      tulle{flag} get proxies
  Watch it (books v2 is a canary with a bug; its route retries the 503s):
      tulle{flag} stat services           # success rate, RPS, latency
      tulle{flag} stat workloads          # books-2 fails about 20 %
      tulle{flag} routes books            # per-rule metrics of the canary route
      tulle{flag} edges -o wide           # who calls whom, with identities
      tulle{flag} describe service books  # the canary route and its sources
  Logs: {state_dir}/demo/ (applications) and {state_dir}/workloads/ (agents and Envoy)

Press Ctrl-C to stop the demo."""
