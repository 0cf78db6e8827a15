"""Workload records for model tests, with only the fields a test cares about spelled out."""

from __future__ import annotations

from tulle.model.meta import ServiceRef
from tulle.model.workload import UpstreamBind, Workload, WorkloadState


def workload(name: str, service: str, *, namespace: str = "default",
             state: WorkloadState = WorkloadState.READY, inbound_port: int | None = 15006,
             version: str = "v1", labels: tuple[tuple[str, str], ...] = (),
             upstreams: tuple[tuple[str, str], ...] = ()) -> Workload:
    """``upstreams`` are (namespace, service) pairs, bound to local ports 9000, 9001, ..."""
    return Workload(
        name=name, namespace=namespace, service=service, version=version, labels=labels,
        address="127.0.0.1", app_port=8080, inbound_port=inbound_port, outbound_port=15001,
        agent_port=15020,
        upstreams=tuple(UpstreamBind(ServiceRef(ns, svc), 9000 + i)
                        for i, (ns, svc) in enumerate(upstreams)),
        xds_protocol="delta", state=state, registered_at=0.0, pid=1)
