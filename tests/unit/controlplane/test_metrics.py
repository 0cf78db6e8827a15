"""The control plane's /metrics: the declared families are the exported ones, they follow
Prometheus's naming rules, and only /metrics accepts the read-only metrics token."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.support.promtext import parse, value
from tests.unit.model.workloads import workload
from tulle.controlplane.api.server import make_api
from tulle.controlplane.app import ControlPlane
from tulle.controlplane.metrics import (
    CONTROLPLANE_FAMILIES,
    controlplane_families,
    controlplane_metrics,
)
from tulle.model.workload import WorkloadState
from tulle.registry.registry import Credentials
from tulle.settings import (
    ControlPlaneEndpoint,
    StatePaths,
    load_or_create_metrics_token,
    read_metrics_token,
)
from tulle.xds.sync import ProxySync, SyncState, TypeSync, with_disconnected
from tulle.xds.types import CLUSTER

T = TypeVar("T")
CREDS = Credentials(xds_token="x" * 20, agent_token="a" * 20)


def control_plane(tmp_path: Path) -> ControlPlane:
    paths = StatePaths(tmp_path / "state")
    paths.ensure()
    load_or_create_metrics_token(paths)
    return ControlPlane(paths, ControlPlaneEndpoint(api_port=1, xds_port=2), "api-token")


def in_loop(tmp_path: Path, body: Callable[[ControlPlane], Awaitable[T]]) -> T:
    """The control plane schedules rebuilds on the running loop: give it one."""
    async def main() -> T:
        cp = control_plane(tmp_path)
        try:
            return await body(cp)
        finally:
            cp.store.close()
    return asyncio.run(main())


def test_exported_families_are_the_declared_ones_with_their_labels(tmp_path: Path) -> None:
    async def body(cp: ControlPlane) -> str:
        cp.registry.register(workload("books-1", "books"), CREDS)
        cp.registry.register(workload("books-2", "books", state=WorkloadState.STARTING), CREDS)
        cp.registry.register(workload("web-1", "web", namespace="shop"), CREDS)
        cp.hub.nacks.by_type[CLUSTER] += 2
        cp.hub.responses.by_type[CLUSTER] += 7
        cp.identity.issued_total = 3
        cp.config.push()
        for family in controlplane_families(cp.metric_sources()):
            _, _, labels = CONTROLPLANE_FAMILIES[family.name]
            assert family.samples, family.name
            for _, sample_labels, _ in family.samples:
                assert tuple(k for k, _ in sample_labels) == labels, family.name
        names = {f.name for f in controlplane_families(cp.metric_sources())}
        assert names == set(CONTROLPLANE_FAMILIES)
        return controlplane_metrics(cp.metric_sources())

    samples = parse(in_loop(tmp_path, body))
    assert value(samples, "tulle_controlplane_workloads", namespace="default",
                 state="ready") == 1
    assert value(samples, "tulle_controlplane_workloads", namespace="default",
                 state="starting") == 1
    assert value(samples, "tulle_controlplane_workloads", namespace="shop",
                 state="draining") == 0
    assert value(samples, "tulle_controlplane_services") == 2
    assert value(samples, "tulle_controlplane_xds_nacks_total", type="CDS") == 2
    assert value(samples, "tulle_controlplane_xds_pushes_total", type="CDS") == 7
    assert value(samples, "tulle_controlplane_xds_pushes_total", type="RDS") == 0
    assert value(samples, "tulle_controlplane_certificates_issued_total") == 3
    # Three registered workloads, no xDS stream: all DISCONNECTED; every other state is 0.
    assert value(samples, "tulle_controlplane_proxies", state="DISCONNECTED") == 3
    assert {dict(labels)["state"]: v for (name, labels), v in samples.items()
            if name == "tulle_controlplane_proxies"} == {
        **{s.value: 0 for s in SyncState}, "DISCONNECTED": 3}
    roles = {dict(labels)["role"] for name, labels in samples
             if name == "tulle_controlplane_ca_expiry_timestamp_seconds"}
    assert roles == {"root", "issuer"}


@pytest.mark.parametrize("name", sorted(CONTROLPLANE_FAMILIES))
def test_names_follow_prometheus_conventions(name: str) -> None:
    kind, text, labels = CONTROLPLANE_FAMILIES[name]
    assert re.fullmatch(r"tulle_controlplane_[a-z0-9_]+", name)
    assert kind in ("counter", "gauge")
    assert name.endswith("_total") == (kind == "counter")
    assert not re.search(r"_(count|sum|bucket)$", name)
    assert text.endswith(".") and "\n" not in text
    assert all(re.fullmatch(r"[a-z_]+", label) and label != "le" for label in labels)


def test_each_proxy_counts_once_in_its_rolled_up_state(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def connected(node: str, *states: SyncState) -> ProxySync:
        return ProxySync(node, 10.0, "delta", 1.0, types=tuple(
            TypeSync(kind, state) for kind, state in zip(("CDS", "LDS"), states, strict=False)))

    streams = [connected("web-1.default", SyncState.SYNCED, SyncState.NACKED),
               connected("web-2.default", SyncState.SYNCED, SyncState.STALE),
               connected("web-3.default", SyncState.PENDING),
               connected("books-1.default", SyncState.SYNCED)]  # books-2: no stream

    async def body(cp: ControlPlane) -> str:
        for name in ("web-1", "web-2", "web-3", "books-1", "books-2"):
            cp.registry.register(workload(name, name.partition("-")[0]), CREDS)
        monkeypatch.setattr(cp.hub, "sync_views", lambda now=None, registered=(): (
            with_disconnected(streams, registered, 10.0)))
        return controlplane_metrics(cp.metric_sources())

    samples = parse(in_loop(tmp_path, body))
    states = {dict(labels)["state"]: v for (name, labels), v in samples.items()
              if name == "tulle_controlplane_proxies"}
    assert states == {"SYNCED": 1, "PENDING": 1, "STALE": 1, "NACKED": 1, "NOT_SENT": 0,
                      "DISCONNECTED": 1}


def test_only_metrics_accepts_the_metrics_token(tmp_path: Path) -> None:
    async def body(cp: ControlPlane) -> dict[tuple[str, str, str], int]:
        metrics_token = cp.paths.metrics_token_file.read_text().strip()
        tokens = {"api": "api-token", "metrics": metrics_token, "none": "", "wrong": "nope"}
        statuses = {}
        app = make_api(cp.services, cp.token, read_metrics_token(cp.paths))
        async with TestClient(TestServer(app)) as client:
            for method, path in (("GET", "/metrics"), ("GET", "/v1/status"),
                                 ("GET", "/v1/workloads"), ("POST", "/v1/shutdown"),
                                 ("GET", "/metrics/")):
                for who, token in tokens.items():
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    response = await client.request(method, path, headers=headers)
                    statuses[(method, path, who)] = response.status
        return statuses

    statuses = in_loop(tmp_path, body)
    assert statuses.pop(("GET", "/metrics", "api")) == 200
    assert statuses.pop(("GET", "/metrics", "metrics")) == 200
    assert statuses.pop(("GET", "/v1/status", "api")) == 200
    assert statuses.pop(("GET", "/v1/workloads", "api")) == 200
    statuses.pop(("POST", "/v1/shutdown", "api"))
    statuses.pop(("GET", "/metrics/", "api"))  # 404: no such route
    assert set(statuses.values()) == {401}, statuses
