"""`tulle dashboard`: a one-time login link to the web dashboard, opened in a browser."""

from __future__ import annotations

import json
import os
import sys
import webbrowser
from typing import Annotated

import typer

from tulle.cli.output import Format, OutputOption
from tulle.client import ApiClient


def register(app: typer.Typer) -> None:
    app.command(name="dashboard")(dashboard)


def dashboard(
    ctx: typer.Context,
    open_browser: Annotated[bool | None, typer.Option(
        "--open/--no-open", help="Open the link in this machine's browser (default: when "
                                 "there is a graphical session)")] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Print a login link to the dashboard (good once, for a minute) and open it. The
    dashboard is served by the control plane on its API port, under /ui/; its login page
    also takes the API token."""
    client = ApiClient.from_state(ctx.obj.paths)
    link = client.post("/v1/ui/links", {})
    url = client.url + link["path"]
    if output is Format.JSON:
        sys.stdout.write(json.dumps({"url": url, "expiresInSeconds":
                                     link["expiresInSeconds"]}, indent=2) + "\n")
    else:
        sys.stdout.write(f"{url}\n(works once, within {link['expiresInSeconds']:g}s; "
                         f"then log in at {client.url}/ui/login with the API token)\n")
    if open_browser is None:  # never a console browser that would take over the terminal
        open_browser = sys.platform == "darwin" or bool(
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if open_browser:
        webbrowser.open(url)
