"""A workload's stored record: it round-trips, and a record of an older control plane (which
kept Envoy's admin port) still loads."""

from __future__ import annotations

import dataclasses

from tests.unit.model.workloads import workload
from tulle.model.workload import Workload

BOOKS = dataclasses.replace(workload("books-1", "books", upstreams=(("default", "authors"),)),
                            service_account="books")


def test_a_record_round_trips_and_holds_no_admin_port() -> None:
    record = BOOKS.to_dict()
    assert Workload.from_dict(record) == BOOKS
    assert "adminPort" not in record


def test_an_older_record_with_an_admin_port_still_loads() -> None:
    assert Workload.from_dict({**BOOKS.to_dict(), "adminPort": 15000}) == BOOKS
