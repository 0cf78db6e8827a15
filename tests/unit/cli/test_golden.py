"""CLI tables compared with golden files. Regenerate with TULLE_UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tulle.cli import cmd_controlplane, cmd_resources
from tulle.cli.messages import render_warnings
from tulle.xds.sync import ProxySync

GOLDEN = Path(__file__).parent / "golden"
NOW = 1_800_000_000.0

WORKLOADS = [
    {"namespace": "default", "name": "books-1", "service": "books", "version": "v1",
     "state": "ready", "address": "127.0.0.1", "inboundPort": 40001, "appPort": 8080,
     "proxyConnected": True, "registeredAt": NOW - 3725},
    {"namespace": "shop", "name": "client-ab12c", "service": "client", "version": "",
     "state": "starting", "address": "127.0.0.1", "inboundPort": None, "appPort": None,
     "proxyConnected": False, "registeredAt": NOW - 12},
]
# With a reason a probe gave, the table grows a REASON column.
WORKLOADS_NOT_READY = [*WORKLOADS, {
    "namespace": "default", "name": "greeter-2", "service": "greeter", "version": "",
    "state": "not-ready", "stateReason": "the gRPC health check (grpc.health.v1) says "
    "NOT_SERVING", "address": "127.0.0.1", "inboundPort": 40002, "appPort": 50051,
    "proxyConnected": True, "registeredAt": NOW - 30}]
SERVICES = [
    {"namespace": "default", "name": "books", "protocol": "http", "declared": True,
     "workloads": ["books-1", "books-2"], "endpoints": [{"workload": "books-1"}],
     "routes": ["default/split", "default/paths"]},
    {"namespace": "default", "name": "kv", "protocol": "tcp", "declared": False,
     "workloads": [], "endpoints": [], "routes": []},
    {"namespace": "default", "name": "client", "protocol": "http", "declared": False,
     "workloads": [], "clients": ["client-x1", "client-x2"], "endpoints": [], "routes": []},
]
PROXIES = [
    {"node": "books-1.default", "protocol": "delta", "connectedAt": NOW - 90,
     "types": {"CDS": {"state": "SYNCED"}, "EDS": {"state": "SYNCED"},
               "LDS": {"state": "NACKED"}, "RDS": {"state": "PENDING"}}},
]
RESOURCES = [
    {"manifest": {"kind": "HTTPRoute", "metadata": {"namespace": "default", "name": "split"}},
     "revision": 7, "updatedAt": NOW - 86400 * 3},
]
STATUS = {"pid": 4242, "startedAt": NOW - 7200, "version": "0.1.0", "stateDir": "/home/u/.tulle",
          "apiUrl": "http://127.0.0.1:15700", "xdsAddress": "127.0.0.1:15710",
          "identityAddress": "127.0.0.1:15712", "trustDomain": "tulle.local", "services": 2,
          "workloads": 3, "proxiesConnected": 3, "storeRevision": 7, "nacksTotal": 0,
          "xdsWorkers": [4243], "xdsWorkerRestarts": 1}
# Two messages an apply introduced, as the API sends them (Message.to_dict()).
WARNINGS = [
    {"code": "TUL0018", "level": "warning", "title": "A TrafficPolicy setting is ignored",
     "analyzer": "policy-conflicts",
     "resource": {"kind": "TrafficPolicy", "namespace": "default", "name": "books-pool-2"},
     "source": "policies.yaml:9", "field": "spec.connectionPool",
     "message": "Service default/books already gets connectionPool from TrafficPolicy "
                "default/books-pool; this policy's connectionPool is ignored",
     "fix": "set connectionPool for Service default/books in one TrafficPolicy only",
     "docs": "docs/diagnostics/TUL0018.md"},
    {"code": "TUL0003", "level": "error", "title": "TrafficPolicy targets an unknown route rule",
     "analyzer": "references",
     "resource": {"kind": "TrafficPolicy", "namespace": "default", "name": "search-limit"},
     "source": "", "field": "spec.targetRefs[0].sectionName",
     "message": 'HTTPRoute default/books has no rule named "search": the policy applies to '
                "nothing",
     "fix": "its named rules: find", "docs": "docs/diagnostics/TUL0003.md"},
]

CASES: dict[str, tuple[Callable[[Any], str], Any]] = {
    "workloads": (cmd_resources._workloads_table, WORKLOADS),
    "workloads_not_ready": (cmd_resources._workloads_table, WORKLOADS_NOT_READY),
    "services": (cmd_resources._services_table, SERVICES),
    "proxies": (cmd_resources._proxies_table, [ProxySync.from_json(p) for p in PROXIES]),
    "resources": (cmd_resources._resources_table, RESOURCES),
    "status": (cmd_controlplane._status_table, STATUS),
    "apply_warnings": (lambda messages: render_warnings(messages, "apply"), WARNINGS),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_table_matches_golden_file(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tulle.cli.output.time.time", lambda: NOW)
    render, data = CASES[name]
    text = render(data) + "\n"
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("TULLE_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
