"""Checking a log-level change before Envoy sees it."""

from __future__ import annotations

from typing import Any

import pytest

from tulle.agent.loglevels import LogLevelError, change_query, parse_loggers

KNOWN = {"upstream": "warning", "http": "warning", "pool": "info"}


def test_parse_loggers_reads_envoys_page() -> None:
    page = "active loggers:\n  admin: warning\n  upstream: debug\n\n"
    assert parse_loggers(page) == {"admin": "warning", "upstream": "debug"}
    assert parse_loggers("error: unknown logger level\n\nusage: /logging?x") == {}


@pytest.mark.parametrize(("body", "query"), [
    ({}, None),
    ({"level": "debug"}, "level=debug"),
    ({"level": "WARNING"}, "level=warning"),
    ({"levels": {"upstream": "debug"}}, "paths=upstream:debug"),
    ({"levels": {"upstream": "trace", "http": "off"}}, "paths=upstream:trace,http:off"),
])
def test_valid_changes_become_one_query(body: dict[str, Any], query: str | None) -> None:
    assert change_query(body, KNOWN) == query


@pytest.mark.parametrize(("body", "message", "hint"), [
    ({"level": "loud"}, "'loud' is not a log level", "levels: trace, debug"),
    ({"level": 3}, "3 is not a log level", "off"),
    ({"levels": {"upstream": "loud"}}, "for upstream", "critical"),
    ({"levels": {"nosuch": "debug"}}, "no logger 'nosuch'", "components: http, pool, upstream"),
    ({"levels": {"upstream&level": "debug"}}, "no logger", "components"),
    ({"levels": {}}, "must map components", "upstream=debug"),
    ({"levels": ["upstream"]}, "must map components", "upstream=debug"),
    ({"level": "debug", "levels": {"http": "info"}}, "not both", "e.g."),
    ([], "JSON object", "level"),
])
def test_bad_changes_name_the_valid_choices(body: Any, message: str, hint: str) -> None:
    with pytest.raises(LogLevelError) as caught:
        change_query(body, KNOWN)
    assert message in caught.value.message and hint in caught.value.hint
