"""Telemetry in the control plane: reports only from registered workloads and within bounds,
windows within the horizon, queries that name what they cannot find."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.controlplane.support import registry
from tulle.controlplane.services.telemetry import (
    MAX_SERIES_PER_REPORT,
    TelemetryQuery,
    TelemetryService,
)
from tulle.errors import NotFoundError, UsageError
from tulle.model.mesh import EMPTY_MESH
from tulle.telemetry.schema import SeriesKey


def service(tmp_path: Path) -> TelemetryService:
    reg = registry(tmp_path, "books-1")
    return TelemetryService(reg.get, reg.workloads, lambda: EMPTY_MESH, "example.org")


def series(count: int) -> list[tuple[SeriesKey, dict[str, int]]]:
    return [(SeriesKey("in", "", ""), {"rq": 1}) for _ in range(count)]


def test_a_report_from_a_registered_workload_is_kept(tmp_path: Path) -> None:
    telemetry = service(tmp_path)
    telemetry.receive("books-1.default", series(1))
    assert telemetry.nodes["books-1.default"].identity == \
        "spiffe://example.org/ns/default/sa/books"
    assert telemetry.windows.reports == 1


def test_reports_from_strangers_and_oversized_reports_are_refused(tmp_path: Path) -> None:
    telemetry = service(tmp_path)
    with pytest.raises(NotFoundError):
        telemetry.receive("ghost-1.default", series(1))
    with pytest.raises(UsageError, match="series"):
        telemetry.receive("books-1.default", series(MAX_SERIES_PER_REPORT + 1))
    assert telemetry.windows.reports == 0 and not telemetry.nodes


@pytest.mark.parametrize("seconds", [0.0, -5.0, 901.0])
def test_windows_outside_the_horizon(tmp_path: Path, seconds: float) -> None:
    with pytest.raises(UsageError, match="between 1s and 900s"):
        service(tmp_path).workload_rows(TelemetryQuery(seconds))


def test_queries_that_name_nothing(tmp_path: Path) -> None:
    telemetry = service(tmp_path)
    with pytest.raises(NotFoundError, match="no service nope"):
        telemetry.service_rows(TelemetryQuery(name="nope"))
    with pytest.raises(UsageError, match="name a service"):
        telemetry.route_rows(TelemetryQuery())
    rows = telemetry.workload_rows(TelemetryQuery())["workloads"]
    assert [(r["name"], r["state"]) for r in rows] == [("books-1", "ready")]
