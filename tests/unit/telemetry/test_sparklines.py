"""Sparklines: each slot's counts land in the bucket of its time, per service, workload and
route rule, as rates."""

from __future__ import annotations

from tulle.telemetry.query import NodeInfo
from tulle.telemetry.schema import SeriesKey
from tulle.telemetry.sparklines import sparklines

NODES = {"books-1.default": NodeInfo("books-1", "default", "books", ""),
         "books-2.default": NodeInfo("books-2", "default", "books", "")}
RULE = SeriesKey("route", "books.default", "default/books", "canary")


def test_counts_fall_in_the_bucket_of_their_time() -> None:
    slots = [
        (900.0, 5.0, {("books-1.default", SeriesKey("in")): {"rq2": 60, "rq5": 30}}),
        (10.0, 5.0, {("books-1.default", SeriesKey("in")): {"rq2": 30},
                     ("books-2.default", SeriesKey("in_plain")): {"rq2": 30},
                     ("web-1.default", RULE): {"rq2": 3, "rq5": 3},
                     ("gone.default", SeriesKey("in")): {"rq2": 99}}),
    ]
    lines = sparklines(slots, NODES, seconds=900.0, points=30)
    books = lines["services"]["books.default"]
    assert len(books["rps"]) == 30
    assert books["rps"][0] == 3.0 and books["failedPerSecond"][0] == 1.0  # 90 in 30 s
    assert books["rps"][29] == 2.0 and books["failedPerSecond"][29] == 0.0
    assert sum(books["rps"][1:29]) == 0
    assert lines["workloads"]["books-2.default"]["rps"][29] == 1.0
    assert set(lines["workloads"]) == {"books-1.default", "books-2.default"}, \
        "a node no longer known has no line"
    rule = lines["routeRules"]["books.default default/books#canary"]
    assert rule["rps"][29] == 0.2 and rule["failedPerSecond"][29] == 0.1
