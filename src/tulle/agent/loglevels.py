"""Envoy's log levels: reading ``/logging``'s answer and checking a change before Envoy sees it.

Envoy's admin ``/logging`` is POST-only (1.40): with no parameters it lists the active loggers,
with ``level=L`` it sets all of them, with ``paths=a:L,b:L`` some of them. The agent builds that
query itself from checked input, so no caller can send Envoy an arbitrary admin request.
Standard library only (the agent imports it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

LEVELS = ("trace", "debug", "info", "warning", "error", "critical", "off")
_LOGGER_LINE = re.compile(r"^\s+([A-Za-z0-9_.-]+):\s*([a-z]+)\s*$")


class LogLevelError(ValueError):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def parse_loggers(text: str) -> dict[str, str]:
    """``active loggers:\\n  admin: warning\\n ...`` -> {"admin": "warning", ...}."""
    return {m.group(1): m.group(2) for m in map(_LOGGER_LINE.match, text.splitlines()) if m}


def change_query(body: object, known: Mapping[str, str]) -> str | None:
    """The ``/logging`` query for a request body, or None for "just show the levels".

    ``{"level": "debug"}`` sets every logger; ``{"levels": {"upstream": "debug"}}`` sets the
    named ones. Anything else is refused with the valid choices.
    """
    if not isinstance(body, Mapping):
        raise LogLevelError("the body must be a JSON object",
                            hint='send {"level": LEVEL} or {"levels": {COMPONENT: LEVEL}}')
    level, levels = body.get("level"), body.get("levels")
    if level is not None and levels is not None:
        raise LogLevelError("give either one level for every logger or levels per component, "
                            "not both", hint="e.g. `debug`, or `upstream=debug http=info`")
    if level is not None:
        return f"level={_check_level(level)}"
    if levels is None:
        return None
    if not isinstance(levels, Mapping) or not levels:
        raise LogLevelError("levels must map components to levels",
                            hint="e.g. `upstream=debug http=info`")
    pairs = []
    for component, wanted in levels.items():
        if component not in known:
            raise LogLevelError(f"Envoy has no logger {component!r}",
                                hint="components: " + ", ".join(sorted(known)))
        pairs.append(f"{component}:{_check_level(wanted, component)}")
    return "paths=" + ",".join(pairs)


def _check_level(level: object, component: str | None = None) -> str:
    if isinstance(level, str) and level.lower() in LEVELS:
        return level.lower()
    what = f" for {component}" if component else ""
    raise LogLevelError(f"{level!r} is not a log level{what}",
                        hint="levels: " + ", ".join(LEVELS))
