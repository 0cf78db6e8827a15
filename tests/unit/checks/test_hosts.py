"""The hosts checks: each agent's clock against the middle of its exchange, grouped by host,
and what `tulle check` says of them."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from tests.unit.xds.meshes import workload
from tulle.checks import controlplane as cp
from tulle.controlplane.agents import PageRead
from tulle.controlplane.services.hosts import THIS_HOST, agent_clock, hosts_report


def _read(node: str, their: float | None, sent: float = 100.0, answered: float = 100.2
          ) -> PageRead:
    if their is None:
        return PageRead(node, error="agent did not answer: no answer in time")
    return PageRead(node, json.dumps({"time": their}).encode(), sent_at=sent,
                    answered_at=answered)


@pytest.mark.parametrize(("read", "offset", "uncertainty", "error"), [
    (_read("a.default", 100.1), 0.0, 0.1, None),
    (_read("a.default", 145.1), 45.0, 0.1, None),
    (_read("a.default", 90.0, sent=100.0, answered=102.0), -11.0, 1.0, None),
    (_read("a.default", None), None, 0.0, "agent did not answer: no answer in time"),
    (PageRead("a.default", b"{}", sent_at=1.0, answered_at=2.0), None, 0.0,
     "its agent does not tell its clock (an older tulle?)"),
])
def test_an_agents_offset_is_against_the_middle_of_the_exchange(
        read: PageRead, offset: float | None, uncertainty: float, error: str | None) -> None:
    clock = agent_clock(read)
    assert clock.offset_s == (pytest.approx(offset) if offset is not None else None)
    assert clock.uncertainty_s == pytest.approx(uncertainty) and clock.error == error


def _remote(name: str, address: str) -> Any:
    return dataclasses.replace(workload(name, address=address), key_dir="/keys")


def test_workloads_are_grouped_by_host_with_the_median_offset() -> None:
    workloads = [workload("books-1", address="127.0.0.1"), _remote("web-1", "10.0.0.2"),
                 _remote("web-2", "10.0.0.2"), _remote("web-3", "10.0.0.2"),
                 _remote("api-1", "10.0.0.3")]
    clocks = {"books-1.default": agent_clock(_read("books-1.default", 100.1)),
              "web-1.default": agent_clock(_read("web-1.default", 140.1)),
              "web-2.default": agent_clock(_read("web-2.default", 141.1)),
              "web-3.default": agent_clock(_read("web-3.default", 160.1)),
              "api-1.default": agent_clock(_read("api-1.default", None))}
    silence = {"api-1.default": 42.04}
    report = {h["host"]: h for h in hosts_report(workloads, clocks, silence.get)["hosts"]}
    assert set(report) == {THIS_HOST, "10.0.0.2", "10.0.0.3"}
    assert report[THIS_HOST]["clockOffsetSeconds"] == 0.0 and not report[THIS_HOST]["remote"]
    assert report["10.0.0.2"]["clockOffsetSeconds"] == 41.0  # the median of three
    assert report["10.0.0.2"]["answered"] == 3 and report["10.0.0.2"]["notAnswering"] == []
    assert report["10.0.0.3"]["clockOffsetSeconds"] is None
    assert report["10.0.0.3"]["notAnswering"] == [
        {"node": "api-1.default", "why": "agent did not answer: no answer in time",
         "silentSeconds": 42.0}]


class _Api:
    def __init__(self, hosts: list[dict[str, Any]]) -> None:
        self._hosts = hosts

    def hosts(self) -> dict[str, Any]:
        return {"hosts": self._hosts}


def _host(host: str, offset: float | None, uncertainty: float = 0.01, *,
          silent: tuple[str, ...] = (), silent_s: float | None = None) -> dict[str, Any]:
    return {"host": host, "remote": host != THIS_HOST, "workloads": [f"w.{host}"],
            "answered": 1 if offset is not None else 0, "clockOffsetSeconds": offset,
            "uncertaintySeconds": uncertainty,
            "notAnswering": [{"node": n, "why": "agent did not answer: no answer in time",
                              "silentSeconds": silent_s} for n in silent]}


@pytest.mark.parametrize(("hosts", "status", "says"), [
    ([], "ok", "no workloads registered"),
    ([_host(THIS_HOST, 0.001), _host("10.0.0.2", 0.4)], "ok", "2 host(s) within 1s"),
    ([_host("10.0.0.2", 1.5, uncertainty=0.7)], "ok", "1 host(s) within 1s"),  # the RTT
    ([_host("10.0.0.2", -4.2)], "warning", "host 10.0.0.2's clock is -4.2s"),
    ([_host("10.0.0.2", 40.0)], "failed", "certificates may be refused there"),
    ([_host("10.0.0.2", None, silent=("web-1.default",))], "ok", "no agent answered"),
])
def test_clock_outcomes(hosts: list[dict[str, Any]], status: str, says: str) -> None:
    outcome = cp.hosts_clock(_Api(hosts))  # type: ignore[arg-type]
    assert outcome.status.value == status and says in outcome.message, outcome


@pytest.mark.parametrize(("hosts", "status", "says"), [
    ([], "ok", "no workloads registered"),
    ([_host(THIS_HOST, 0.0), _host("10.0.0.2", 0.0)], "ok", "2 host(s), all 2 agents answer"),
    ([_host("10.0.0.2", None, silent=("web-1.default",))], "failed",
     "host 10.0.0.2: the agent of web-1.default does not answer (agent did not answer"),
    ([_host("10.0.0.2", None, silent=("web-1.default",), silent_s=95.0)], "failed",
     "does not answer (agent did not answer: no answer in time), silent for 95s (since "),
    ([_host("10.0.0.2", None, silent=("web-1.default",))], "failed", "it never reported"),
])
def test_reachable_outcomes(hosts: list[dict[str, Any]], status: str, says: str) -> None:
    outcome = cp.hosts_reachable(_Api(hosts))  # type: ignore[arg-type]
    assert outcome.status.value == status and says in outcome.message, outcome
