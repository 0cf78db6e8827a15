"""Views of the evidence that several rule families share: what callers saw of a service,
what its instances answered themselves, its versions and the route rules that feed them,
latency percentiles, recent and older telemetry, and who produced an error answer.

Pure functions of an ``Evidence``; nothing here yields findings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from tulle.diagnose.evidence import Evidence, TimeSlot, requests
from tulle.diagnose.model import rule_subject
from tulle.model.durations import parse_duration
from tulle.model.httproute import RouteRule
from tulle.model.mesh import AttachedRoute
from tulle.model.meta import ServiceRef
from tulle.model.workload import Workload
from tulle.telemetry.query import quantile
from tulle.telemetry.schema import INBOUND, INBOUND_PLAINTEXT, OUTBOUND, SeriesKey
from tulle.telemetry.windows import Window, add_into

RECENT_S = 30.0  # "now" in before/after comparisons: the last slots of the timeline


def total(series: Iterable[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for values in series:
        add_into(out, values)
    return out


def p(values: Mapping[str, int], q: float) -> float | None:
    return quantile(values, q)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


# -- services, versions, instances ---------------------------------------------------------

def callers_view(evidence: Evidence, refs: Iterable[ServiceRef]) -> dict[str, int]:
    """Every caller's counters for calls to ``refs``, summed: what callers saw."""
    wanted = set(refs)
    return total(values for _, ref, values in evidence.edges() if ref in wanted)


def callers(evidence: Evidence, refs: Iterable[ServiceRef]) -> list[str]:
    wanted = set(refs)
    return sorted({node for node, ref, values in evidence.edges()
                   if ref in wanted and (requests(values) or values.get("timeout"))})


def subsets(evidence: Evidence) -> list[ServiceRef]:
    """Services with a selector: versions and other subsets."""
    return [ref for ref, service in evidence.mesh.services.items() if service.selector]


def subsets_of(evidence: Evidence, workload: Workload) -> list[ServiceRef]:
    """The subsets ``workload`` is a member of."""
    return [ref for ref in subsets(evidence) if ref.namespace == workload.namespace
            and workload.matches(evidence.mesh.services[ref].selector)]


def services_served(evidence: Evidence, node: str) -> list[ServiceRef]:
    """Every service whose calls may reach ``node``: its own and its subsets."""
    workload = evidence.workloads.get(node)
    if workload is None:
        ref = evidence.service_of(node)
        return [ref] if ref is not None else []
    return [workload.service_ref, *subsets_of(evidence, workload)]


def members(evidence: Evidence, ref: ServiceRef) -> list[str]:
    """Nodes of ``ref``: registered instances, and departed ones that reported."""
    nodes = [w.node_id for w in evidence.instances_of(ref)]
    return sorted({*nodes, *evidence.departed_of(ref)})


def versions_of(evidence: Evidence, ref: ServiceRef) -> list[ServiceRef]:
    """The subsets whose members are all instances of ``ref`` (its versions), when it has
    two or more; those a route of ``ref`` names count even without instances."""
    found = set()
    for subset in subsets(evidence):
        if subset.namespace != ref.namespace:
            continue
        selector = dict(evidence.mesh.services[subset].selector)
        nodes = evidence.instances_of(subset)
        if selector.get("service") == ref.name or (nodes and all(
                w.service_ref == ref for w in nodes)):
            found.add(subset)
    found |= {b.ref for b in backends(evidence, ref) if b.ref in set(subsets(evidence))}
    return sorted(found) if len(found) >= 2 else []


def inbound(evidence: Evidence, nodes: Iterable[str]) -> dict[str, int]:
    """What these instances answered themselves (their sidecars' inbound side)."""
    return total(evidence.inbound(node) for node in nodes)


# -- routes ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Backend:
    """One backendRef of one rule: where a share of the rule's traffic goes."""

    route: AttachedRoute
    index: int
    rule: RouteRule
    ref: ServiceRef
    weight: int
    share: float  # of the rule's traffic

    @property
    def subject(self) -> str:
        return rule_subject(self.route.key, self.index, self.rule.name)

    @property
    def rule_name(self) -> str:
        return self.rule.name or str(self.index)

    def describe(self) -> str:
        return (f"{self.subject} (matches {self.rule.describe_matches()}) sends "
                f"{self.share:.0%} of its traffic (weight {self.weight}) to {self.ref.host}")


def backends(evidence: Evidence, parent: ServiceRef | None = None) -> Iterator[Backend]:
    """Every weighted backend of every rule of the routes of ``parent`` (all when None)."""
    for ref, attached_routes in sorted(evidence.mesh.routes.items()):
        if parent is not None and ref != parent:
            continue
        for attached in attached_routes:
            for index, rule in enumerate(attached.spec.rules):
                weights = sum(b.weight for b in rule.backend_refs)
                for backend in rule.backend_refs:
                    target = ServiceRef(backend.namespace or attached.key.namespace,
                                        backend.name)
                    yield Backend(attached, index, rule, target, backend.weight,
                                  share(backend.weight, weights))


def feeding(evidence: Evidence, ref: ServiceRef) -> list[Backend]:
    """The rules that send ``ref`` traffic (with a weight above zero)."""
    return [b for b in backends(evidence) if b.ref == ref and b.weight]


def route_timeout(rule: RouteRule) -> tuple[float, str] | None:
    """(seconds, field) of the timeout a rule sets: request, else backendRequest."""
    if rule.timeouts is None:
        return None
    for field_name, text in (("request", rule.timeouts.request),
                             ("backendRequest", rule.timeouts.backend_request)):
        seconds = parse_duration(text) if text else None
        if seconds:
            return seconds, field_name
    return None


# -- time ------------------------------------------------------------------------------------

def split_timeline(evidence: Evidence, recent_s: float = RECENT_S
                   ) -> tuple[list[TimeSlot], list[TimeSlot]]:
    """(older, recent) slots: recent ones start within ``recent_s`` of now."""
    cut = evidence.now - recent_s
    older = [s for s in evidence.timeline if s.start + s.seconds <= cut]
    recent = [s for s in evidence.timeline if s.start + s.seconds > cut]
    return older, recent


def slots_sum(slots: Iterable[TimeSlot], node: str, key: SeriesKey) -> dict[str, int]:
    return total(slot.counters.get((node, key), {}) for slot in slots)


def slots_inbound(slots: Iterable[TimeSlot], node: str) -> dict[str, int]:
    slots = list(slots)
    return total(slots_sum(slots, node, SeriesKey(kind)) for kind in (INBOUND,
                                                                     INBOUND_PLAINTEXT))


def slots_callers(slots: Iterable[TimeSlot]) -> dict[ServiceRef, dict[str, int]]:
    """Every caller's counters per called service over ``slots``, summed (one pass)."""
    out: dict[ServiceRef, dict[str, int]] = {}
    for slot in slots:
        for (_, key), values in slot.counters.items():
            if key.kind == OUTBOUND and key.destination:
                name, _, namespace = key.destination.partition(".")
                add_into(out.setdefault(ServiceRef(namespace, name), {}), values)
    return out


# -- who answered ----------------------------------------------------------------------------

# Caller-side counters of answers the mesh made itself, with Envoy's flag.
MESH_ANSWERS = (("no_healthy", "no healthy upstream, UH"), ("cfail", "connect failure, UF"),
                ("overflow", "circuit breaker, UO"), ("timeout", "timeout, UT"),
                ("retry_exhausted", "retries exhausted, URX"))


def answered_by(seen: Mapping[str, int], app_errors: int) -> str:
    """A sentence saying who produced the 5xx callers got: the mesh (which flags) or the
    application (what its instances answered)."""
    made = [f"{seen[name]} {text}" for name, text in MESH_ANSWERS
            if seen.get(name) and name != "retry_exhausted"]
    if made and app_errors:
        return (f"Both produced them: the mesh answered some itself ({', '.join(made)}), and "
                f"the application answered {app_errors} with 5xx.")
    if made:
        return f"The mesh produced these answers itself ({', '.join(made)})."
    return "The application produced these errors; the mesh passed them on."


def recent(evidence: Evidence, recent_s: float = RECENT_S) -> Evidence:
    """``evidence`` with its window's counters replaced by the last ``recent_s`` of the
    timeline: rules that judge "now" (a fault 20 s old in a 60 s window) read this. Without
    a timeline (hand-built evidence), the window itself."""
    _, slots = split_timeline(evidence, recent_s)
    if not slots:
        return evidence
    counters: dict[tuple[str, SeriesKey], dict[str, int]] = {}
    for slot in slots:
        for key, values in slot.counters.items():
            add_into(counters.setdefault(key, {}), values)
    span = max(recent_s, evidence.now - min(s.start for s in slots))
    window = Window(recent_s, span, MappingProxyType(counters), evidence.window.gauges,
                    evidence.window.last_report_age)
    return replace(evidence, window=window)
