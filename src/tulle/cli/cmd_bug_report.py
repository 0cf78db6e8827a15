"""`tulle bug-report`: one private .tar.gz with everything needed to debug the mesh, secrets
redacted (see tulle.bugreport)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tulle.cli import proxies
from tulle.cli.output import Format, emit
from tulle.client import ApiClient
from tulle.errors import TulleError


def register(app: typer.Typer) -> None:
    app.command("bug-report")(bug_report)


def bug_report(
    ctx: typer.Context,
    output_file: Annotated[Path | None, typer.Option(
        "--output", "--file", help="Where to write the archive [default: "
                                   "./tulle-bug-report-DATE-TIME.tar.gz]")] = None,
    # --output names the archive here, so the format is -o or --format.
    output: Annotated[Format, typer.Option("-o", "--format", help="Output format")
                      ] = Format.TABLE,
) -> None:
    """Write one .tar.gz (0600) for a bug report: status, logs, config, history, proxies'
    config and logs, checks. Private keys, tokens and secret headers are redacted."""
    from tulle.bugreport import archive, collectors
    from tulle.bugreport.redact import Redactor
    from tulle.settings import read_metrics_token, read_token

    paths = ctx.obj.paths
    path = output_file or Path(time.strftime("tulle-bug-report-%Y%m%d-%H%M%S.tar.gz"))
    client = ApiClient.from_state(paths, timeout=15.0)
    todo = collectors.standard(client, paths) + collectors.replicas(client)
    try:
        nodes = sorted(p.node for p in proxies.sync_states(client))
    except TulleError:
        nodes = []  # recorded by the proxies/status.json collector
    for node in nodes:
        todo += collectors.per_proxy(client, node)
    redactor = Redactor.of([read_token(paths), read_metrics_token(paths)],
                           _redacted_headers(client))
    started = time.monotonic()
    outcomes = archive.collect(todo, redactor)
    archive.write(path, outcomes, redactor, {
        "createdAt": time.time(), "proxies": nodes,
        "redactedHeaders": list(redactor.headers)})
    failed = [o.to_dict() for o in outcomes if not o.ok]
    summary = {"file": str(path), "files": sum(o.ok for o in outcomes) + 1,
               "failed": failed, "seconds": round(time.monotonic() - started, 1)}
    emit(summary, output, _render)


def _redacted_headers(client: ApiClient) -> list[str]:
    """The Mesh's spec.accessLog.redactHeaders, if it can be read."""
    try:
        meshes: list[dict[str, Any]] = client.get("/v1/resources/mesh")
    except TulleError:
        return []
    names: list[str] = []
    for item in meshes:
        spec = item.get("manifest", {}).get("spec") or {}
        names += [str(n) for n in (spec.get("accessLog") or {}).get("redactHeaders") or ()]
    return names


def _render(summary: dict[str, Any]) -> str:
    lines = [f"Wrote {summary['file']} ({summary['files']} files, {summary['seconds']}s)."]
    for failure in summary["failed"]:
        lines.append(f"  not collected: {failure['file']}: {failure.get('error', '')}")
    return "\n".join(lines)
