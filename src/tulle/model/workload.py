"""Workloads: running instances of a service, registered by their agents (not applied as YAML)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal

from tulle.model.gateway import GatewayBinding
from tulle.model.meta import Labels, ServiceRef

XdsProtocol = Literal["delta", "sotw"]
THIS_HOST = "this host"  # the host of the workloads whose agent runs beside the control plane


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
    agent_port: int
    upstreams: tuple[UpstreamBind, ...]
    xds_protocol: XdsProtocol
    state: WorkloadState
    registered_at: float
    pid: int
    service_account: str = ""  # empty: the service's name
    agent_version: str = ""  # tulle's version in its agent; empty: not reported
    # Why it is not ready, as its agent's probe found ("the gRPC health check (grpc.health.v1)
    # says NOT_SERVING"); empty when ready or not said.
    state_reason: str = ""
    # A workload on another host (joined with a join token): its identity directory there,
    # which its agent names; empty for this host's, whose directory the control plane knows.
    key_dir: str = ""
    # An ingress gateway (`tulle gateway run`): its service is its Gateway's name.
    gateway: GatewayBinding | None = None

    @property
    def remote(self) -> bool:
        """Whether it joined from another host (its agent's port is not reachable)."""
        return bool(self.key_dir)

    @property
    def host(self) -> str:
        """The host it runs on, as `check` and `diagnose` group workloads: its address when it
        joined from another host, else the control plane's own."""
        return self.address if self.remote else THIS_HOST

    @property
    def account(self) -> str:
        """The service account its identity is issued for."""
        return self.service_account or self.service

    @property
    def node_id(self) -> str:
        """The Envoy node id of the workload's sidecar."""
        return f"{self.name}.{self.namespace}"

    @cached_property
    def service_ref(self) -> ServiceRef:
        # Cached: the analyzers and the mesh build read it for every workload, per apply.
        return ServiceRef(self.namespace, self.service)

    def matches(self, selector: Labels) -> bool:
        """Whether a Service's selector picks this workload: its own labels, plus "service"
        (the service it registered under) and "version" when it has one."""
        labels = dict(self.labels)
        labels["service"] = self.service
        if self.version:
            labels["version"] = self.version
        return all(labels.get(key) == value for key, value in selector)

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
            "agentPort": self.agent_port,
            "upstreams": [{"service": u.service.host, "localPort": u.local_port}
                          for u in self.upstreams],
            "xdsProtocol": self.xds_protocol,
            "state": self.state.value,
            "stateReason": self.state_reason,
            "registeredAt": self.registered_at,
            "pid": self.pid,
            "serviceAccount": self.account,
            "agentVersion": self.agent_version,
            **({"keyDir": self.key_dir} if self.key_dir else {}),
            **({"gateway": {"port": self.gateway.port,
                            "listenAddress": self.gateway.listen_address,
                            "tlsCert": self.gateway.tls_cert, "tlsKey": self.gateway.tls_key}}
               if self.gateway else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Workload:
        """Rebuild a workload that this control plane stored itself. Fields it no longer
        keeps (``adminPort``: Envoy's admin is a socket only its agent knows) are ignored."""
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
            agent_port=data["agentPort"],
            upstreams=tuple(upstreams),
            xds_protocol=data.get("xdsProtocol", "delta"),
            state=WorkloadState(data.get("state", WorkloadState.STARTING)),
            registered_at=float(data.get("registeredAt", 0.0)),
            pid=int(data.get("pid", 0)),
            service_account=str(data.get("serviceAccount", "")),
            agent_version=str(data.get("agentVersion", "")),
            state_reason=str(data.get("stateReason", "")),
            key_dir=str(data.get("keyDir", "")),
            gateway=GatewayBinding(int(gateway["port"]), str(gateway["listenAddress"]),
                                   str(gateway.get("tlsCert", "")),
                                   str(gateway.get("tlsKey", "")))
            if (gateway := data.get("gateway")) else None,
        )


@dataclass(frozen=True)
class WorkloadCertificate:
    """A workload's current certificate. The key stays on the workload's host: Envoy reads it
    from ``key_path``; the control plane knows only the path."""

    spiffe_id: str
    serial: str
    not_before: float
    not_after: float
    issuer_id: str
    chain_pem: str
    key_path: str
    issued_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"spiffeId": self.spiffe_id, "serial": self.serial,
                "notBefore": self.not_before, "notAfter": self.not_after,
                "issuerId": self.issuer_id, "chainPem": self.chain_pem,
                "keyPath": self.key_path, "issuedAt": self.issued_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkloadCertificate:
        return cls(spiffe_id=data["spiffeId"], serial=data["serial"],
                   not_before=float(data["notBefore"]), not_after=float(data["notAfter"]),
                   issuer_id=data["issuerId"], chain_pem=data["chainPem"],
                   key_path=data["keyPath"], issued_at=float(data["issuedAt"]))
