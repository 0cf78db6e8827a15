"""`tulle diagnose`: live evidence, ranked findings, each with a fix."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Not built yet."""
