"""`tulle history` and `tulle rollback`: applied changes and restoring an earlier state."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Not built yet."""
