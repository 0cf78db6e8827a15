"""`tulle certs status|rotate|import`: the mesh's certificate lifecycle."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tulle.cli.output import Format, OutputOption, emit, table
from tulle.client import ApiClient
from tulle.errors import UsageError

certs = typer.Typer(help="Certificates: status, staged rotation, importing your own PKI.",
                    no_args_is_help=True)

ROTATION_TIMEOUT_S = 600.0


def register(app: typer.Typer) -> None:
    app.add_typer(certs, name="certs")


@certs.command()
def status(
    ctx: typer.Context,
    threshold: Annotated[float, typer.Option(
        help="Fail when the anchor or issuer expires within this many days")] = 30.0,
    output: OutputOption = Format.TABLE,
) -> None:
    """The trust anchors, the issuer and every workload certificate.

    Exits 1 when the anchor or issuer expires within --threshold days, when a workload
    certificate does not chain to the current bundle, or when one has missed its renewal.
    """
    data = ApiClient.from_state(ctx.obj.paths).get("/v1/identity/status")
    problems = _problems(data, threshold)
    data["problems"] = problems
    emit(data, output, _status_text)
    if problems:
        raise typer.Exit(1)


@certs.command()
def rotate(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="root or issuer")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing")
                       ] = False,
    output: OutputOption = Format.TABLE,
) -> None:
    """Rotate the root or the issuer in three stages, each waiting for every proxy.

    An interrupted rotation resumes where it stopped: run the same command again.
    """
    client = ApiClient.from_state(ctx.obj.paths, timeout=ROTATION_TIMEOUT_S)
    result = client.post("/v1/identity/rotate", {"kind": kind, "dryRun": dry_run})
    emit(result, output, _rotation_text)


@certs.command(name="import")
def import_(
    ctx: typer.Context,
    root: Annotated[Path, typer.Option(help="PEM file: the root (trust anchor) certificate")],
    issuer: Annotated[Path, typer.Option(help="PEM file: the issuer certificate, signed by "
                                              "the root")],
    issuer_key: Annotated[Path, typer.Option(help="PEM file: the issuer's unencrypted ECDSA "
                                                  "private key")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing")
                       ] = False,
    output: OutputOption = Format.TABLE,
) -> None:
    """Use your own PKI. Running workloads move to it with a staged rotation."""
    def read(path: Path) -> str:
        try:
            return path.read_text()
        except OSError as exc:
            raise UsageError(f"{path}: cannot read: {exc.strerror}") from exc

    client = ApiClient.from_state(ctx.obj.paths, timeout=ROTATION_TIMEOUT_S)
    result = client.post("/v1/identity/import", {
        "root": read(root), "issuer": read(issuer), "issuerKey": read(issuer_key),
        "dryRun": dry_run})
    emit(result, output, _rotation_text)


def _problems(data: dict[str, Any], threshold_days: float) -> list[str]:
    problems = []
    for authority, what in [*((a, "trust anchor") for a in data["anchors"]),
                            (data["issuer"], "issuer")]:
        if authority["remainingDays"] < threshold_days:
            problems.append(f"the {what} {authority['id']} expires in "
                            f"{authority['remainingDays']:.1f} days; run `tulle certs rotate "
                            f"{'root' if what == 'trust anchor' else 'issuer'}`")
    for workload in data["workloads"]:
        if not workload["chainsToBundle"]:
            problems.append(f"{workload['node']}'s certificate does not chain to the bundle")
        if workload["missedRenewal"]:
            problems.append(f"{workload['node']} missed its renewal: check its agent "
                            f"(STATE_DIR/workloads/{workload['node']}/agent.log)")
    return problems


def _status_text(data: dict[str, Any]) -> str:
    authorities = [("anchor", a) for a in data["anchors"]] + [("issuer", data["issuer"])]
    parts = [f"Trust domain: {data['trustDomain']}"]
    if data.get("rotation"):
        parts.append(f"Rotation in progress: {data['rotation']['kind']}, next stage "
                     f"{data['rotation']['stage']}")
    parts.append(table(("ROLE", "ID", "SUBJECT", "ALGORITHM", "EXPIRES", "DAYS LEFT"), [
        (role, a["id"], a["subject"], a["algorithm"], _date(a["notAfter"]),
         f"{a['remainingDays']:.0f}") for role, a in authorities]))
    parts.append(table(("WORKLOAD", "IDENTITY", "SERIAL", "EXPIRES IN", "CHAINS", "RENEWAL"), [
        (w["node"], w["spiffeId"], w["serial"][:12], _duration(w["remainingSeconds"]),
         "yes" if w["chainsToBundle"] else "NO", "MISSED" if w["missedRenewal"] else "ok")
        for w in data["workloads"]]))
    parts += [f"problem: {p}" for p in data["problems"]]
    return "\n\n".join(parts)


def _rotation_text(data: dict[str, Any]) -> str:
    if "plan" in data:
        return f"plan for rotating the {data['kind']} (nothing changed):\n" + "\n".join(
            f"  {line}" for line in data["plan"])
    lines = [f"{data['kind']} rotated:"]
    lines += [f"  stage {s['stage']}: {s['detail']} ({s['seconds']:.2f}s)"
              for s in data["stages"]]
    lines.append(f"  bundle: {', '.join(data['anchors'])}; issuer: {data['issuer']}")
    return "\n".join(lines)


def _date(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(epoch))


def _duration(seconds: float) -> str:
    if seconds < 0:
        return "EXPIRED"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"

