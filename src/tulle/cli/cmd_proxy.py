"""`tulle proxy log-level` and `tulle proxy logs`: a sidecar's Envoy logging."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Not built yet."""
