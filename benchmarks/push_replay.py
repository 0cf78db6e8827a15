"""In-process replay of the push path: compile and offer one change to N proxies' streams.

`python -m benchmarks.push_replay [N]` (default 1,000): the synthetic benchmark's mesh (1,000
Services, 1,500 workloads with certificates), N streams (half Delta, half SotW) subscribed as
Envoy subscribes (timed: the first configs, as in a storm), then one push each of: nothing
changed, an endpoint added, that endpoint removed, an HTTPRoute's weights flipped. Prints the
control plane's own work per push (compile and ``offer``, no gRPC), in total and per proxy.
No timing is asserted anywhere.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from tests.unit.xds.meshes import parse, service, workload

from tulle.model.mesh import MeshIdentity, MeshSnapshot, build_mesh
from tulle.model.resource import Resource
from tulle.model.workload import Workload, WorkloadCertificate
from tulle.xds import types
from tulle.xds.compiler import ConfigCompiler
from tulle.xds.proxy import ProxyInfo
from tulle.xds.stream import DeltaStream, SotwStream, XdsStream

SERVICES = 1000


def _service(i: int) -> str:
    return f"svc-{i:04d}"


def _route(weight: int) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "bench-split", "namespace": "default"},
            "spec": {"parentRefs": [{"name": _service(0)}], "rules": [{"backendRefs": [
                {"name": _service(1), "weight": weight},
                {"name": _service(2), "weight": 100 - weight}]}]}}


def _workloads() -> list[Workload]:
    replicas = [(i, "a") for i in range(SERVICES)] + [(i, "b") for i in range(0, SERVICES, 2)]
    return [workload(f"{_service(i)}-{r}", service=_service(i),
                     address=f"10.{slot // 62500}.{slot // 250 % 250}.{slot % 250}")
            for slot, (i, r) in enumerate(replicas)]


def _identity(workloads: Sequence[Workload]) -> MeshIdentity:
    return MeshIdentity("bench.local", "BUNDLE", MappingProxyType({
        w.node_id: WorkloadCertificate(f"spiffe://bench.local/ns/default/sa/{w.service}", "1",
                                       0, 1e10, "issuer", "CHAIN " + w.node_id,
                                       f"/keys/{w.node_id}", 0)
        for w in workloads}))


def _subscribe(stream: XdsStream, names: dict[str, list[str]]) -> None:
    for type_url in types.PUSH_ORDER:
        if isinstance(stream, SotwStream):
            stream.handle_request(discovery_pb2.DiscoveryRequest(
                type_url=type_url, resource_names=names.get(type_url, [])))
        else:
            stream.handle_request(discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, resource_names_subscribe=names.get(type_url, [])))


def main(proxies: int) -> None:
    workloads = _workloads()
    identity = _identity(workloads)
    services = [service(_service(i)) for i in range(SERVICES)]
    routes: dict[int, tuple[Resource, ...]] = {w: parse(*services, _route(w)) for w in (10, 90)}
    compiler = ConfigCompiler()
    infos = [ProxyInfo.of(w) for w in workloads[:proxies]]
    versions = iter(range(1, 100))

    def mesh(weight: int, extra: Sequence[Workload] = ()) -> MeshSnapshot:
        return build_mesh(next(versions), routes[weight], [*workloads, *extra], identity)

    first = mesh(10)
    streams: list[XdsStream] = []
    started = time.perf_counter()
    for i, info in enumerate(infos):
        stream: XdsStream = (DeltaStream if i % 2 == 0 else SotwStream)(info.node_id,
                                                                         lambda nack: None)
        config = compiler.compile(first, info)
        stream.offer(config)
        _subscribe(stream, {t: sorted(config.of_type(t)) for t in
                            (types.ENDPOINT, types.ROUTE, types.SECRET)})
        streams.append(stream)
    took = time.perf_counter() - started
    print(f"{'first configs (connect, subscribe)':34s} {took * 1000:8.1f} ms  "
          f"{took / len(infos) * 1e6:7.1f} us/proxy")

    def push(snapshot: MeshSnapshot, label: str) -> None:
        started, sent = time.perf_counter(), 0
        for info, stream in zip(infos, streams, strict=True):
            sent += sum(map(len, stream.offer(compiler.compile(snapshot, info))))
        took = time.perf_counter() - started
        print(f"{label:34s} {took * 1000:8.1f} ms  {took / len(infos) * 1e6:7.1f} us/proxy  "
              f"{sent / 2**20:7.1f} MiB sent")

    added = workload("added-1", service=_service(3), address="10.200.0.1")
    push(mesh(10), "nothing changed (first after subscribing)")
    push(mesh(10, [added]), "endpoint added")
    push(mesh(10), "endpoint removed")
    push(mesh(90), "route changed")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
