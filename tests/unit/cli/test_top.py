"""`tulle top`: each request counted once, busiest first."""

from __future__ import annotations

from typing import Any

from tulle.cli.cmd_top import Top


def event(direction: str, path: str, status: int | None, *, reached: bool = True,
          latency: float = 5.0, source: str = "spiffe://td/ns/default/sa/web") -> dict[str, Any]:
    return {"direction": direction, "path": path, "status": status, "method": "GET",
            "source": source, "latencyMs": latency,
            "destination": "spiffe://td/ns/default/sa/books" if reached else None}


def test_a_request_that_reached_an_instance_counts_once() -> None:
    top = Top()
    top.add(event("outbound", "/books?page=2", 200))  # the caller's view of the same request
    top.add(event("inbound", "/books?page=2", 200))
    [row] = top.snapshot()["paths"]
    assert (row["path"], row["count"], row["successRate"]) == ("/books", 1, 1.0)


def test_caller_side_failures_count_when_nothing_was_reached() -> None:
    top = Top()
    top.add(event("outbound", "/books", 503, reached=False))  # UO: never left the caller
    top.add(event("inbound", "/books", 200))
    [row] = top.snapshot()["paths"]
    assert (row["count"], row["successRate"], row["lastStatus"]) == (2, 0.5, 200)


def test_busiest_first_with_latency() -> None:
    top = Top()
    for latency in (1.0, 2.0, 30.0):
        top.add(event("inbound", "/a", 200, latency=latency))
    top.add(event("inbound", "/b", 500))
    top.add(event("inbound", "/b", None))  # no status: the request got no answer
    rows = top.snapshot()["paths"]
    assert [r["path"] for r in rows] == ["/a", "/b"]
    assert rows[0]["latencyMs"] == {"p50": 2.0, "max": 30.0}
    assert rows[1]["successRate"] == 0.0


def test_sources_are_kept_apart() -> None:
    top = Top()
    top.add(event("inbound", "/a", 200, source="spiffe://td/ns/default/sa/web"))
    top.add(event("inbound", "/a", 200, source="spiffe://td/ns/default/sa/cron"))
    assert len(top.snapshot()["paths"]) == 2


def test_a_grpc_failure_inside_http_200_is_a_failure() -> None:
    top = Top()
    for grpc in ("OK", "UNAVAILABLE", "OK", "INTERNAL"):
        top.add(event("inbound", "/g.Greeter/Hello", 200) | {"grpcStatus": grpc})
    [row] = top.snapshot()["paths"]
    assert (row["count"], row["successRate"], row["lastStatus"]) == (4, 0.5, 200)
