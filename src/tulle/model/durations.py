"""Durations as users write them: "250ms", "30s", "1h30m", "24h", "1.5d"."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d{1,6}(?:\.\d{1,6})?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d{1,6}(?:\.\d{1,6})?(?:ms|s|m|h|d)){1,4}")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

DURATION_HINT = 'write numbers with units (ms, s, m, h, d): "250ms", "30s", "1h30m"'


def parse_duration(text: str) -> float | None:
    """Seconds, or None when ``text`` is not a duration."""
    if not _WHOLE.fullmatch(text):
        return None
    return sum(float(value) * _UNITS[unit] for value, unit in _PART.findall(text))

