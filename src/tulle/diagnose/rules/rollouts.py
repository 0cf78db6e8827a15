"""Diagnosis rules: a Rollout that is not moving its canary forward (TUL1033).

A rollout is held when it stopped on someone's edit of its route, rolled back on its
analysis, or waits for an instance of a version that never came. Each is why a deploy did
not go out, which is what an operator asks; the status kept in the Rollout (its annotation)
says which, with the numbers of the last move.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import cast

from tulle.diagnose.evidence import Evidence
from tulle.diagnose.model import Finding, Scope, Severity, resource_subject, subject
from tulle.model.kinds import HTTP_ROUTE, ROLLOUT
from tulle.model.meta import ResourceKey
from tulle.model.rollout import STATUS, RolloutSpec, RolloutStatus, route_text

# A rollout waiting this long for an instance is stuck, not starting.
WAITING_S = 60.0


def _evidence(spec: RolloutSpec, status: RolloutStatus, route: str | None) -> list[str]:
    lines = [f"phase {status.phase} at step {max(status.step + 1, 0)} of {len(spec.steps)}, "
             f"{status.weight} % of requests to {spec.canary} (stable {spec.stable})"]
    if status.message:
        lines.append(status.message)
    for move in status.moves[-2:]:
        lines.append(f"{time.strftime('%H:%M:%S', time.localtime(move.at))} {move.phase}: "
                     f"{move.reason}")
    if route is not None:
        lines.append(f"the route now: {route}")
    return lines


def rollout_held(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1033: a rollout stopped, rolled back, or stuck waiting for an instance."""
    for key, resource in sorted(evidence.mesh.resources.items()):
        if resource.info is not ROLLOUT:
            continue
        spec = cast(RolloutSpec, resource.spec)
        status = RolloutStatus.from_json(dict(resource.meta.annotations).get(STATUS))
        name = f"{key.namespace}/{key.name}"
        route_key = ResourceKey(HTTP_ROUTE.kind, key.namespace, key.name)
        route = evidence.mesh.resources.get(route_key)
        route_now = route_text(route.manifest["spec"]) if route is not None else None
        related = (subject("service", spec.service, key.namespace),
                   resource_subject(route_key))
        if status.phase == "Stopped":
            cause = (f"Rollout {name} stopped: its HTTPRoute was changed or deleted by "
                     f"someone else, and the rollout leaves it as it is. {spec.canary} gets "
                     "whatever the route now says, and no analysis guards it.")
            fix = (f"keep the edit: `tulle rollout abort {key.name} -n {key.namespace}` (every "
                   f"request to {spec.stable}), or undo it: `tulle rollout resume {key.name} "
                   f"-n {key.namespace}` takes the route back at {status.weight} %")
            yield Finding("TUL1033", Severity.WARNING, 55.0, resource_subject(key), cause,
                          tuple(_evidence(spec, status, route_now)), fix, related=related)
        elif status.phase == "RolledBack":
            cause = (f"Rollout {name} rolled {spec.canary} back: {status.message}. Every "
                     f"request goes to {spec.stable}.")
            fix = (f"find why {spec.canary} did worse (`tulle diagnose {spec.service} -n "
                   f"{key.namespace}`, `tulle stat workloads`); apply the Rollout with a fixed "
                   f"version, or `tulle rollout resume {key.name}` to try it again from step 1")
            yield Finding("TUL1033", Severity.WARNING, 50.0, resource_subject(key), cause,
                          tuple(_evidence(spec, status, route_now)), fix, related=related)
        elif status.phase == "Waiting" and status.message.startswith("waiting:") and \
                _waiting_for(evidence, key) > WAITING_S:
            cause = f"Rollout {name} has not started: {status.message}."
            fix = (f"start an instance of the missing version (`tulle run --service "
                   f"{spec.service} --version VERSION`), or fix the Rollout's versions")
            yield Finding("TUL1033", Severity.WARNING, 40.0, resource_subject(key), cause,
                          tuple(_evidence(spec, status, route_now)), fix, related=related)


def _waiting_for(evidence: Evidence, key: ResourceKey) -> float:
    """How long the rollout has waited: since its latest write in the history (none there:
    longer than the history reaches)."""
    applied = [c.at for c in evidence.history if c.key == key]
    return evidence.now - max(applied) if applied and evidence.now else float("inf")


RULES = (rollout_held,)
