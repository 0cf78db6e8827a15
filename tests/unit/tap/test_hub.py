"""The tap hub: sessions, plans at rebuilds, and fan-out of received entries."""

from __future__ import annotations

import asyncio

from envoy.data.accesslog.v3 import accesslog_pb2

from tests.unit.xds.meshes import mesh, workload
from tulle.tap.filters import parse_filter
from tulle.tap.hub import SESSION_BUFFER, TapHub
from tulle.tap.targets import EMPTY_PLAN, TapTarget

SNAPSHOT = mesh(1, [workload("books-1"), workload("web-1")])
BOOKS = TapTarget("service", "default", "books")


def entry(path: str, status: int = 200, direction: str = "inbound",
          **headers: str) -> accesslog_pb2.HTTPAccessLogEntry:
    message = accesslog_pb2.HTTPAccessLogEntry()
    message.common_properties.custom_tags.update(
        {"direction": direction, "path": path, "status": str(status)}
        | {f"requestHeaders.{k}": v for k, v in headers.items()})
    return message


def test_no_session_means_an_empty_plan_and_entries_only_counted() -> None:
    hub = TapHub(lambda: SNAPSHOT)
    hub.replan(SNAPSHOT)
    assert hub.plan is EMPTY_PLAN and not hub.taps_of("books-1.default")
    hub.receive("books-1.default", [entry("/late")])  # a logger still draining
    assert hub.received == {"books-1.default": 1}


def test_a_session_is_planned_at_the_next_rebuild_and_gone_after_it_closes() -> None:
    hub = TapHub(lambda: SNAPSHOT)
    session = hub.open(BOOKS, parse_filter())
    hub.replan(SNAPSHOT)
    assert hub.taps_of("books-1.default").inbound
    hub.close(session)
    hub.replan(SNAPSHOT)
    assert hub.plan is EMPTY_PLAN


def test_entries_reach_matching_sessions_filtered_and_redacted() -> None:
    async def run() -> None:
        hub = TapHub(lambda: SNAPSHOT)
        errors = hub.open(BOOKS, parse_filter(status="5xx", max_events="1"))
        everything = hub.open(BOOKS, parse_filter())
        web = hub.open(TapTarget("workload", "default", "web-1"), parse_filter())
        hub.receive("books-1.default", [
            entry("/ok", authorization="Bearer secret"), entry("/bad", 503),
            entry("/worse", 500)])
        assert (errors.matched, everything.matched, web.matched) == (1, 3, 0)
        assert errors.full
        assert (await errors.next())["path"] == "/bad"
        first = await everything.next()
        assert first["requestHeaders"]["authorization"] == "[redacted]"
        assert first["workload"] == "books-1.default"

    asyncio.run(run())


def test_a_slow_client_loses_the_newest_requests_not_the_control_plane() -> None:
    async def run() -> None:
        hub = TapHub(lambda: SNAPSHOT)
        session = hub.open(BOOKS, parse_filter())
        hub.receive("books-1.default", [entry(f"/{i}") for i in range(SESSION_BUFFER + 5)])
        assert (session.pending(), session.dropped) == (SESSION_BUFFER, 5)
        assert hub.status()["sessions"] == [{"id": session.id, "target": BOOKS.to_dict(),
                                             "matched": SESSION_BUFFER + 5, "dropped": 5}]

    asyncio.run(run())
