"""What a tap session shows: ``--path``, ``--method``, ``--status`` and ``--max``.

The control plane applies them to each request before it leaves, so a quiet filter on a busy
service sends the CLI nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tulle.errors import UsageError
from tulle.model import grpc_status
from tulle.tap.events import Event

MAX_EVENTS = 1_000_000
_METHOD = re.compile(r"[A-Za-z]{1,20}")
_STATUS = re.compile(r"([1-5])([0-9]{2}|xx)")


@dataclass(frozen=True)
class StatusRange:
    low: int
    high: int

    def __contains__(self, status: int) -> bool:
        return self.low <= status <= self.high

    def failures(self) -> bool:
        """The whole 5xx class: where a failed gRPC call (in an HTTP 200) counts, as in stat."""
        return self.low <= 500 and self.high >= 599


@dataclass(frozen=True)
class TapFilter:
    # Whole-segment prefix, query excluded: /books matches /books and /books/1, not /booksx.
    path: str | None = None
    method: str | None = None  # upper case
    statuses: tuple[StatusRange, ...] = ()  # any of them
    max_events: int | None = None  # end the session after this many

    def matches(self, event: Event) -> bool:
        if self.method is not None and event.get("method") != self.method:
            return False
        if self.statuses:
            status = event.get("status")
            grpc_failed = grpc_status.failed(event.get("grpcStatus"))
            if not any((isinstance(status, int) and status in s)
                       or (grpc_failed and s.failures()) for s in self.statuses):
                return False
        if self.path is not None:
            path = str(event.get("path") or "").split("?", 1)[0]
            if self.path not in ("/", path) and not path.startswith(self.path + "/"):
                return False
        return True


def parse_filter(path: str | None = None, method: str | None = None,
                 status: str | None = None, max_events: str | None = None) -> TapFilter:
    return TapFilter(_path(path), _method(method), _statuses(status), _max(max_events))


def _path(value: str | None) -> str | None:
    if not value:
        return None
    if not value.startswith("/") or "?" in value or len(value) > 1024:
        raise UsageError(f"--path {value!r} is not a path prefix",
                         hint="give a path starting with /, without a query, such as /books")
    return value.rstrip("/") or "/"


def _method(value: str | None) -> str | None:
    if not value:
        return None
    if not _METHOD.fullmatch(value):
        raise UsageError(f"--method {value!r} is not an HTTP method",
                         hint="such as GET, POST or DELETE")
    return value.upper()


def _statuses(value: str | None) -> tuple[StatusRange, ...]:
    if not value:
        return ()
    ranges = []
    for part in value.split(","):
        match = _STATUS.fullmatch(part.strip().lower())
        if match is None:
            raise UsageError(f"--status {value!r}: {part.strip()!r} is not a status or class",
                             hint="a code such as 503, a class such as 5xx, or a comma-"
                                  "separated list: 4xx,503")
        if match[2] == "xx":
            base = int(match[1]) * 100
            ranges.append(StatusRange(base, base + 99))
        else:
            code = int(match[0])
            ranges.append(StatusRange(code, code))
    return tuple(ranges)


def _max(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_EVENTS:
        raise UsageError(f"--max {value!r} is not a count",
                         hint=f"a whole number from 1 to {MAX_EVENTS:,}")
    return count
