"""What a tap session watches, which sidecars must log for it, and which requests are its.

- A **workload**: its sidecar's inbound and outbound requests.
- A **service**: the inbound side of each of its instances, and the outbound side of every
  sidecar (any of them may call it), narrowed there to requests for that service. Caller-side
  outcomes (UO, UH, UF, NR, FI, UT) exist only there.

Everything here is pure: the control plane recomputes the plan with each mesh snapshot, so an
instance that starts while a service is tapped is tapped too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from tulle.errors import NotFoundError, UsageError
from tulle.model.kinds import closest
from tulle.model.mesh import MeshSnapshot
from tulle.model.meta import ServiceRef, dns_label_problem
from tulle.model.service import is_http
from tulle.model.taps import NO_TAPS, ProxyTaps
from tulle.model.workload import Workload
from tulle.tap.events import Event
from tulle.xds import names

TargetKind = Literal["service", "workload"]
_PREFIXES: dict[str, TargetKind] = {"service": "service", "svc": "service",
                                    "workload": "workload", "wl": "workload"}
TapPlan = Mapping[str, ProxyTaps]  # by node id
EMPTY_PLAN: TapPlan = MappingProxyType({})


@dataclass(frozen=True)
class TapTarget:
    kind: TargetKind
    namespace: str
    name: str

    @property
    def service(self) -> ServiceRef:
        return ServiceRef(self.namespace, self.name)

    @property
    def node_id(self) -> str:
        return f"{self.name}.{self.namespace}"

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name}


def resolve_target(mesh: MeshSnapshot, text: str, namespace: str) -> TapTarget:
    """``NAME``, ``service/NAME`` or ``workload/NAME`` in ``namespace``."""
    prefix, _, rest = text.partition("/")
    kind = _PREFIXES.get(prefix) if rest else None
    name = rest if kind is not None else text
    if rest and kind is None:
        raise UsageError(f"{text!r}: unknown kind {prefix!r}",
                         hint="tap SERVICE, WORKLOAD, service/NAME or workload/NAME")
    for what, value in (("name", name), ("namespace", namespace)):
        if (why := dns_label_problem(value)) is not None:
            raise UsageError(f"cannot tap {text!r}: the {what} {why}",
                             hint="list what runs with `tulle get services` and "
                                  "`tulle get workloads`")
    service = mesh.services.get(ServiceRef(namespace, name))
    workload = mesh.workloads.get(f"{name}.{namespace}")
    if kind is None and service is not None and workload is not None:
        raise UsageError(f"{name!r} is both a service and a workload in namespace {namespace}",
                         hint=f"say which: `tulle tap service/{name}` or "
                              f"`tulle tap workload/{name}`")
    if service is not None and kind in (None, "service"):
        if not is_http(service.protocol):
            raise UsageError(f"service {namespace}/{name} is a TCP service: tap shows HTTP "
                             "requests only",
                             hint="tap an HTTP service, or the workloads that call it")
        return TapTarget("service", namespace, name)
    if workload is not None and kind in (None, "workload"):
        return TapTarget("workload", namespace, name)
    raise _not_found(mesh, kind, name, namespace)


def _not_found(mesh: MeshSnapshot, kind: TargetKind | None, name: str,
               namespace: str) -> NotFoundError:
    services = [ref.name for ref in mesh.services if ref.namespace == namespace]
    workloads = [w.name for w in mesh.workloads.values() if w.namespace == namespace]
    candidates = {"service": services, "workload": workloads}.get(kind or "",
                                                                  services + workloads)
    what = {"service": "service", "workload": "workload"}.get(kind or "",
                                                             "service or workload")
    guess = closest(name, candidates)
    hint = f'did you mean "{guess}"? ' if guess else ""
    hint += ("list them with `tulle get services` and `tulle get workloads` "
             "(add --namespace NS for another namespace)")
    return NotFoundError(f"no {what} named {name!r} in namespace {namespace}", hint=hint)


def is_instance(workload: Workload, service: ServiceRef, mesh: MeshSnapshot) -> bool:
    declared = mesh.services.get(service)
    if declared is not None and declared.selector:
        return workload.namespace == service.namespace and workload.matches(declared.selector)
    return workload.service_ref == service


def plan_taps(targets: Iterable[TapTarget], mesh: MeshSnapshot) -> TapPlan:
    """Where loggers must be, proxy by proxy, for these sessions."""
    inbound: set[str] = set()
    outbound: set[str] = set()
    destinations: set[ServiceRef] = set()
    for target in targets:
        if target.kind == "workload":
            if target.node_id in mesh.workloads:
                inbound.add(target.node_id)
                outbound.add(target.node_id)
            continue
        destinations.add(target.service)
        inbound.update(node for node, w in mesh.workloads.items()
                       if is_instance(w, target.service, mesh))
    if not inbound and not outbound and not destinations:
        return EMPTY_PLAN
    frozen = frozenset(destinations)
    plan = {node: ProxyTaps(inbound=node in inbound, outbound=node in outbound,
                            destinations=frozenset() if node in outbound else frozen)
            for node in mesh.workloads}
    return MappingProxyType({node: taps for node, taps in plan.items() if taps != NO_TAPS})


def tapped_nodes(target: TapTarget, mesh: MeshSnapshot) -> list[str]:
    """The proxies that get a logger for ``target``."""
    plan = plan_taps([target], mesh)
    return sorted(plan)


def wants(target: TapTarget, event: Event, mesh: MeshSnapshot) -> bool:
    """Whether a request a proxy logged belongs to ``target``'s session."""
    node = str(event.get("workload"))
    if target.kind == "workload":
        return node == target.node_id
    workload = mesh.workloads.get(node)
    if workload is None:
        return False
    if event.get("direction") == "inbound":
        return is_instance(workload, target.service, mesh)
    if event.get("upstreamCluster") == names.outbound_cluster(target.service):
        return True
    return event.get("authority") in target.service.hosts_from(workload.namespace)
