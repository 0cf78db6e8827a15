"""What the generators may know about one proxy beyond the mesh snapshot: small, hashable
values (the compiler memoizes on them)."""

from __future__ import annotations

from dataclasses import dataclass

from tulle.model.gateway import GatewayBinding
from tulle.model.taps import NO_TAPS, ProxyTaps
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
    gateway: GatewayBinding | None = None  # an ingress gateway's listener

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
            gateway=workload.gateway,
        )


@dataclass(frozen=True)
class ProxyLogging:
    """What the control plane knows about a proxy's logging: its tap sessions and files."""

    taps: ProxyTaps = NO_TAPS
    tap_token: str = ""  # the credential its access-log stream presents
    access_log_path: str = ""  # where its access log goes when its Service enables it


NO_LOGGING = ProxyLogging()
