"""proxies-streams: a refused second stream with a proxy's credential fails the check at once
while that credential is still the workload's; a new registration clears it."""

from __future__ import annotations

from tulle.checks.dataplane import evaluate_streams
from tulle.checks.runner import Status
from tulle.xds.admission import StreamEvent, StreamEventKind

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
BOOKS = "books-1.default"


def event(kind: StreamEventKind, node: str = BOOKS, at: float = NOW) -> StreamEvent:
    return StreamEvent(kind, node, "ipv4:127.0.0.1:41000", at, "why", "ipv4:127.0.0.1:39000",
                       NOW - 600)


def test_a_refused_duplicate_fails_at_once_and_names_the_peers() -> None:
    outcome = evaluate_streams([event(StreamEventKind.DUPLICATE)],
                               {BOOKS: NOW - 3600, "web-1.default": NOW - 3600})
    assert outcome.status is Status.FAILED and outcome.settled
    assert outcome.message.startswith(
        "books-1.default: 1 second xDS stream(s) with its credential refused, the latest "
        "from ipv4:127.0.0.1:41000 at 08:00:00Z; the live stream is from "
        "ipv4:127.0.0.1:39000.")
    assert "TUL1066" in outcome.message
    assert outcome.details["proxies"] == [BOOKS]


def test_other_events_and_replaced_credentials_pass() -> None:
    events = [event(k) for k in StreamEventKind if k is not StreamEventKind.DUPLICATE]
    events.append(event(StreamEventKind.DUPLICATE, at=NOW - 7200))  # before it registered
    events.append(event(StreamEventKind.DUPLICATE, node="gone-1.default"))  # not registered
    outcome = evaluate_streams(events, {BOOKS: NOW - 3600})
    assert outcome.status is Status.OK
    assert outcome.message == "no second xDS stream presented any of 1 proxies' credentials"
