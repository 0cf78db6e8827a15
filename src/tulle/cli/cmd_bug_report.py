"""`tulle bug-report`: one redacted archive of everything needed to debug the mesh."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Not built yet."""
