"""Protocols declared in ways that disagree: a subset speaking another protocol than its
service, HTTP routing on a tcp service, gRPC retries on a service that is not gRPC, a route
sending one protocol's requests to a service of another, and one service given several ports.

A service's protocol is its Service's spec.protocol; a subset that declares none speaks that
of the service it selects (as the mesh snapshot has it); a service without a Service resource,
or one that declares no protocol, is HTTP in whatever version each caller speaks (detected),
which disagrees with nothing but tcp.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from tulle.analysis.codes import (
    GRPC_RETRY_ON_NON_GRPC,
    MIXED_PROTOCOL_BACKEND,
    PORTS_DIFFER,
    ROUTE_ON_TCP_SERVICE,
    SUBSET_PROTOCOL_MISMATCH,
)
from tulle.analysis.engine import AnalysisContext
from tulle.model.httproute import HTTPRouteSpec, RouteRule
from tulle.model.kinds import HTTP_ROUTE, SERVICE
from tulle.model.meta import ServiceRef
from tulle.model.resource import Resource
from tulle.model.service import ServiceSpec

KINDS = (SERVICE, HTTP_ROUTE)
PORT_KINDS = (HTTP_ROUTE,)


class Protocols:
    """Each service's declared protocol, following subsets to the service they select."""

    def __init__(self, resources: Sequence[Resource]) -> None:
        self.declared: dict[ServiceRef, str] = {}
        self.parents: dict[ServiceRef, ServiceRef] = {}
        for resource in resources:
            if resource.info is not SERVICE:
                continue
            spec = cast(ServiceSpec, resource.spec)
            ref = ServiceRef(resource.meta.namespace, resource.meta.name)
            if spec.protocol is not None:
                self.declared[ref] = spec.protocol
            selected = (spec.selector or {}).get("service")
            if selected and selected != ref.name:
                self.parents[ref] = ServiceRef(ref.namespace, selected)

    def of(self, ref: ServiceRef) -> str | None:
        """The protocol ``ref`` speaks, or None: HTTP as each caller speaks it (detected)."""
        if ref in self.declared:
            return self.declared[ref]
        parent = self.parents.get(ref)
        return self.declared.get(parent) if parent is not None else None


def protocol_mismatches(ctx: AnalysisContext) -> None:
    resources = ctx.resources(*KINDS)
    protocols = Protocols(resources)
    for resource in resources:
        if resource.info is SERVICE:
            _subset(ctx, resource, protocols)
        else:
            _route(ctx, resource, protocols)


def _subset(ctx: AnalysisContext, service: Resource, protocols: Protocols) -> None:
    ref = ServiceRef(service.meta.namespace, service.meta.name)
    declared = protocols.declared.get(ref)
    parent = protocols.parents.get(ref)
    if declared is None or parent is None:
        return
    spoken = protocols.declared.get(parent)
    if declared == spoken or (spoken is None and declared != "tcp"):
        return  # the same, or HTTP of any version beside a detected HTTP service
    if "tcp" in (declared, spoken):
        consequence = ("callers of the subset and the sidecars of its instances do not "
                       "speak the same protocol, so calls to the subset fail")
    else:
        consequence = (f"calls to the subset cross the mesh as {declared} and reach the "
                       f"application as {spoken}, which may lose what it needs (gRPC "
                       "trailers, HTTP/2 per-request balancing)")
    speaks = f"declares {spoken}" if spoken else \
        "declares no protocol (HTTP, in the version each caller speaks)"
    ctx.report(SUBSET_PROTOCOL_MISMATCH, service.key, "spec.protocol", subset=ref.host,
               declared=declared, service=parent.host, speaks=speaks,
               consequence=consequence, protocol=spoken or "http")


def _route(ctx: AnalysisContext, route: Resource, protocols: Protocols) -> None:
    spec = cast(HTTPRouteSpec, route.spec)
    namespace = route.meta.namespace
    indexed = [(i, ServiceRef(p.namespace or namespace, p.name))
               for i, p in enumerate(spec.parent_refs) if p.kind == "Service"]
    parents = [parent for _, parent in indexed]
    for p, parent in indexed:
        if protocols.of(parent) == "tcp":
            ctx.report(ROUTE_ON_TCP_SERVICE, route.key, f"spec.parentRefs[{p}]",
                       service=parent.host, ignored=_what_applies(spec.rules))
    parsed = [(parent, protocols.of(parent)) for parent in parents
              if protocols.of(parent) != "tcp"]
    if not parsed:
        return  # nothing of this route applies (TUL0020 says so)
    for r, rule in enumerate(spec.rules):
        backends = [ServiceRef(b.namespace or namespace, b.name) for b in rule.backend_refs]
        for b, backend in enumerate(backends):
            _backend(ctx, route, f"spec.rules[{r}].backendRefs[{b}].name", parsed, backend,
                     protocols.of(backend))
        if rule.retry is not None and rule.retry.grpc_codes:
            targets = backends or [parent for parent, _ in parsed]
            plain = [(ref, protocols.of(ref)) for ref in targets
                     if protocols.of(ref) in ("http", "tcp")]
            if plain:
                ctx.report(GRPC_RETRY_ON_NON_GRPC, route.key,
                           f"spec.rules[{r}].retry.grpcCodes",
                           codes=", ".join(rule.retry.grpc_codes),
                           services=", ".join(ref.host for ref, _ in plain),
                           protocols=", ".join(str(p) for _, p in plain))


def _backend(ctx: AnalysisContext, route: Resource, field: str,
             parents: list[tuple[ServiceRef, str | None]], backend: ServiceRef,
             spoken: str | None) -> None:
    for parent, protocol in parents:
        if spoken is None or spoken == protocol or (protocol is None and spoken != "tcp"):
            continue
        if spoken == "tcp":
            consequence = (f"the requests reach {backend.host}'s application as the bytes of "
                           "HTTP requests, which a tcp application does not expect")
        else:
            consequence = (f"{parent.host}'s callers speak "
                           f"{protocol or 'HTTP (any version)'}, {backend.host}'s "
                           f"application expects {spoken}")
        ctx.report(MIXED_PROTOCOL_BACKEND, route.key, field, parent=parent.host,
                   parent_protocol=protocol or "no protocol declared", backend=backend.host,
                   backend_protocol=spoken, consequence=consequence)


def _what_applies(rules: Sequence[RouteRule]) -> str:
    parts = ["matches"]
    if any(rule.backend_refs for rule in rules):
        parts.append("backendRefs")
    if any(rule.retry for rule in rules):
        parts.append("retries")
    if any(rule.timeouts for rule in rules):
        parts.append("timeouts")
    if any(rule.filters for rule in rules):
        parts.append("filters")
    return ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else parts[0]


def service_ports(ctx: AnalysisContext) -> None:
    """TUL0023: one service referenced with several ports across HTTPRoutes."""
    uses: dict[ServiceRef, dict[int, list[tuple[Resource, str]]]] = {}
    for route in ctx.resources(*PORT_KINDS):
        spec = cast(HTTPRouteSpec, route.spec)
        namespace = route.meta.namespace
        for p, parent in enumerate(spec.parent_refs):
            if parent.port is not None and parent.kind == "Service":
                uses.setdefault(ServiceRef(parent.namespace or namespace, parent.name), {}) \
                    .setdefault(parent.port, []).append((route, f"spec.parentRefs[{p}].port"))
        for r, rule in enumerate(spec.rules):
            for b, backend in enumerate(rule.backend_refs):
                if backend.port is not None:
                    uses.setdefault(ServiceRef(backend.namespace or namespace, backend.name),
                                    {}).setdefault(backend.port, []).append(
                        (route, f"spec.rules[{r}].backendRefs[{b}].port"))
    for ref, ports in sorted(uses.items()):
        if len(ports) < 2:
            continue
        where = "; ".join(f"{port} in " + ", ".join(f"{r.key} {f}" for r, f in places)
                          for port, places in sorted(ports.items()))
        first_route, first_field = min((place for places in ports.values() for place in places),
                                       key=lambda place: (place[0].key, place[1]))
        ctx.report(PORTS_DIFFER, first_route.key, first_field, service=ref.host,
                   ports=", ".join(map(str, sorted(ports))), where=where)
