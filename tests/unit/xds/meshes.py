"""Mesh snapshots for generator and compiler tests, built the way the control plane builds them:
workloads as agents register them, resources parsed from manifests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tulle.model.mesh import MeshSnapshot, build_mesh
from tulle.model.meta import ServiceRef
from tulle.model.parse import Document, parse_documents
from tulle.model.resource import Resource
from tulle.model.workload import UpstreamBind, Workload, WorkloadState
from tulle.xds.proxy import ProxyInfo

Manifest = dict[str, Any]


def workload(name: str, *, service: str | None = None, namespace: str = "default",
             app_port: int | None = 8080, address: str = "10.0.0.1",
             upstreams: Mapping[str, int] | None = None,
             state: WorkloadState = WorkloadState.READY) -> Workload:
    """``name`` is NAME-N of service NAME unless ``service`` says otherwise; ``upstreams``
    maps ``service.namespace`` to a local port, like ``tulle run --upstream``."""
    binds = []
    for host, port in (upstreams or {}).items():
        service_name, _, service_namespace = host.partition(".")
        binds.append(UpstreamBind(ServiceRef(service_namespace or namespace, service_name), port))
    return Workload(
        name=name, namespace=namespace, service=service or name.rsplit("-", 1)[0],
        version="v1", labels=(), address=address, app_port=app_port,
        inbound_port=15006 if app_port is not None else None, outbound_port=15001,
        agent_port=15020, upstreams=tuple(binds), xds_protocol="delta",
        state=state, registered_at=0.0, pid=0)


def service(name: str, protocol: str = "http", namespace: str = "default") -> Manifest:
    return {"apiVersion": "tulle.io/v1alpha1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"protocol": protocol}}


def http_route(name: str, parent: str, rules: Sequence[Manifest],
               namespace: str = "default") -> Manifest:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"parentRefs": [{"name": parent}], "rules": list(rules)}}


def rule(*backends: str | tuple[str, int], prefix: str | None = None,
         exact: str | None = None) -> Manifest:
    """One rule: backends as NAME, NAME.NAMESPACE or (NAME, WEIGHT); one path match."""
    refs = []
    for backend in backends:
        host, weight = backend if isinstance(backend, tuple) else (backend, 1)
        name, _, namespace = host.partition(".")
        refs.append({"name": name, "weight": weight} | ({"namespace": namespace}
                                                        if namespace else {}))
    out: Manifest = {"backendRefs": refs}
    if prefix is not None:
        out["matches"] = [{"path": {"type": "PathPrefix", "value": prefix}}]
    if exact is not None:
        out["matches"] = [{"path": {"type": "Exact", "value": exact}}]
    return out


def parse(*manifests: Manifest) -> tuple[Resource, ...]:
    return parse_documents([Document(f"test.yaml#{i}", m) for i, m in enumerate(manifests, 1)])


def mesh(version: int, workloads: Sequence[Workload] = (),
         manifests: Sequence[Manifest] = ()) -> MeshSnapshot:
    return build_mesh(version, parse(*manifests), workloads)


def proxy(snapshot: MeshSnapshot, node_id: str) -> ProxyInfo:
    return ProxyInfo.of(snapshot.workloads[node_id])
