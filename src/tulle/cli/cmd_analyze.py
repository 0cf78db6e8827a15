"""`tulle analyze`: analyzers over resource files or the live store."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Not built yet."""
