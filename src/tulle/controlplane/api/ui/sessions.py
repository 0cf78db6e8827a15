"""Who may see the dashboard: browser sessions opened with the API token, or with a one-time
link that `tulle dashboard` asks for (itself with the token).

A session is a random id in an HttpOnly, SameSite=Strict cookie, known only to this process's
memory: a restart logs every browser out. It opens the dashboard's pages and a short list of
read-only API routes (GET), never a write and never the routes that reach into a proxy or
the control plane's log.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

COOKIE = "tulle_ui"
SESSION_TTL_S = 8 * 3600.0
LINK_TTL_S = 60.0
MAX_SESSIONS = 256
MAX_LINKS = 64

# The API routes a dashboard session may read (GET only).
READABLE_PREFIXES: tuple[str, ...] = (
    "/v1/telemetry/workloads", "/v1/telemetry/services", "/v1/telemetry/routes",
    "/v1/telemetry/edges", "/v1/telemetry/slos", "/v1/ui/", "/v1/diagnose", "/v1/proxies",
    "/v1/history", "/v1/services", "/v1/workloads", "/v1/rollouts", "/v1/tap", "/v1/status",
    "/v1/xds/nacks")
CLOSED_PREFIXES: tuple[str, ...] = ("/v1/proxies/",)  # a proxy's admin, logs and config


class UiSessions:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sessions: dict[str, float] = {}  # id -> expiry
        self._links: dict[str, float] = {}  # one-time code -> expiry

    def link(self) -> tuple[str, float]:
        """A one-time code, and how long it stays good."""
        self._expire()
        if len(self._links) >= MAX_LINKS:  # the oldest goes first
            del self._links[min(self._links, key=self._links.__getitem__)]
        code = secrets.token_urlsafe(24)
        self._links[code] = self._clock() + LINK_TTL_S
        return code, LINK_TTL_S

    def redeem(self, code: str) -> str | None:
        """A new session for a good, unused code; None otherwise. Each code works once."""
        self._expire()
        for known in list(self._links):
            if secrets.compare_digest(known.encode(), code.encode()):
                del self._links[known]
                return self.open()
        return None

    def open(self) -> str:
        self._expire()
        if len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[min(self._sessions, key=self._sessions.__getitem__)]
        session = secrets.token_urlsafe(32)
        self._sessions[session] = self._clock() + SESSION_TTL_S
        return session

    def valid(self, session: str | None) -> bool:
        if not session:
            return False
        expiry = self._sessions.get(session)
        return expiry is not None and expiry > self._clock()

    def close(self, session: str | None) -> None:
        if session:
            self._sessions.pop(session, None)

    def _expire(self) -> None:
        now = self._clock()
        self._sessions = {s: e for s, e in self._sessions.items() if e > now}
        self._links = {c: e for c, e in self._links.items() if e > now}


def readable(method: str, path: str) -> bool:
    """Whether a dashboard session may make this API request."""
    return method in ("GET", "HEAD") and path.startswith(READABLE_PREFIXES) and \
        not path.startswith(CLOSED_PREFIXES)
