"""Replicas that vanish from etcd: lost (lease ran out) or departed (a clean stop), and what
`tulle check` says of them."""

from __future__ import annotations

from typing import Any, cast

from tulle.checks.client import CheckApi
from tulle.checks.controlplane import replicas_answering
from tulle.controlplane.lostreplicas import LostReplicas

B = {"host": "127.0.0.1", "agentHost": "10.0.0.2", "apiPort": 7001}
C = {"host": "127.0.0.1", "agentHost": "10.0.0.3", "apiPort": 7001}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_replica_that_vanishes_without_a_goodbye_is_lost_with_what_it_held() -> None:
    clock = Clock()
    lost = LostReplicas(keep_s=900, clock=clock)
    lost.seen({"b": B, "c": C}, {"c": ["web-3.default", "books-3.default"]}, set())
    clock.now = 1003.0
    assert lost.vanished({"b": B})
    lost.seen({"b": B}, {}, set())
    assert lost.rows() == [{"replica": "c", "host": "10.0.0.3", "lastSeen": 1000.0,
                            "workloads": ["books-3.default", "web-3.default"]}]
    clock.now = 1006.0
    lost.seen({"b": B}, {}, set())
    assert [r["replica"] for r in lost.rows()] == ["c"], "still lost while it stays away"
    lost.seen({"b": B, "c": C}, {}, set())
    assert lost.rows() == [], "back"


def test_a_lost_replica_keeps_the_workloads_that_the_lagging_view_still_shows() -> None:
    clock = Clock()
    lost = LostReplicas(keep_s=900, clock=clock)
    lost.seen({"b": B, "c": C}, {"c": ["web-3.default"]}, set())
    clock.now = 1003.0
    # The replica is gone from etcd; the watch has not yet applied its registrations' removal.
    lost.seen({"b": B}, {"c": ["web-3.default", "books-3.default"]}, set())
    assert lost.rows()[0]["workloads"] == ["books-3.default", "web-3.default"]


def test_a_clean_stop_is_not_a_loss_and_a_loss_is_forgotten_in_time() -> None:
    clock = Clock()
    lost = LostReplicas(keep_s=900, clock=clock)
    lost.seen({"b": B, "c": C}, {}, set())
    lost.seen({"c": C}, {}, {"b"})
    assert lost.rows() == []
    lost.seen({}, {}, set())
    assert [r["replica"] for r in lost.rows()] == ["c"]
    clock.now += 901
    lost.seen({}, {}, set())
    assert lost.rows() == []


class Api:
    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report

    def replicas(self) -> dict[str, Any]:
        return self.report


def _rows(*silent: str) -> list[dict[str, Any]]:
    return [{"replica": r, "host": "127.0.0.1", "apiPort": 7001, "agentHost": "10.0.0.1",
             "answered": r not in silent, "why": "TimeoutError"} for r in ("a", "b")]


def test_check_names_a_lost_replica_its_host_since_when_and_its_workloads() -> None:
    report = {"store": "etcd", "replicas": _rows(), "lost": [
        {"replica": "c", "host": "10.0.0.3", "lastSeen": 0.0,
         "workloads": ["books-3.default"]}]}
    outcome = replicas_answering(cast(CheckApi, Api(report)))
    assert outcome.status == "failed"
    assert "replica c on host 10.0.0.3 is lost, silent for" in outcome.message
    assert "(since " in outcome.message and "books-3.default" in outcome.message
    assert "2 of 2 announced answer" in outcome.message


def test_check_names_the_host_of_a_replica_that_does_not_answer() -> None:
    outcome = replicas_answering(cast(CheckApi, Api({"store": "etcd",
                                                     "replicas": _rows("b"), "lost": []})))
    assert outcome.status == "failed"
    assert "replica b at 127.0.0.1:7001 on host 10.0.0.1 does not answer" in outcome.message
    healthy = replicas_answering(cast(CheckApi, Api({"store": "etcd", "replicas": _rows(),
                                                     "lost": []})))
    assert healthy.status == "ok", healthy.message


def test_a_lost_replicas_workloads_that_registered_elsewhere_are_not_out_of_the_mesh() -> None:
    lost = LostReplicas()
    lost.seen({"c": C}, {"c": ["web-3.default", "books-3.default"]}, set())
    lost.seen({}, {}, set())
    [row] = lost.rows(registered={"web-3.default"})
    assert row["workloads"] == ["books-3.default"]


def test_a_lost_replicas_workloads_still_in_the_lagging_view_are_out_of_the_mesh() -> None:
    """The view of registrations can still show the lost replica's own (the watch has not
    applied its lease's deletions): those do not count as registered again."""
    lost = LostReplicas()
    lost.seen({"b": B, "c": C}, {"c": ["web-3.default", "books-3.default"]}, set())
    lost.seen({"b": B}, {"c": ["web-3.default", "books-3.default"]}, set())
    lagging = [("b", "books-2.default"), ("c", "books-3.default"), ("c", "web-3.default")]
    [row] = lost.rows_against((), lagging)
    assert row["workloads"] == ["books-3.default", "web-3.default"]
    # web-3 registered again, with b; books-3 with this replica.
    [row] = lost.rows_against(["books-3.default"], [*lagging, ("b", "web-3.default")])
    assert row["workloads"] == []
