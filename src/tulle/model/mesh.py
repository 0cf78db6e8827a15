"""The mesh snapshot: one frozen, versioned value that every xDS generator reads.

It is rebuilt from the store's resources and the registry's workloads after each (debounced)
change, and never mutated. Generators are pure functions of (snapshot, proxy).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import cast

from tulle.identity.spiffe import spiffe_id
from tulle.model import route_trials
from tulle.model.authorization import ServiceAuthz, covers_external
from tulle.model.authorization import resolve as resolve_authorization
from tulle.model.external import ExternalServiceSpec, MeshExternal
from tulle.model.httproute import HTTPRouteSpec
from tulle.model.kinds import EXTERNAL_SERVICE, GATEWAY, HTTP_ROUTE, MESH, SERVICE
from tulle.model.meshconfig import MESH_NAME, MeshSpec
from tulle.model.meta import Labels, ResourceKey, ServiceRef, freeze_labels
from tulle.model.policies import (
    NO_POLICY,
    NO_RULE_POLICY,
    Conflict,
    ResolvedPolicies,
    RulePolicy,
    ServicePolicy,
)
from tulle.model.policies import resolve as resolve_policies
from tulle.model.policy import HashKey
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
    policy: ServicePolicy = NO_POLICY
    selector: Labels = ()  # a subset: instances are the namespace's workloads that match
    access_log: bool = False  # its instances write access.log (Service spec.accessLog)
    # No protocol declared: HTTP, and every hop speaks the HTTP version its caller spoke
    # (HTTP/1.1, or HTTP/2 with prior knowledge, h2c): what Envoy can tell safely.
    detected: bool = False


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
    """An HTTPRoute attached to one parent service, with what applies to each rule resolved:
    the rule's TrafficPolicy settings, and the hash key its backends balance on (RingHash)."""

    key: ResourceKey
    spec: HTTPRouteSpec
    rule_policies: tuple[RulePolicy, ...] = ()
    hash_keys: tuple[HashKey | None, ...] = ()

    def rule_policy(self, index: int) -> RulePolicy:
        return self.rule_policies[index] if index < len(self.rule_policies) else NO_RULE_POLICY

    def hash_key(self, index: int) -> HashKey | None:
        return self.hash_keys[index] if index < len(self.hash_keys) else None


@dataclass(frozen=True)
class RouteTrial:
    """A service's routing with its DryRun HTTPRoutes in force (route_trials.py): where the
    control plane evaluates each of its requests, which callers route by ``routes``."""

    routes: tuple[AttachedRoute, ...]
    trying: tuple[ResourceKey, ...]  # the DryRun HTTPRoutes that make the difference

    def headers(self) -> tuple[str, ...]:
        """The request headers the trial's routing matches on, lower-case, sorted."""
        return tuple(sorted({header.name.lower() for route in self.routes
                             for rule in route.spec.rules for match in rule.matches
                             for header in match.headers}))


@dataclass(frozen=True)
class MeshIdentity:
    """What the CA contributes to a snapshot: trust domain, bundle, workload certificates."""

    trust_domain: str
    bundle_pem: str
    certificates: Mapping[str, WorkloadCertificate]  # by node id
    crl_pem: str = ""  # the issuers' revocation lists (tulle.identity.crl)
    revocations: str = ""  # a mark of the revoked serials: "" when none


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
    conflicts: tuple[Conflict, ...] = ()  # policies that set the same thing twice
    # AuthorizationPolicy rules by the service they protect; absent: every call is allowed.
    authz: Mapping[ServiceRef, ServiceAuthz] = field(
        default_factory=lambda: MappingProxyType({}))
    # ExternalServices by host, sorted. A host that is also a mesh service's
    # (NAME.NAMESPACE) stays the service's; of two with one host, the first by key wins.
    externals: Mapping[str, MeshExternal] = field(
        default_factory=lambda: MappingProxyType({}))
    # AuthorizationPolicy rules by the ExternalService (host) they guard; enforced by each
    # caller's own sidecar, which resolves them for its identity (egress_authz.py).
    external_authz: Mapping[str, ServiceAuthz] = field(
        default_factory=lambda: MappingProxyType({}))
    # The HTTPRoutes attached to each Gateway (by its key), in name order.
    gateway_routes: Mapping[ResourceKey, tuple[AttachedRoute, ...]] = field(
        default_factory=lambda: MappingProxyType({}))
    # Services whose routing a DryRun HTTPRoute would change, and how. ``resources`` and
    # ``routes`` hold what callers route by: a DryRun route's version in force, if any.
    route_trials: Mapping[ServiceRef, RouteTrial] = field(
        default_factory=lambda: MappingProxyType({}))

    def endpoints_of(self, ref: ServiceRef) -> tuple[Endpoint, ...]:
        return self.endpoints.get(ref, ())


EMPTY_MESH = MeshSnapshot(0, MappingProxyType({}), MappingProxyType({}), MappingProxyType({}),
                          MappingProxyType({}), MappingProxyType({}))


def route_parents(route: Resource) -> list[ServiceRef]:
    """The services an HTTPRoute is attached to (not its Gateways)."""
    return [ref for _, ref in route_parent_fields(route)]


def route_parent_fields(route: Resource) -> list[tuple[str, ServiceRef]]:
    """(field path, service) for every service parent of an HTTPRoute."""
    spec = cast(HTTPRouteSpec, route.spec)
    return [(f"spec.parentRefs[{i}].name", ServiceRef(p.namespace or route.meta.namespace,
                                                       p.name))
            for i, p in enumerate(spec.parent_refs) if p.kind == "Service"]


def route_gateways(route: Resource) -> list[tuple[str, ResourceKey]]:
    """(field path, Gateway) for every Gateway parent of an HTTPRoute."""
    spec = cast(HTTPRouteSpec, route.spec)
    return [(f"spec.parentRefs[{i}].name",
             ResourceKey(GATEWAY.kind, p.namespace or route.meta.namespace, p.name))
            for i, p in enumerate(spec.parent_refs) if p.kind == "Gateway"]


def route_backends(route: Resource) -> list[tuple[str, ServiceRef]]:
    """(field path, service) for every backendRef of an HTTPRoute."""
    spec = cast(HTTPRouteSpec, route.spec)
    return [
        (f"spec.rules[{r}].backendRefs[{b}].name",
         ServiceRef(backend.namespace or route.meta.namespace, backend.name))
        for r, rule in enumerate(spec.rules)
        for b, backend in enumerate(rule.backend_refs)
    ]


def route_mirrors(route: Resource) -> list[tuple[str, ServiceRef]]:
    """(field path, service) for every RequestMirror backend of an HTTPRoute."""
    spec = cast(HTTPRouteSpec, route.spec)
    return [
        (f"spec.rules[{r}].filters[{f}].requestMirror.backendRef.name",
         ServiceRef(item.request_mirror.backend_ref.namespace or route.meta.namespace,
                    item.request_mirror.backend_ref.name))
        for r, rule in enumerate(spec.rules)
        for f, item in enumerate(rule.filters) if item.request_mirror is not None
    ]


def build_mesh(version: int, resources: Iterable[Resource], workloads: Iterable[Workload],
               identity: MeshIdentity = NO_IDENTITY) -> MeshSnapshot:
    staged = route_trials.split(resources)
    by_key = staged.in_force
    ordered = sorted(by_key.values(), key=lambda r: r.key)
    all_workloads = sorted(workloads, key=lambda w: w.node_id)
    mesh_resource = by_key.get(ResourceKey(MESH.kind, "", MESH_NAME))
    settings = cast(MeshSpec, mesh_resource.spec) if mesh_resource else MeshSpec()
    resolved = resolve_policies(ordered)
    selectors = {ServiceRef(r.meta.namespace, r.meta.name): freeze_labels(r.spec.selector)
                 for r in ordered if r.info is SERVICE and r.spec.selector}

    registered: dict[ServiceRef, list[Workload]] = {}
    for workload in all_workloads:
        registered.setdefault(workload.service_ref, []).append(workload)

    def members(ref: ServiceRef) -> list[Workload]:
        selector = selectors.get(ref)
        if selector is None:
            return registered.get(ref, [])
        return [w for w in all_workloads if w.namespace == ref.namespace and w.matches(selector)]

    def service(ref: ServiceRef, protocol: Protocol | None = None, declared: bool = False,
                mode: MtlsMode | None = None, access_log: bool = False) -> MeshService:
        accounts = {spiffe_id(identity.trust_domain, w.namespace, w.account)
                    for w in members(ref)} if identity.trust_domain else set()
        return MeshService(ref, protocol or "http", declared, mode or settings.mtls.mode,
                           tuple(sorted(accounts)), resolved.services.get(ref, NO_POLICY),
                           selectors.get(ref, ()), access_log, detected=protocol is None)

    declared_protocols = {ServiceRef(r.meta.namespace, r.meta.name): r.spec.protocol
                          for r in ordered if r.info is SERVICE}

    def protocol_of(ref: ServiceRef, spec: ServiceSpec) -> Protocol | None:
        """Declared, or for a subset that declares none, that of the service it selects
        (greeter-v2 of a grpc greeter speaks grpc too)."""
        if spec.protocol is not None or not spec.selector or "service" not in spec.selector:
            return spec.protocol
        return declared_protocols.get(ServiceRef(ref.namespace, spec.selector["service"]))

    services: dict[ServiceRef, MeshService] = {}
    for resource in ordered:
        if resource.info is SERVICE:
            spec = cast(ServiceSpec, resource.spec)
            ref = ServiceRef(resource.meta.namespace, resource.meta.name)
            services[ref] = service(ref, protocol_of(ref, spec), True,
                                    spec.mtls.mode if spec.mtls else None,
                                    bool(spec.access_log and spec.access_log.enabled))
    for workload in all_workloads:
        # A client may start before the service it names with --upstream: give it a cluster
        # without endpoints (503 "no healthy upstream") rather than no cluster at all.
        for ref in (workload.service_ref, *(bind.service for bind in workload.upstreams)):
            if ref not in services:
                services[ref] = service(ref)

    routes: dict[ServiceRef, list[Resource]] = {}
    at_gateways: dict[ResourceKey, list[Resource]] = {}
    # Gateway API orders routes of one parent by age, then name; tulle orders by name.
    for resource in ordered:
        if resource.info is not HTTP_ROUTE:
            continue
        referenced = route_backends(resource) + route_mirrors(resource)
        for ref in [ref for _, ref in referenced] + route_parents(resource):
            if ref not in services:
                services[ref] = service(ref)
        for parent in route_parents(resource):
            routes.setdefault(parent, []).append(resource)
        for _, gateway in route_gateways(resource):
            at_gateways.setdefault(gateway, []).append(resource)

    endpoints = {ref: ready for ref in services if (ready := _ready(members(ref)))}
    trials = _trials(staged.trials, routes, services, resolved)
    authz = resolve_authorization(
        ordered, services, identity.trust_domain,
        lambda ref: services[ref].identities if ref in services else (),
        settings.authorization.reveal_policy)
    externals = _externals(ordered, services)
    guarded = resolve_authorization(
        ordered, [external.ref for external in externals.values()], identity.trust_domain,
        lambda ref: services[ref].identities if ref in services else (),
        settings.authorization.reveal_policy, applies=covers_external)
    return MeshSnapshot(
        version=version,
        services=MappingProxyType(dict(sorted(services.items()))),
        endpoints=MappingProxyType(endpoints),
        routes=MappingProxyType({ref: tuple(_attach(r, services, resolved) for r in rs)
                                 for ref, rs in routes.items()}),
        workloads=MappingProxyType({w.node_id: w for w in all_workloads}),
        resources=MappingProxyType(by_key),
        identity=identity,
        settings=settings,
        conflicts=tuple(resolved.conflicts),
        authz=MappingProxyType(dict(authz)),
        externals=externals,
        gateway_routes=MappingProxyType({key: tuple(_attach(r, services, resolved) for r in rs)
                                         for key, rs in at_gateways.items()}),
        external_authz=MappingProxyType({
            host: guarded[external.ref] for host, external in externals.items()
            if external.ref in guarded}),
        route_trials=MappingProxyType(trials),
    )


def _trials(trials: Mapping[ResourceKey, Resource], routes: Mapping[ServiceRef, list[Resource]],
            services: Mapping[ServiceRef, MeshService], resolved: ResolvedPolicies
            ) -> dict[ServiceRef, RouteTrial]:
    """Each service a DryRun route is (or, in its version in force, was) attached to: its
    routes with every DryRun route's candidate version in place of the version in force."""
    affected: dict[ServiceRef, set[ResourceKey]] = {}
    for key, trial in trials.items():
        for parent in route_parents(trial):
            affected.setdefault(parent, set()).add(key)
    for parent, attached in routes.items():
        for resource in attached:
            if resource.key in trials:
                affected.setdefault(parent, set()).add(resource.key)
    out = {}
    for parent, keys in sorted(affected.items()):
        candidate = [r for r in routes.get(parent, []) if r.key not in trials]
        candidate += [trials[k] for k in sorted(trials) if parent in route_parents(trials[k])]
        candidate.sort(key=lambda r: r.key)
        out[parent] = RouteTrial(tuple(_attach(r, services, resolved) for r in candidate),
                                 tuple(sorted(keys)))
    return out


def _externals(ordered: list[Resource], services: Mapping[ServiceRef, MeshService]
               ) -> Mapping[str, MeshExternal]:
    service_hosts = {f"{ref.name}.{ref.namespace}" for ref in services}
    externals: dict[str, MeshExternal] = {}
    for resource in ordered:
        if resource.info is EXTERNAL_SERVICE:
            spec = cast(ExternalServiceSpec, resource.spec)
            if spec.host not in service_hosts and spec.host not in externals:
                externals[spec.host] = MeshExternal(
                    ServiceRef(resource.meta.namespace, resource.meta.name), spec)
    return MappingProxyType(dict(sorted(externals.items())))


def _ready(workloads: Iterable[Workload]) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(workload=w.name, address=w.address, port=w.inbound_port,
                          version=w.version, labels=w.labels)
                 for w in workloads if w.serves_traffic and w.inbound_port is not None)


def _attach(route: Resource, services: Mapping[ServiceRef, MeshService],
            resolved: ResolvedPolicies) -> AttachedRoute:
    spec = cast(HTTPRouteSpec, route.spec)
    hash_keys = []
    for rule in spec.rules:
        key = None
        for backend in rule.backend_refs:
            target = services.get(ServiceRef(backend.namespace or route.meta.namespace,
                                             backend.name))
            balancer = target.policy.load_balancer if target else None
            if balancer is not None and balancer.algorithm == "RingHash":
                key = balancer.hash_key
                break
        hash_keys.append(key)
    return AttachedRoute(route.key, spec,
                         tuple(resolved.rules.get((route.key, i), NO_RULE_POLICY)
                               for i in range(len(spec.rules))),
                         tuple(hash_keys))
