"""The control plane's rolling windows, on a fake clock: 5 s slots, a 15 min horizon."""

from __future__ import annotations

import pytest

from tulle.telemetry.schema import SeriesKey
from tulle.telemetry.windows import TelemetryWindows

IN = SeriesKey("in")
BOOKS = SeriesKey("out", "books.default")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def windows(slot_s: float = 5.0, horizon_s: float = 900.0) -> tuple[TelemetryWindows, Clock]:
    clock = Clock()
    return TelemetryWindows(slot_s, horizon_s, clock=clock), clock


def replay(reports: list[tuple[float, int]], now: float, seconds: float) -> int:
    """rq2 of ``a``'s inbound series, summed over the window."""
    telemetry, clock = windows()
    for at, value in reports:
        clock.now = at
        telemetry.record("a", [(IN, {"rq2": value})])
    clock.now = now
    return telemetry.window(seconds).counters.get(("a", IN), {}).get("rq2", 0)


# Reports in slots 0 ([0,5)), 2 and 4; these windows start in the empty slots between.
SPARSE = [(1.0, 1), (11.0, 10), (21.0, 100), (23.0, 1000)]


@pytest.mark.parametrize(("now", "seconds", "expected"), [
    (23.0, 5, 1100),
    (23.0, 15, 1110),
    (23.0, 25, 1111),
    (23.0, 10_000, 1111),
    (30.0, 5, 0),
    (120.0, 60, 0),
], ids=["current partial slot", "skips empty slots", "all", "at most the horizon",
        "slots gone by", "all older than the window"])
def test_window_sums(now: float, seconds: float, expected: int) -> None:
    assert replay(SPARSE, now, seconds) == expected


@pytest.mark.parametrize(("reports", "now", "seconds", "expected"), [
    ([(6.0, 1), (11.0, 10)], 12.0, 5, 11),
    ([(6.0, 1), (11.0, 10), (15.0, 100)], 15.0, 10, 111),
], ids=["slot overlapping the start", "slot wholly inside"])
def test_window_counts_every_overlapping_slot(reports: list[tuple[float, int]], now: float,
                                              seconds: float, expected: int) -> None:
    assert replay(reports, now, seconds) == expected


@pytest.mark.parametrize(("seconds", "expected"), [(0.5, 5.0), (60, 60.0), (901, 900.0)])
def test_window_seconds_clamped(seconds: float, expected: float) -> None:
    telemetry, _ = windows()
    assert telemetry.window(seconds).seconds == expected


def test_reports_in_one_slot_add_up_per_node_and_series() -> None:
    telemetry, clock = windows()
    for at, node, key, values in [(0.0, "a", IN, {"rq2": 1, "rx": 10}),
                                  (2.0, "a", IN, {"rq2": 2, "rq5": 1}),
                                  (4.9, "b", IN, {"rq2": 4}),
                                  (4.9, "a", BOOKS, {"rq2": 8})]:
        clock.now = at
        telemetry.record(node, [(key, values)])
    assert telemetry.series_count() == 3  # one slot: (a, in), (b, in), (a, books)
    assert telemetry.window(60).counters == {("a", IN): {"rq2": 3, "rx": 10, "rq5": 1},
                                             ("b", IN): {"rq2": 4}, ("a", BOOKS): {"rq2": 8}}
    assert telemetry.reports == 4


def test_gauges_keep_the_latest_value() -> None:
    telemetry, clock = windows()
    telemetry.record("a", [(BOOKS, {"rq2": 1, "healthy": 3, "members": 3, "cx": 1})])
    clock.now = 7.0
    telemetry.record("a", [(BOOKS, {"healthy": 2, "cx": 0})])
    window = telemetry.window(60)
    assert window.gauges == {("a", BOOKS): {"healthy": 2, "members": 3, "cx": 0}}
    assert window.counters == {("a", BOOKS): {"rq2": 1}}


def test_horizon_drops_old_slots() -> None:
    telemetry, clock = windows(slot_s=5, horizon_s=20)
    for at, key in [(0.0, IN), (19.0, BOOKS), (24.0, IN)]:  # slots 0, 3 and 4
        clock.now = at
        telemetry.record("a", [(key, {"rq2": 1})])
    assert telemetry.series_count() == 3  # 4 - 4 = slot 0 is still kept
    clock.now = 26.0  # slot 5: slot 0 goes
    telemetry.record("a", [(BOOKS, {"rq2": 1})])
    assert telemetry.series_count() == 3
    assert telemetry.window(20).counters == {("a", BOOKS): {"rq2": 2}, ("a", IN): {"rq2": 1}}
    clock.now = 60.0  # slot 12: the windows ignore slots 3 to 5, still kept until a report
    assert telemetry.window(20).counters == {}
    assert telemetry.series_count() == 3
    telemetry.record("a", [(IN, {"rq2": 5})])
    assert telemetry.series_count() == 1


def test_forget_drops_gauges_and_age_not_counters() -> None:
    telemetry, clock = windows()
    telemetry.record("a", [(IN, {"rq2": 3, "cx": 2})])
    telemetry.record("b", [(IN, {"rq2": 1, "cx": 1})])
    clock.now = 1.0
    telemetry.forget("a")
    telemetry.forget("never-seen")
    window = telemetry.window(60)
    assert window.gauges == {("b", IN): {"cx": 1}}
    assert window.counters == {("a", IN): {"rq2": 3}, ("b", IN): {"rq2": 1}}
    assert window.last_report_age == {"b": 1.0}


def test_last_report_age() -> None:
    telemetry, clock = windows()
    for at, node in [(10.0, "a"), (12.0, "b"), (13.5, "a")]:
        clock.now = at
        telemetry.record(node, [])
    clock.now = 15.0
    assert telemetry.window(60).last_report_age == {"a": 1.5, "b": 3.0}
    assert telemetry.series_count() == 0  # empty reports keep nothing
