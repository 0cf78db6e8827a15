"""ServiceLevelObjective: what "good enough" means for a service, or for one route rule.

::

    kind: ServiceLevelObjective
    metadata: {name: books-availability, namespace: shop}
    spec:
      targetRef: {kind: Service, name: books}     # or {kind: HTTPRoute, name: books,
                                                  #     sectionName: canary}: one named rule
      window: 28d                                 # the compliance period (7d to 90d)
      success: {objective: 99.9}                  # % of requests not answered 5xx
      latency: {threshold: 300ms, objective: 99}  # % of requests answered within threshold

A Service's indicators are measured where it answers (its instances' sidecars, inbound); a
route rule's where it is chosen (the callers' sidecars). Each objective is one indicator with
its own error budget: the share of requests that may be bad over ``window``.

The burn rate is how fast a budget goes: the bad share of requests over a window divided by the
budget. 1 spends it exactly over ``window``. The alerts follow the Google SRE workbook's
multiwindow, multi-burn-rate form: a page when 2 % of the budget goes in an hour (or 5 % in six
hours), a ticket when 10 % goes in a day (or in three days), each confirmed over a window a
twelfth as long so that an alert stops soon after the burn does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from annotated_types import Gt, Len, Lt

from tulle.model.durations import DURATION_HINT, parse_duration
from tulle.model.meta import ResourceKey, ServiceRef
from tulle.model.spec_config import SPEC_CONFIG

FieldIssue = tuple[str, str, str]

# The request-duration histogram's bucket bounds (telemetry.schema.LATENCY_BOUNDS_MS; a unit
# test keeps the two equal): a latency threshold must be one, or no series could count it.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
    1000, 1500, 2000, 3000, 5000, 10000, 30000, 60000)
MIN_WINDOW_S = 7 * 86400.0
MAX_WINDOW_S = 90 * 86400.0
SUCCESS: Literal["success"] = "success"
LATENCY: Literal["latency"] = "latency"


@dataclass(frozen=True)
class SloTargetRef:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    kind: Literal["Service", "HTTPRoute"]
    name: Annotated[str, Len(1, 63)]
    group: Literal["", "core", "gateway.networking.k8s.io"] = ""
    # For an HTTPRoute: the name of the rule (rules[].name) the objective is about.
    section_name: Annotated[str, Len(1, 63)] | None = None


@dataclass(frozen=True)
class SuccessObjective:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    objective: Annotated[float, Gt(0), Lt(100)]  # percent of requests not answered 5xx


@dataclass(frozen=True)
class LatencyObjective:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    threshold: Annotated[str, Len(1, 32)]  # a duration: one of the histogram's bounds
    objective: Annotated[float, Gt(0), Lt(100)]  # percent of requests within threshold


@dataclass(frozen=True)
class ServiceLevelObjectiveSpec:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    target_ref: SloTargetRef
    window: Annotated[str, Len(1, 32)] = "28d"
    success: SuccessObjective | None = None
    latency: LatencyObjective | None = None


@dataclass(frozen=True)
class BurnAlert:
    """One multiwindow burn-rate alert: ``budget_share`` of the budget spent over ``long_s``,
    confirmed over ``short_s``."""

    severity: Literal["page", "ticket"]
    long_s: float
    short_s: float
    budget_share: float

    def factor(self, window_s: float) -> float:
        """The burn rate that spends ``budget_share`` of a ``window_s`` budget in ``long_s``."""
        return self.budget_share * window_s / self.long_s


HOUR = 3600.0
BURN_ALERTS: tuple[BurnAlert, ...] = (
    BurnAlert("page", HOUR, 5 * 60, 0.02),
    BurnAlert("page", 6 * HOUR, 30 * 60, 0.05),
    BurnAlert("ticket", 24 * HOUR, 2 * HOUR, 0.10),
    BurnAlert("ticket", 72 * HOUR, 6 * HOUR, 0.10),
)
FAST_BURN = BURN_ALERTS[0]


@dataclass(frozen=True)
class Indicator:
    """One objective of an SLO, resolved: what counts as bad and how much of it may be."""

    sli: Literal["success", "latency"]
    objective: float  # percent
    threshold_ms: float | None = None  # latency only

    @property
    def budget(self) -> float:
        """The share of requests that may be bad: 0.001 for 99.9 %."""
        return 1.0 - self.objective / 100.0

    def describe(self) -> str:
        if self.threshold_ms is None:
            return f"{self.objective:g} % of requests succeed (not 5xx)"
        return f"{self.objective:g} % of requests within {format_ms(self.threshold_ms)}"


@dataclass(frozen=True)
class MeshSlo:
    """An SLO in a mesh snapshot: its target resolved to a service (and a route rule)."""

    key: ResourceKey
    # A Service's objective: the service (in the SLO's namespace); None for a route rule's.
    service: ServiceRef | None
    window_s: float
    indicators: tuple[Indicator, ...]
    # A route rule's objective: the route ("namespace/name") and the rule's series key.
    route: str | None = None
    rule: str | None = None

    @property
    def target(self) -> str:
        """``service/books`` or ``httproute/books#canary`` (in the SLO's namespace)."""
        if self.service is not None:
            return f"service/{self.service.name}"
        return f"httproute/{(self.route or '').partition('/')[2]}#{self.rule}"


def window_text(seconds: float) -> str:
    """30 m -> "30m", 6 h -> "6h", 28 d -> "28d" (the largest whole unit; Prometheus reads
    it too)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def format_ms(ms: float) -> str:
    return f"{ms / 1000:g}s" if ms >= 1000 else f"{ms:g}ms"


def indicators(spec: ServiceLevelObjectiveSpec) -> tuple[Indicator, ...]:
    out: list[Indicator] = []
    if spec.success is not None:
        out.append(Indicator(SUCCESS, spec.success.objective))
    if spec.latency is not None:
        seconds = parse_duration(spec.latency.threshold)
        if seconds is not None:
            out.append(Indicator(LATENCY, spec.latency.objective, seconds * 1000))
    return tuple(out)


def resolve(key: ResourceKey, spec: ServiceLevelObjectiveSpec) -> MeshSlo:
    """The SLO as the mesh measures it. A rule is named in route series as its name with
    "_" for dots (telemetry.schema.rule_key)."""
    window_s = parse_duration(spec.window) or 0.0
    ref = spec.target_ref
    if ref.kind == "Service":
        return MeshSlo(key, ServiceRef(key.namespace, ref.name), window_s, indicators(spec))
    return MeshSlo(key, None, window_s, indicators(spec), f"{key.namespace}/{ref.name}",
                   (ref.section_name or "").replace(".", "_").replace("|", "_"))


def slo_problems(spec: ServiceLevelObjectiveSpec) -> Iterator[FieldIssue]:
    ref = spec.target_ref
    if ref.kind == "HTTPRoute" and ref.section_name is None:
        yield ("spec.targetRef.sectionName", "an SLO on an HTTPRoute is about one rule",
               "name the rule (rules[].name) in sectionName, or target the Service")
    if ref.kind == "Service" and ref.section_name is not None:
        yield ("spec.targetRef.sectionName", "a Service has no sections",
               "remove sectionName, or target an HTTPRoute rule")
    if spec.success is None and spec.latency is None:
        yield ("spec", "no objective: set success, latency or both",
               "for example success: {objective: 99.9}")
    window = parse_duration(spec.window)
    if window is None:
        yield "spec.window", f'"{spec.window}" is not a duration', DURATION_HINT
    elif not MIN_WINDOW_S <= window <= MAX_WINDOW_S:
        yield ("spec.window", f"must be between 7d and 90d, got {spec.window}",
               "28d or 30d are usual: the burn-rate alerts look back up to 3 days")
    if spec.latency is not None:
        seconds = parse_duration(spec.latency.threshold)
        if seconds is None:
            yield "spec.latency.threshold", f'"{spec.latency.threshold}" is not a duration', \
                DURATION_HINT
        elif seconds * 1000 not in LATENCY_BOUNDS_MS:
            ms = seconds * 1000
            below = [b for b in LATENCY_BOUNDS_MS if b < ms]
            above = [b for b in LATENCY_BOUNDS_MS if b > ms]
            near = " or ".join(format_ms(b) for b in (below[-1:] + above[:1]))
            yield ("spec.latency.threshold",
                   f"{spec.latency.threshold} is not a bound of tulle's latency histogram, so "
                   "no series counts the requests within it",
                   f"use {near}; the bounds: "
                   + ", ".join(format_ms(b) for b in LATENCY_BOUNDS_MS))


def mesh_slos(resources: Iterable[tuple[ResourceKey, Any]]) -> tuple[MeshSlo, ...]:
    """Every ServiceLevelObjective among ``(key, spec)`` pairs, resolved, in key order."""
    return tuple(resolve(key, spec) for key, spec in sorted(resources, key=lambda r: r[0])
                 if isinstance(spec, ServiceLevelObjectiveSpec))


@dataclass(frozen=True)
class Burn:
    """An indicator over one window: requests, bad ones, and the rate its budget burns at."""

    requests: int
    bad: int
    budget: float  # Indicator.budget

    @property
    def ratio(self) -> float | None:
        return self.bad / self.requests if self.requests else None

    @property
    def rate(self) -> float | None:
        """1: the budget lasts exactly the SLO's window; 14.4: 2 % of 30 days' goes in 1 h."""
        ratio = self.ratio
        return None if ratio is None else ratio / self.budget

    @property
    def budget_left(self) -> float | None:
        """The share of these requests' budget not spent: below 0 once overspent."""
        rate = self.rate
        return None if rate is None else 1.0 - rate


NO_TRAFFIC = "no traffic"
MEETS = "meets"
BURNING = "burning"
BURNING_FAST = "burning fast"


def verdict(seen: Burn, recent: Burn, window_s: float) -> str:
    """``burning fast``: both windows burn at the page rate (2 % of the budget an hour);
    ``burning``: over the objective; ``meets``; ``no traffic``."""
    if seen.rate is None:
        return NO_TRAFFIC
    fast = FAST_BURN.factor(window_s)
    if seen.rate >= fast and recent.rate is not None and recent.rate >= fast:
        return BURNING_FAST
    return BURNING if seen.rate > 1 else MEETS
