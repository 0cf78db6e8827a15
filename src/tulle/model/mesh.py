"""The mesh snapshot: one frozen, versioned value that every xDS generator reads.

It is rebuilt from the store's resources and the registry's workloads after each (debounced)
change, and never mutated. Generators are pure functions of (snapshot, proxy).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

from tulle.identity.spiffe import spiffe_id
from tulle.model.httproute import HTTPRouteSpec
from tulle.model.kinds import HTTP_ROUTE, MESH, SERVICE
from tulle.model.meshconfig import MESH_NAME, MeshSpec
from tulle.model.meta import Labels, ResourceKey, ServiceRef
from tulle.model.resource import Resource
from tulle.model.service import MtlsMode, Protocol, ServiceSpec
from tulle.model.workload import Workload, WorkloadCertificate


@dataclass(frozen=True)
class MeshService:
    ref: ServiceRef
    protocol: Protocol
    declared: bool  # a Service resource exists; otherwise derived from workloads or routes
    mtls_mode: MtlsMode = "STRICT"
    # The SPIFFE IDs its instances may present; callers accept no other.
    identities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    """A ready workload's inbound listener: where other sidecars send the service's traffic."""

    workload: str
    address: str
    port: int
    version: str
    labels: Labels


@dataclass(frozen=True)
class AttachedRoute:
    """An HTTPRoute attached to one parent service, with its references resolved."""

    key: ResourceKey
    spec: HTTPRouteSpec


@dataclass(frozen=True)
class MeshIdentity:
    """What the CA contributes to a snapshot: trust domain, bundle, workload certificates."""

    trust_domain: str
    bundle_pem: str
    certificates: Mapping[str, WorkloadCertificate]  # by node id


NO_IDENTITY = MeshIdentity("", "", MappingProxyType({}))


@dataclass(frozen=True)
class MeshSnapshot:
    version: int
    services: Mapping[ServiceRef, MeshService]
    endpoints: Mapping[ServiceRef, tuple[Endpoint, ...]]
    routes: Mapping[ServiceRef, tuple[AttachedRoute, ...]]
    workloads: Mapping[str, Workload]  # by node id
    resources: Mapping[ResourceKey, Resource]
    identity: MeshIdentity = NO_IDENTITY
    settings: MeshSpec = MeshSpec()

    def endpoints_of(self, ref: ServiceRef) -> tuple[Endpoint, ...]:
        return self.endpoints.get(ref, ())


EMPTY_MESH = MeshSnapshot(0, MappingProxyType({}), MappingProxyType({}), MappingProxyType({}),
                          MappingProxyType({}), MappingProxyType({}))


def route_parents(route: Resource) -> list[ServiceRef]:
    spec = cast(HTTPRouteSpec, route.spec)
    return [ServiceRef(p.namespace or route.meta.namespace, p.name) for p in spec.parent_refs]


def route_backends(route: Resource) -> list[tuple[str, ServiceRef]]:
    """(field path, service) for every backendRef of an HTTPRoute."""
    spec = cast(HTTPRouteSpec, route.spec)
    return [
        (f"spec.rules[{r}].backendRefs[{b}].name",
         ServiceRef(backend.namespace or route.meta.namespace, backend.name))
        for r, rule in enumerate(spec.rules)
        for b, backend in enumerate(rule.backend_refs)
    ]


def build_mesh(version: int, resources: Iterable[Resource], workloads: Iterable[Workload],
               identity: MeshIdentity = NO_IDENTITY) -> MeshSnapshot:
    by_key = {resource.key: resource for resource in resources}
    all_workloads = sorted(workloads, key=lambda w: w.node_id)
    mesh_resource = by_key.get(ResourceKey(MESH.kind, "", MESH_NAME))
    settings = cast(MeshSpec, mesh_resource.spec) if mesh_resource else MeshSpec()
    default_mode = settings.mtls.mode
    identities: dict[ServiceRef, set[str]] = {}
    for workload in all_workloads if identity.trust_domain else ():
        identities.setdefault(workload.service_ref, set()).add(
            spiffe_id(identity.trust_domain, workload.namespace, workload.account))

    def derived(ref: ServiceRef) -> MeshService:
        return MeshService(ref, "http", declared=False, mtls_mode=default_mode,
                           identities=tuple(sorted(identities.get(ref, ()))))

    services: dict[ServiceRef, MeshService] = {}
    for resource in by_key.values():
        if resource.info is SERVICE:
            ref = ServiceRef(resource.meta.namespace, resource.meta.name)
            spec = cast(ServiceSpec, resource.spec)
            services[ref] = MeshService(
                ref, spec.protocol, declared=True,
                mtls_mode=spec.mtls.mode if spec.mtls else default_mode,
                identities=tuple(sorted(identities.get(ref, ()))))
    for workload in all_workloads:
        ref = workload.service_ref
        services.setdefault(ref, derived(ref))
        # A client may start before the service it names with --upstream: give it a cluster
        # without endpoints (503 "no healthy upstream") rather than no cluster at all.
        for bind in workload.upstreams:
            services.setdefault(bind.service, derived(bind.service))

    routes: dict[ServiceRef, list[AttachedRoute]] = {}
    # Gateway API orders routes of one parent by age, then name; tulle orders by name.
    for resource in sorted(by_key.values(), key=lambda r: r.key):
        if resource.info is not HTTP_ROUTE:
            continue
        for _, backend in route_backends(resource):
            services.setdefault(backend, derived(backend))
        for parent in route_parents(resource):
            services.setdefault(parent, derived(parent))
            routes.setdefault(parent, []).append(
                AttachedRoute(resource.key, cast(HTTPRouteSpec, resource.spec)))

    endpoints: dict[ServiceRef, list[Endpoint]] = {}
    for workload in all_workloads:
        if workload.serves_traffic and workload.inbound_port is not None:
            endpoints.setdefault(workload.service_ref, []).append(Endpoint(
                workload=workload.name, address=workload.address, port=workload.inbound_port,
                version=workload.version, labels=workload.labels))

    return MeshSnapshot(
        version=version,
        services=MappingProxyType(dict(sorted(services.items()))),
        endpoints=MappingProxyType({ref: tuple(eps) for ref, eps in endpoints.items()}),
        routes=MappingProxyType({ref: tuple(rs) for ref, rs in routes.items()}),
        workloads=MappingProxyType({w.node_id: w for w in all_workloads}),
        resources=MappingProxyType(by_key),
        identity=identity,
        settings=settings,
    )
