"""`tulle workload revoke`: cut one workload instance off the mesh."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tulle.cli.output import Format, OutputOption, emit
from tulle.client import ApiClient

workload = typer.Typer(help="Workload instances: revoke one's identity.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(workload, name="workload")


@workload.command()
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME",
                                        help="The instance's name (`tulle get workloads`)")],
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    output: OutputOption = Format.TABLE,
) -> None:
    """Revoke the certificates of one workload instance and end its registration, in one
    push: every proxy refuses its certificate from then on (open connections from it are
    drained), its endpoints are removed, its sidecar's xDS stream is closed, and it cannot
    renew or register again under this name until the revoked certificate would have
    expired. For a host you no longer trust; other instances of the service are not
    touched."""
    result = ApiClient.from_state(ctx.obj.paths).post(
        f"/v1/workloads/{name}.{namespace}/revoke", {})
    emit(result, output, _text)


def _text(result: dict[str, Any]) -> str:
    serials = result["serials"]
    what = (f"certificate{'s' if len(serials) > 1 else ''} {', '.join(serials)} revoked"
            if serials else "no certificate to revoke (mTLS is off, or none was issued yet)")
    pushed = ("every proxy has the revocation lists" if result["synced"] else
              "some proxies had not ACKed the revocation lists within 10s: see "
              "`tulle proxy-status`")
    return (f"workload {result['node']}: {what}; registration ended; {pushed} "
            f"(mesh version {result['meshVersion']})\n")
