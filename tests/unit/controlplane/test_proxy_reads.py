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
from tulle.controlplane.services.diagnosis import DiagnosisService
from tulle.controlplane.services.proxies import ProxyService
from tulle.controlplane.services.telemetry import TelemetryService
from tulle.diagnose.model import Scope
from tulle.errors import NotFoundError, UsageError
from tulle.identity.status import IdentityStatus
from tulle.model.mesh import MeshIdentity, MeshSnapshot, build_mesh
from tulle.xds.compiler import ProxyConfig
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
        history=lambda limit: [], agents=agents)
    result: dict[str, Any] = asyncio.run(diagnosis.run(Scope(), 60.0))
    gathered = result["gathered"]
    assert gathered["meshVersion"] == 5 and gathered["proxiesRead"] == 1
    assert gathered["proxiesFailed"] == ["auth-1.default", "web-1.default"]
    evidence = asyncio.run(diagnosis.gather(60.0))
    assert evidence.proxies[BOOKS].clusters["web.default"][0].hostname == "web-1"
    assert "unreadable /clusters" in (evidence.proxies["auth-1.default"].error or "")
    assert "did not answer" in (evidence.proxies["web-1.default"].error or "")

