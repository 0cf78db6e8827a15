"""Rollout: a canary version of a service, given more of its traffic step by step while it
does as well as the stable version, and taken out at once when it does not.

::

    kind: Rollout
    metadata: {name: books, namespace: shop}
    spec:
      service: books            # what callers call
      stable: v1                # the version label of the instances in service now
      canary: v2                # the version label of the new instances
      steps:                    # the canary's share of requests, each held for a pause
      - {weight: 10, pause: 1m}
      - {weight: 50, pause: 2m}
      analysis:                 # canary against stable, over each step
        minRequests: 100        # canary requests before any verdict
        successRate: {maxDrop: 1}       # points of success rate under stable's
        latency: {maxP99Ratio: 1.5}     # canary's p99 over stable's

The control plane drives it (controlplane/services/rollouts.py) through the mesh's own
routing: an HTTPRoute named after the rollout, with one rule that splits the service's
requests between two subsets, the Services ``SERVICE-STABLE`` and ``SERVICE-CANARY``
(selectors on the ``service`` and ``version`` labels). Where it is lives in the Rollout's own
stored manifest, as the annotation ``tulle.io/rollout-status``, written by tulle only: an
apply that leaves the spec as it was keeps it, one that changes the spec starts over.
This module is the pure part: the spec, the status, the analysis and the next move.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Annotated, Any, ClassVar, Literal

from annotated_types import Ge, Gt, Le, Len

from tulle.model.durations import DURATION_HINT, parse_duration
from tulle.model.meta import dns_label_problem, label_problem
from tulle.model.spec_config import SPEC_CONFIG

FieldIssue = tuple[str, str, str]

STATUS = "tulle.io/rollout-status"
MANAGED_BY = "tulle.io/managed-by"
RULE = "rollout"
MIN_PAUSE_S = 1.0
MAX_PAUSE_S = 86400.0
MOVES_KEPT = 20

Phase = Literal["Waiting", "Progressing", "Paused", "Promoted", "RolledBack", "Aborted",
                "Stopped"]
# Where a rollout ends until someone acts: promoted, rolled back, aborted.
FINISHED: tuple[str, ...] = ("Promoted", "RolledBack", "Aborted")


@dataclass(frozen=True)
class RolloutStep:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    weight: Annotated[int, Ge(1), Le(100)]  # percent of requests to the canary
    pause: Annotated[str, Len(1, 32)] = "1m"  # how long the step lasts, at least


@dataclass(frozen=True)
class SuccessAnalysis:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    # How many points of success rate the canary may lose against stable (1: 99 % against
    # 100 % passes, 98.9 % fails).
    max_drop: Annotated[float, Ge(0), Le(100)] = 1.0


@dataclass(frozen=True)
class LatencyAnalysis:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    max_p99_ratio: Annotated[float, Gt(1), Le(100)] = 1.5  # canary p99 / stable p99


@dataclass(frozen=True)
class RolloutAnalysis:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    min_requests: Annotated[int, Ge(1), Le(10_000_000)] = 50
    success_rate: SuccessAnalysis | None = SuccessAnalysis()
    latency: LatencyAnalysis | None = LatencyAnalysis()


@dataclass(frozen=True)
class RolloutSpec:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    service: Annotated[str, Len(1, 63)]
    stable: Annotated[str, Len(1, 63)]
    canary: Annotated[str, Len(1, 63)]
    steps: Annotated[tuple[RolloutStep, ...], Len(1, 20)]
    analysis: RolloutAnalysis = RolloutAnalysis()


def subset_name(service: str, version: str) -> str:
    return f"{service}-{version}"[:63].rstrip("-.")


def pause_s(step: RolloutStep) -> float:
    return parse_duration(step.pause) or MIN_PAUSE_S


def rollout_problems(spec: RolloutSpec) -> Iterator[FieldIssue]:
    if (why := dns_label_problem(spec.service)) is not None:
        yield "spec.service", why, ""
    for name in ("stable", "canary"):
        if (why := label_problem("version", getattr(spec, name))) is not None:
            yield f"spec.{name}", why, ""
    if spec.stable == spec.canary:
        yield ("spec.canary", f'the canary is the stable version ("{spec.stable}")',
               "name the new version's label as canary")
    for name in ("stable", "canary"):
        subset = subset_name(spec.service, getattr(spec, name))
        if (why := dns_label_problem(subset)) is not None:
            yield (f"spec.{name}", f'its subset\'s name "{subset}" is not a DNS label: {why}',
                   "use a shorter service name or version")
    last = 0
    for i, step in enumerate(spec.steps):
        if step.weight <= last:
            yield (f"spec.steps[{i}].weight", f"weights must grow step by step: {step.weight} "
                   f"after {last}", "give each step a larger share than the one before")
        last = max(last, step.weight)
        seconds = parse_duration(step.pause)
        if seconds is None:
            yield f"spec.steps[{i}].pause", f'"{step.pause}" is not a duration', DURATION_HINT
        elif not MIN_PAUSE_S <= seconds <= MAX_PAUSE_S:
            yield (f"spec.steps[{i}].pause", f"must be between 1s and 24h, got {step.pause}",
                   "")
    analysis = spec.analysis
    if analysis.success_rate is None and analysis.latency is None:
        yield ("spec.analysis", "no check: set successRate, latency or both",
               "for example successRate: {maxDrop: 1}")


# -- the status ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """One change of weights (or of phase), with the numbers that decided it."""

    at: float  # time.time()
    phase: str
    step: int  # 0-based; -1 before the first
    weight: int  # the canary's percent after the move
    reason: str
    numbers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RolloutStatus:
    phase: Phase = "Waiting"
    step: int = -1
    weight: int = 0  # the canary's percent of requests, as the route says
    step_started: float = 0.0  # time.time() the step began (or resumed)
    message: str = ""
    # The route's spec as the rollout last wrote it (JSON): anything else is someone's edit.
    route: str = ""
    moves: tuple[Move, ...] = ()

    def to_json(self) -> str:
        body = asdict(self)
        body["moves"] = [asdict(m) for m in self.moves]
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @staticmethod
    def from_json(text: str | None) -> RolloutStatus:
        if not text:
            return RolloutStatus()
        try:
            body = json.loads(text)
            moves = tuple(Move(**m) for m in body.pop("moves", []))
            return RolloutStatus(**body, moves=moves)
        except (ValueError, TypeError):
            return RolloutStatus(message="its stored status could not be read: started over")

    def moved(self, move: Move, route: str, message: str = "") -> RolloutStatus:
        return replace(self, phase=move.phase, step=move.step, weight=move.weight,  # type: ignore[arg-type]
                       step_started=move.at, message=message or move.reason, route=route,
                       moves=(*self.moves, move)[-MOVES_KEPT:])


# -- the analysis --------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """What the callers saw of one version over a step."""

    requests: int
    failed: int  # 5xx
    p99_ms: float | None

    @property
    def success(self) -> float | None:
        return 100.0 * (self.requests - self.failed) / self.requests if self.requests else None

    def numbers(self) -> dict[str, Any]:
        return {"requests": self.requests, "failed": self.failed,
                "successRate": None if self.success is None else round(self.success, 3),
                "p99Ms": self.p99_ms}


@dataclass(frozen=True)
class Verdict:
    outcome: Literal["pass", "fail", "wait"]
    reason: str
    numbers: Mapping[str, Any]


def analyse(analysis: RolloutAnalysis, canary: Side, stable: Side) -> Verdict:
    """Canary against stable. ``wait`` until the canary has ``min_requests``; then ``fail``
    on the first check it fails. Stable with no requests of its own (the last steps send it
    little) is no reference: the canary is held to its numbers alone (100 %, no p99)."""
    numbers = {"canary": canary.numbers(), "stable": stable.numbers(),
               "minRequests": analysis.min_requests}
    if canary.requests < analysis.min_requests:
        return Verdict("wait", f"{canary.requests} of the {analysis.min_requests} canary "
                       "requests needed for a verdict", numbers)
    if analysis.success_rate is not None:
        reference = stable.success if stable.success is not None else 100.0
        floor = reference - analysis.success_rate.max_drop
        assert canary.success is not None
        if canary.success < floor - 1e-9:
            return Verdict("fail", f"canary success rate {canary.success:.2f} % "
                           f"({canary.failed} of {canary.requests} failed) is under stable's "
                           f"{reference:.2f} % by more than "
                           f"{analysis.success_rate.max_drop:g} points", numbers)
    if analysis.latency is not None and canary.p99_ms is not None and stable.p99_ms:
        ratio = canary.p99_ms / stable.p99_ms
        if ratio > analysis.latency.max_p99_ratio:
            return Verdict("fail", f"canary p99 {canary.p99_ms:g} ms is {ratio:.2f} times "
                           f"stable's {stable.p99_ms:g} ms (at most "
                           f"{analysis.latency.max_p99_ratio:g})", numbers)
    return Verdict("pass", f"canary {_side_text(canary)}, stable {_side_text(stable)}",
                   numbers)


def _side_text(side: Side) -> str:
    if side.success is None:
        return "no requests"
    p99 = f", p99 {side.p99_ms:g} ms" if side.p99_ms is not None else ""
    return f"{side.success:.2f} % of {side.requests}{p99}"


# -- the next move -------------------------------------------------------------------------


def next_move(spec: RolloutSpec, status: RolloutStatus, now: float, verdict: Verdict | None,
              missing: str | None) -> Move | None:
    """What the rollout does now, or None to hold. ``verdict``: the analysis of the step so
    far (None when the control plane cannot see both versions' numbers); ``missing``: why
    the rollout cannot start (no instance of a version), or None."""
    if status.phase == "Waiting":
        if missing is not None:
            return None
        first = spec.steps[0]
        return Move(now, "Progressing", 0, first.weight,
                    f"step 1 of {len(spec.steps)}: {first.weight} % to {spec.canary}")
    if status.phase != "Progressing" or verdict is None:
        return None
    if verdict.outcome == "fail":
        return Move(now, "RolledBack", status.step, 0, f"rolled back at step "
                    f"{status.step + 1}: {verdict.reason}", verdict.numbers)
    step = spec.steps[status.step]
    if verdict.outcome != "pass" or now - status.step_started < pause_s(step):
        return None
    if status.step + 1 >= len(spec.steps):
        return Move(now, "Promoted", status.step, 100, f"promoted: step {status.step + 1} "
                    f"passed ({verdict.reason}); {spec.canary} takes every request",
                    verdict.numbers)
    following = spec.steps[status.step + 1]
    return Move(now, "Progressing", status.step + 1, following.weight,
                f"step {status.step + 1} passed ({verdict.reason}); step {status.step + 2} of "
                f"{len(spec.steps)}: {following.weight} % to {spec.canary}", verdict.numbers)


# -- what the rollout writes ---------------------------------------------------------------


def route_spec(spec: RolloutSpec, weight: int) -> dict[str, Any]:
    """The HTTPRoute's spec at ``weight`` percent to the canary."""
    backends = [{"name": subset_name(spec.service, spec.stable), "weight": 100 - weight},
                {"name": subset_name(spec.service, spec.canary), "weight": weight}]
    return {"parentRefs": [{"name": spec.service}],
            "rules": [{"name": RULE, "backendRefs": backends}]}


def route_text(route: Mapping[str, Any]) -> str:
    """A route spec as the status remembers it (canonical JSON)."""
    return json.dumps(route, sort_keys=True, separators=(",", ":"))


def route_manifest(name: str, namespace: str, spec: RolloutSpec, weight: int
                   ) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": namespace,
                         "annotations": {MANAGED_BY: f"rollout/{name}"}},
            "spec": route_spec(spec, weight)}


def subset_manifest(namespace: str, service: str, version: str) -> dict[str, Any]:
    return {"apiVersion": "tulle.io/v1alpha1", "kind": "Service",
            "metadata": {"name": subset_name(service, version), "namespace": namespace},
            "spec": {"selector": {"service": service, "version": version}}}


def subset_selector(service: str, version: str) -> dict[str, str]:
    return {"service": service, "version": version}
