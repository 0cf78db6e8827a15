"""`tulle check`: grouped health checks of the control plane and the proxies."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Not built yet."""
