"""Numbers as people read them in messages (checks, diagnoses, errors)."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """A duration as a person reads it: "42s", "15m", "3.5h" (never negative)."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
