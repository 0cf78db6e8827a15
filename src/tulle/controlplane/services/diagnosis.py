"""The control-plane side of `tulle diagnose`: gather the evidence, run the rules.

The evidence is read from the current snapshot and state: a diagnosis never forces a rebuild.
Each sidecar's Envoy ``/clusters`` is read through its agent, all at once with a bound on
concurrency and a deadline per read and per run: a proxy that does not answer in time is
reported (TUL1015) instead of delaying the whole diagnosis.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from types import MappingProxyType
from typing import Any

from tulle.controlplane.agents import Agents, PageRead
from tulle.controlplane.services.telemetry import TelemetryService
from tulle.diagnose.engine import diagnose
from tulle.diagnose.evidence import Evidence, ProxyEvidence, TimeSlot, parse_clusters
from tulle.diagnose.model import Scope
from tulle.identity.status import IdentityStatus
from tulle.model.mesh import MeshSnapshot
from tulle.store.base import Change
from tulle.xds.admission import StreamEvent
from tulle.xds.sync import Nack, ProxySync

DEFAULT_WINDOW_S = 60.0
ADMIN_CONCURRENCY = 64
ADMIN_TIMEOUT_S = 3.0  # one proxy's /clusters
GATHER_DEADLINE_S = 20.0  # every proxy's, together
HISTORY_LIMIT = 50
TIMELINE_S = 600.0  # telemetry slots kept in the evidence: when did errors start?


class DiagnosisService:
    def __init__(self, mesh: Callable[[], MeshSnapshot], telemetry: TelemetryService,
                 sync_views: Callable[[float, Iterable[str]], tuple[ProxySync, ...]],
                 nacks: Callable[[], list[Nack]],
                 stream_events: Callable[[], list[StreamEvent]],
                 identity_status: Callable[[], IdentityStatus],
                 history: Callable[[int], list[Change]], agents: Agents) -> None:
        self._mesh = mesh
        self._telemetry = telemetry
        self._sync_views = sync_views  # by the hub's threshold, with registered workloads
        self._nacks = nacks
        self._identity_status = identity_status
        self._history = history
        self._agents = agents
        self._stream_events = stream_events

    async def run(self, scope: Scope, window_s: float) -> dict[str, Any]:
        started = time.monotonic()
        evidence = await self.gather(window_s)
        result = diagnose(evidence, scope)
        return {
            "scope": scope.to_dict(),
            "windowSeconds": window_s,
            "findings": [f.to_dict() for f in result.findings],
            "ruleErrors": list(result.rule_errors),
            "gathered": {
                "meshVersion": evidence.mesh.version,
                "services": len(evidence.mesh.services),
                "workloads": len(evidence.mesh.workloads),
                "proxiesRead": sum(1 for p in evidence.proxies.values() if p.error is None),
                "proxiesFailed": sorted(n for n, p in evidence.proxies.items() if p.error),
                "seconds": round(time.monotonic() - started, 3),
            },
        }

    async def gather(self, window_s: float) -> Evidence:
        mesh = self._mesh()
        telemetry = self._telemetry
        window = telemetry.window(window_s)
        proxies = await self.read_proxies(mesh.workloads.keys())
        now = time.time()
        return Evidence(
            mesh=mesh,
            window=window,
            nodes=MappingProxyType(dict(telemetry.nodes)),
            proxies=MappingProxyType(proxies),
            xds=MappingProxyType({p.node: p for p in self._sync_views(now, mesh.workloads)}),
            nacks=tuple(self._nacks()),
            stream_events=tuple(self._stream_events()),
            identity=self._identity_status(),
            history=tuple(self._history(HISTORY_LIMIT)),
            now=now,
            timeline=tuple(TimeSlot(now - ago, length, MappingProxyType(dict(sample)))
                           for ago, length, sample in telemetry.windows.slots(TIMELINE_S)),
        )

    async def read_proxies(self, nodes: Iterable[str]) -> dict[str, ProxyEvidence]:
        """Every named sidecar's endpoints, read in parallel through its agent."""
        reads = await self._agents.read_all(
            nodes, "/admin/clusters", {"format": "json"}, concurrency=ADMIN_CONCURRENCY,
            timeout_s=ADMIN_TIMEOUT_S, deadline_s=GATHER_DEADLINE_S)
        return {node: _evidence(read) for node, read in reads.items()}


def _evidence(read: PageRead) -> ProxyEvidence:
    if read.body is None:
        return ProxyEvidence(read.node_id, error=read.error or "no answer")
    try:
        clusters = parse_clusters(json.loads(read.body))
    except (ValueError, AttributeError, TypeError) as exc:
        return ProxyEvidence(read.node_id, error=f"unreadable /clusters: {exc}")
    return ProxyEvidence(read.node_id, MappingProxyType(clusters))
