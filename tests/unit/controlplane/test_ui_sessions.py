"""The dashboard's sessions: a link works once and for a minute, a session for its lifetime,
and a session reads only the routes it is meant to."""

from __future__ import annotations

import pytest

from tulle.controlplane.api.ui.sessions import LINK_TTL_S, SESSION_TTL_S, UiSessions, readable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_link_opens_one_session_within_its_minute() -> None:
    clock = Clock()
    sessions = UiSessions(clock)
    code, ttl = sessions.link()
    assert ttl == LINK_TTL_S
    session = sessions.redeem(code)
    assert session is not None and sessions.valid(session)
    assert sessions.redeem(code) is None, "once"
    late, _ = sessions.link()
    clock.now += LINK_TTL_S + 1
    assert sessions.redeem(late) is None, "expired"
    assert sessions.redeem("") is None and sessions.redeem("x" * 32) is None


def test_a_session_ends_with_its_lifetime_or_a_logout() -> None:
    clock = Clock()
    sessions = UiSessions(clock)
    first, second = sessions.open(), sessions.open()
    assert first != second and sessions.valid(first) and not sessions.valid(None)
    sessions.close(first)
    assert not sessions.valid(first) and sessions.valid(second)
    clock.now += SESSION_TTL_S + 1
    assert not sessions.valid(second)


def test_sessions_are_bounded() -> None:
    sessions = UiSessions(Clock())
    opened = [sessions.open() for _ in range(300)]
    assert sum(sessions.valid(s) for s in opened) == 256
    assert sessions.valid(opened[-1])


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/v1/telemetry/services", True),
    ("GET", "/v1/proxies", True),
    ("GET", "/v1/proxies/web-1.default/admin/config_dump", False),
    ("GET", "/v1/proxies/web-1.default/logs", False),
    ("GET", "/v1/log", False),
    ("GET", "/v1/identity/status", False),
    ("GET", "/v1/telemetry/raw", False),
    ("POST", "/v1/resources/apply", False),
    ("POST", "/v1/rollouts/default/books/abort", False),
    ("GET", "/v1/rollouts", True),
    ("DELETE", "/v1/history", False),
])
def test_a_session_reads_only_the_dashboards_routes(method: str, path: str,
                                                    allowed: bool) -> None:
    assert readable(method, path) is allowed
