"""Workloads: running instances of a service, registered by their agents (not applied as YAML)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from tulle.model.meta import Labels, ServiceRef

XdsProtocol = Literal["delta", "sotw"]


class WorkloadState(StrEnum):
    STARTING = "starting"  # registered; the sidecar or the application is not ready yet
    READY = "ready"  # receives traffic
    NOT_READY = "not-ready"  # the application stopped accepting connections
    DRAINING = "draining"  # shutting down: removed from every proxy, finishing in-flight work


@dataclass(frozen=True)
class UpstreamBind:
    """``--upstream books:9000``: a local port that always leads to one service."""

    service: ServiceRef
    local_port: int


@dataclass(frozen=True)
class Workload:
    name: str
    namespace: str
    service: str
    version: str
    labels: Labels
    address: str
    app_port: int | None
    inbound_port: int | None
    outbound_port: int
    admin_port: int
    agent_port: int
    upstreams: tuple[UpstreamBind, ...]
    xds_protocol: XdsProtocol
    state: WorkloadState
    registered_at: float
    pid: int

    @property
    def node_id(self) -> str:
        """The Envoy node id of the workload's sidecar."""
        return f"{self.name}.{self.namespace}"

    @property
    def service_ref(self) -> ServiceRef:
        return ServiceRef(self.namespace, self.service)

    @property
    def serves_traffic(self) -> bool:
        return self.state is WorkloadState.READY and self.inbound_port is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "service": self.service,
            "version": self.version,
            "labels": dict(self.labels),
            "address": self.address,
            "appPort": self.app_port,
            "inboundPort": self.inbound_port,
            "outboundPort": self.outbound_port,
            "adminPort": self.admin_port,
            "agentPort": self.agent_port,
            "upstreams": [{"service": u.service.host, "localPort": u.local_port}
                          for u in self.upstreams],
            "xdsProtocol": self.xds_protocol,
            "state": self.state.value,
            "registeredAt": self.registered_at,
            "pid": self.pid,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Workload:
        """Rebuild a workload that this control plane stored itself."""
        upstreams = []
        for bind in data.get("upstreams", ()):
            name, _, namespace = str(bind["service"]).partition(".")
            upstreams.append(UpstreamBind(ServiceRef(namespace, name), int(bind["localPort"])))
        return cls(
            name=data["name"],
            namespace=data["namespace"],
            service=data["service"],
            version=data.get("version", ""),
            labels=tuple(sorted(data.get("labels", {}).items())),
            address=data["address"],
            app_port=data.get("appPort"),
            inbound_port=data.get("inboundPort"),
            outbound_port=data["outboundPort"],
            admin_port=data["adminPort"],
            agent_port=data["agentPort"],
            upstreams=tuple(upstreams),
            xds_protocol=data.get("xdsProtocol", "delta"),
            state=WorkloadState(data.get("state", WorkloadState.STARTING)),
            registered_at=float(data.get("registeredAt", 0.0)),
            pid=int(data.get("pid", 0)),
        )
