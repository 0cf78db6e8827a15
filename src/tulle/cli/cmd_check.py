"""`tulle check [--proxy] [--strict]`: grouped health checks of the control plane and the
proxies. √ ok, ‼ warning, a cross for failed; each failure with its hint and docs link.

Exit code: 1 on any failure, and with --strict on any warning too; 0 otherwise.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from tulle.cli.output import Format, OutputOption


def register(app: typer.Typer) -> None:
    app.command("check")(check)


def check(
    ctx: typer.Context,
    proxy: Annotated[bool, typer.Option(
        "--proxy", help="Also check the proxies, telemetry and traffic")] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 1 on warnings too")] = False,
    wait: Annotated[float | None, typer.Option(
        "--wait", min=0, help="At most this many seconds of retrying for checks that wait for "
                              "a state to settle (proxies connecting, pushes ACKed, first "
                              "telemetry) [default: each check's own, up to 15]")] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Health checks of the control plane, store and CA (and with --proxy the data plane)."""
    from tulle.checks import catalog, render
    from tulle.checks.client import CheckApi
    from tulle.checks.runner import exit_code, run_checks

    api = CheckApi(ctx.obj.paths)
    table = output is Format.TABLE

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    observer = render.TableWriter(write, catalog.GROUP_TITLES) if table else None
    results = run_checks(catalog.checks(proxy), api, observer, max_wait=wait)
    if table:
        write("\n" + render.summary(results, strict) + "\n")
    elif output is Format.JSON:
        write(json.dumps(render.as_json(results, strict), indent=2) + "\n")
    else:
        import yaml

        write(yaml.safe_dump(render.as_json(results, strict), sort_keys=False))
    code = exit_code(results, strict)
    if code:
        raise typer.Exit(code)
