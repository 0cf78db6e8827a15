"""Reads of sidecars through their agents (the proxy views and the diagnosis's evidence): only
read-only admin pages, bounded log tails, failures as results, and no forced rebuild."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from tests.support.fakes import FakeAgents
from tests.unit.controlplane.support import registry
from tests.unit.model.workloads import workload
from tulle.cli.cmd_diagnose import render
from tulle.controlplane.services.diagnosis import DiagnosisService
from tulle.controlplane.services.proxies import ProxyService
from tulle.controlplane.services.telemetry import TelemetryService
from tulle.diagnose.model import Scope
from tulle.errors import NotFoundError, StateError, UsageError
from tulle.identity.status import IdentityStatus
from tulle.model.mesh import MeshIdentity, MeshSnapshot, build_mesh
from tulle.store.base import Change
from tulle.xds.config import ProxyConfig
from tulle.xds.proxy import ProxyInfo

BOOKS = "books-1.default"
CLUSTERS = json.dumps({"cluster_statuses": [{"name": "outbound|web.default", "host_statuses": [
    {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15006}},
     "hostname": "web-1", "health_status": {"eds_health_status": "HEALTHY"}}]}]}).encode()


def proxies_service(agents: FakeAgents, connected: list[str]) -> ProxyService:
    def proxy_of(node: str) -> ProxyInfo | None:
        return ProxyInfo(node, "default", "books", "127.0.0.1", 8080, 15006, 15001, ()) \
            if node in connected else None

    def config_for(proxy: ProxyInfo) -> ProxyConfig:
        return ProxyConfig.build(3, {})

    return ProxyService(agents, proxy_of, lambda: sorted(connected), config_for)


@pytest.mark.parametrize("page", ["quitquitquit", "drain_listeners", "logging", "stats/../x"])
def test_only_read_only_admin_pages_are_reachable(page: str) -> None:
    agents = FakeAgents(pages={BOOKS: {}})
    with pytest.raises(UsageError, match="is not available"):
        asyncio.run(proxies_service(agents, [BOOKS]).admin_page(BOOKS, page, {}))
    assert not agents.asked, "a refused page must never reach the agent"


def test_a_readable_page_comes_back_as_the_agent_answered() -> None:
    agents = FakeAgents(pages={BOOKS: {"/admin/clusters": b"{}"}})
    page = asyncio.run(proxies_service(agents, [BOOKS]).admin_page(BOOKS, "clusters",
                                                                   {"format": "json"}))
    assert (page.status, page.body) == (200, b"{}")
    assert agents.asked == [(BOOKS, "/admin/clusters", {"format": "json"})]


@pytest.mark.parametrize("tail", [0, 10_001])
def test_log_tails_are_bounded(tail: int) -> None:
    with pytest.raises(UsageError, match="tail must be between"):
        asyncio.run(proxies_service(FakeAgents(), [BOOKS]).log_lines(BOOKS, tail=tail))


def test_intended_config_needs_a_connected_proxy() -> None:
    service = proxies_service(FakeAgents(), [BOOKS])
    assert service.intended(BOOKS).mesh_version == 3
    with pytest.raises(NotFoundError) as caught:
        service.intended("web-1.default")
    assert caught.value.hint == "connected proxies: books-1.default"


def mesh(*nodes: str) -> MeshSnapshot:
    return build_mesh(5, (), [workload(n.split(".")[0], n.split("-")[0]) for n in nodes],
                      MeshIdentity("", "", MappingProxyType({})))


def test_diagnosis_reads_every_sidecar_and_records_the_ones_that_fail(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    snapshot = mesh(BOOKS, "web-1.default", "auth-1.default")
    agents = FakeAgents(pages={BOOKS: {"/admin/clusters": CLUSTERS},
                               "auth-1.default": {"/admin/clusters": b"not json"}})
    reads: list[int] = []

    def current() -> MeshSnapshot:
        reads.append(1)
        return snapshot

    diagnosis = DiagnosisService(
        current, TelemetryService(reg.get, reg.workloads, current, ""),
        sync_views=lambda now, registered: (), nacks=lambda: [], stream_events=lambda: [],
        identity_status=IdentityStatus,
        history=_no_history, agents=agents)
    result: dict[str, Any] = asyncio.run(diagnosis.run(Scope(), 60.0))
    gathered = result["gathered"]
    assert gathered["meshVersion"] == 5 and gathered["proxiesRead"] == 1
    assert gathered["proxiesFailed"] == ["auth-1.default", "web-1.default"]
    evidence = asyncio.run(diagnosis.gather(60.0))
    assert evidence.proxies[BOOKS].clusters["web.default"][0].hostname == "web-1"
    assert "unreadable /clusters" in (evidence.proxies["auth-1.default"].error or "")
    assert "did not answer" in (evidence.proxies["web-1.default"].error or "")


async def _no_history(limit: int) -> list[Change]:
    return []


def test_a_history_that_cannot_be_read_is_said_and_the_rest_is_judged(
        tmp_path: Path) -> None:
    """etcd without quorum: the history read fails; diagnose still runs, and says what it
    could not read (never "no problems found" as if it saw everything)."""
    reg = registry(tmp_path)
    snapshot = mesh(BOOKS)

    async def unreadable(limit: int) -> list[Change]:
        raise StateError("no etcd endpoint answered (quorum lost?)")

    diagnosis = DiagnosisService(
        lambda: snapshot, TelemetryService(reg.get, reg.workloads, lambda: snapshot, ""),
        sync_views=lambda now, registered: (), nacks=lambda: [], stream_events=lambda: [],
        identity_status=IdentityStatus, history=unreadable, agents=FakeAgents())
    result: dict[str, Any] = asyncio.run(diagnosis.run(Scope(), 60.0))
    assert "quorum lost" in result["gathered"]["historyUnreadable"]
    assert "the change history: no etcd endpoint answered" in render(result)
    assert not render(result).startswith("No problems found in the last")



def test_diagnosis_asks_every_agent_to_report_now_and_says_what_is_missing(
        tmp_path: Path) -> None:
    """An agent that answers gives a fresh report and its processes; one that does not is
    looked up on the host: alive (frozen), or gone when its pid now runs something else."""
    reg = registry(tmp_path)
    snapshot = build_mesh(5, (), [workload("books-1", "books"), workload("web-1", "web"),
                                  workload("auth-1", "auth")],
                          MeshIdentity("", "", MappingProxyType({})))
    answer = {"reported": True, "error": None, "telemetry": "on",
              "agent": {"pid": 10, "state": "S", "command": "tulle run"},
              "envoy": {"pid": 11, "state": "S", "command": "envoy", "answers": True},
              "app": {"pid": 12, "state": "T", "command": "python3 app.py"}}
    agents = FakeAgents(calls={BOOKS: {"/report": answer}})
    looked_up: list[int] = []

    def process(pid: int) -> tuple[str, str]:
        looked_up.append(pid)
        return ("T", "python -m tulle.cli run") if pid == 1 else ("S", "bash")

    diagnosis = DiagnosisService(
        lambda: snapshot, TelemetryService(reg.get, reg.workloads, lambda: snapshot, ""),
        sync_views=lambda now, registered: (), nacks=lambda: [], stream_events=lambda: [],
        identity_status=IdentityStatus, history=_no_history, agents=agents,
        process=process)
    evidence = asyncio.run(diagnosis.gather(60.0))
    books = evidence.reports[BOOKS]
    assert books.answered and books.fresh and books.app is not None and books.app.stopped
    assert books.envoy_answers is True
    web = evidence.reports["web-1.default"]
    assert not web.answered and not web.fresh and web.agent is not None
    assert web.agent.stopped  # pid 1 (the test workloads' pid) runs tulle, stopped
    assert looked_up == [1, 1]  # only the agents that did not answer
    result: dict[str, Any] = asyncio.run(diagnosis.run(Scope(), 60.0))
    gathered = result["gathered"]
    assert gathered["proxiesAsked"] == ["auth-1.default", BOOKS, "web-1.default"]
    assert gathered["proxiesFresh"] == [BOOKS]
    assert [m["proxy"] for m in gathered["proxiesMissing"]] == ["auth-1.default",
                                                                "web-1.default"]
    assert gathered["windowSeconds"] == 60.0
    assert {f["code"] for f in result["findings"]} == {"TUL1036", "TUL1038"}


def test_a_reused_pid_is_not_the_agent() -> None:
    diagnosis = DiagnosisService(
        lambda: build_mesh(1, (), []), None,  # type: ignore[arg-type]
        sync_views=lambda now, registered: (), nacks=lambda: [], stream_events=lambda: [],
        identity_status=IdentityStatus, history=_no_history, agents=FakeAgents(),
        process=lambda pid: ("S", "/usr/bin/sleep 60"))
    agent = diagnosis._agent_process(4242)
    assert agent is not None and not agent.alive
