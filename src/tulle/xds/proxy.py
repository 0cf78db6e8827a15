"""What the generators may know about one proxy: a small, hashable value."""

from __future__ import annotations

from dataclasses import dataclass

from tulle.model.workload import UpstreamBind, Workload


@dataclass(frozen=True)
class ProxyInfo:
    node_id: str
    namespace: str
    service: str
    address: str
    app_port: int | None
    inbound_port: int | None
    outbound_port: int
    upstreams: tuple[UpstreamBind, ...]

    @classmethod
    def of(cls, workload: Workload) -> ProxyInfo:
        return cls(
            node_id=workload.node_id,
            namespace=workload.namespace,
            service=workload.service,
            address=workload.address,
            app_port=workload.app_port,
            inbound_port=workload.inbound_port,
            outbound_port=workload.outbound_port,
            upstreams=workload.upstreams,
        )
