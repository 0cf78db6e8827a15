"""What the mesh looks like now: services, workloads and the proxies' xDS state, read from the
current snapshot (reads never rebuild it), and the one call that does push: ``sync``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tulle.controlplane.services import WaitSynced
from tulle.model.mesh import MeshSnapshot
from tulle.model.meta import ServiceRef
from tulle.model.workload import Workload
from tulle.registry.registry import WorkloadRegistry

MAX_SYNC_WAIT_S = 60.0


@dataclass(frozen=True)
class SyncResult:
    mesh_version: int
    synced: bool
    proxies: tuple[str, ...]


class MeshViews:
    """``push_pending``: build the snapshot now if a change waits for its debounce."""

    def __init__(self, mesh: Callable[[], MeshSnapshot], registry: WorkloadRegistry,
                 connected: Callable[[], list[str]], push_pending: Callable[[], None],
                 wait_synced: WaitSynced,
                 remote: Callable[[], list[tuple[str, Workload]]] = list) -> None:
        """``remote``: (replica, workload) registered with the other replicas of a shared
        store."""
        self._remote = remote
        self._mesh = mesh
        self._registry = registry
        self._connected = connected
        self._push_pending = push_pending
        self._wait_synced = wait_synced

    def mesh(self) -> MeshSnapshot:
        return self._mesh()

    def services(self, namespace: str | None) -> list[dict[str, Any]]:
        mesh = self._mesh()
        out = []
        for ref, service in mesh.services.items():
            if namespace is not None and ref.namespace != namespace:
                continue
            # Its instances: the workloads registered under it, or those its selector picks
            # (a subset). A pure client (no --port) is a caller, never an endpoint.
            members = [w for w in mesh.workloads.values()
                       if w.service_ref == ref or (service.selector
                                                   and w.namespace == ref.namespace
                                                   and w.matches(service.selector))]
            out.append({
                "name": ref.name,
                "namespace": ref.namespace,
                "protocol": service.protocol,
                "declared": service.declared,
                "workloads": [w.name for w in members if w.app_port is not None],
                "clients": [w.name for w in members if w.app_port is None],
                "endpoints": [{"workload": e.workload, "address": e.address, "port": e.port}
                              for e in mesh.endpoints_of(ref)],
                "routes": [f"{r.key.namespace}/{r.key.name}" for r in mesh.routes.get(ref, ())],
            })
        return out

    def workloads(self, namespace: str | None, service: str | None) -> list[dict[str, Any]]:
        connected = set(self._connected())
        local = self._registry.workloads()
        mine = {w.node_id for w in local}
        everyone = [(None, w) for w in local] + [
            (replica, w) for replica, w in self._remote() if w.node_id not in mine]
        out = []
        for replica, workload in sorted(everyone, key=lambda e: e[1].node_id):
            if namespace is not None and workload.namespace != namespace:
                continue
            if service is not None and workload.service_ref != ServiceRef(workload.namespace,
                                                                            service):
                continue
            view = workload.to_dict()
            # Registered with another replica: its session and stream are that one's.
            view["replica"] = replica
            view["agentConnected"] = (self._registry.is_connected(workload.node_id)
                                      if replica is None else None)
            view["proxyConnected"] = workload.node_id in connected if replica is None else None
            out.append(view)
        return out

    async def sync(self, version: int | None, timeout_s: float) -> SyncResult:
        """Apply pending changes now, then wait until every connected proxy has ACKed them
        (or the given mesh version)."""
        self._push_pending()
        wanted = self._mesh().version if version is None else version
        synced = await self._wait_synced(wanted, min(timeout_s, MAX_SYNC_WAIT_S))
        return SyncResult(wanted, synced, tuple(self._connected()))
