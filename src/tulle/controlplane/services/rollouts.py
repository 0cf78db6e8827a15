"""Rollouts, driven: every second, each Rollout's step is analysed from the callers' own
telemetry and, when its numbers say so, moved on, promoted or rolled back.

A move is one store transaction: the rollout's HTTPRoute at the new weights (and its two
subset Services, the first time) with the Rollout's status, which carries the move and the
numbers that decided it. So `tulle history` shows each move with its numbers, a restarted
control plane goes on from the stored status, and `tulle rollback` of a move puts both back.

The rollout never fights an edit: before each tick it compares the route's stored spec with
the one it last wrote. Someone else's apply, rollback or delete stops it (phase Stopped) and
leaves the route alone until `tulle rollout resume` takes it back or `abort` ends it.

On a shared store (etcd) one replica drives the rollouts (the "rollouts" singleton); the
analysis reads every replica's telemetry, and holds while one of them does not answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, cast

from tulle.controlplane.services.resources import ResourceService
from tulle.controlplane.services.telemetry import TelemetryService
from tulle.controlplane.singletons import ROLLOUTS, Fence
from tulle.errors import ConflictError, NotFoundError, TulleError
from tulle.model.kinds import HTTP_ROUTE, ROLLOUT, SERVICE
from tulle.model.meta import ResourceKey
from tulle.model.parse import Document
from tulle.model.resource import Resource
from tulle.model.rollout import (
    FINISHED,
    STATUS,
    Move,
    RolloutSpec,
    RolloutStatus,
    Side,
    Verdict,
    analyse,
    next_move,
    pause_s,
    route_manifest,
    route_spec,
    route_text,
    subset_manifest,
    subset_name,
)
from tulle.model.workload import Workload, WorkloadState
from tulle.telemetry.query import callers_of, quantile, requests_of
from tulle.telemetry.windows import Window

log = logging.getLogger("tulle.controlplane")

__all__ = ["ROLLOUTS", "RolloutService"]
TICK_S = 1.0


class RolloutService:
    def __init__(self, resources: ResourceService, telemetry: TelemetryService,
                 workloads: Callable[[], Iterable[Workload]],
                 settle: Callable[[], Awaitable[bool]],
                 clock: Callable[[], float] = time.time) -> None:
        """``settle``: push the mesh as it is now and wait until every connected proxy ACKed
        it (False: not within its timeout)."""
        self._resources = resources
        self._settle = settle
        self._telemetry = telemetry
        self._workloads = workloads
        self._clock = clock
        # Telemetry is kept in memory: numbers from before this process started are gone,
        # so a step's analysis starts no earlier than this.
        self._started = clock()
        self._lock = asyncio.Lock()

    # -- the singleton job -------------------------------------------------------------------

    async def job(self, fence: Fence | None) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a bug must not end every rollout's driving: log, go on
                log.exception("rollouts: a tick failed")
            await asyncio.sleep(TICK_S)

    async def tick(self) -> None:
        for resource in self._rollouts():
            try:
                async with self._lock:
                    await self._drive(resource.key)
            except TulleError as exc:
                log.warning("rollout %s: %s%s", resource.key, exc.message, "".join(
                    f"; {p.resource} {p.field}: {p.message}"
                    for p in getattr(exc, "problems", ())))

    async def _drive(self, key: ResourceKey) -> None:
        resource = self._current(key)
        if resource is None:
            return
        spec, status = _spec(resource), _status(resource)
        if status.phase not in ("Waiting", "Progressing"):
            return
        now = self._clock()
        if status.phase == "Progressing" and (edit := self._edited(resource, status)):
            await self._write(resource, replace(status, phase="Stopped", message=edit), None)
            log.warning("rollout %s stopped: %s", key, edit)
            return
        missing = self._missing(resource) if status.phase == "Waiting" else None
        verdict = await self._verdict(resource, status) if status.phase == "Progressing" \
            else None
        move = next_move(spec, status, now, verdict, missing)
        if move is not None:
            log.info("rollout %s: %s", key, move.reason)
            await self._write(resource, status.moved(move, route_text(route_spec(
                spec, move.weight))), move.weight)
        elif status.phase == "Waiting" and missing and status.message != missing:
            await self._write(resource, replace(status, message=missing), None)

    # -- what `tulle rollout` asks -----------------------------------------------------------

    async def rows(self, namespace: str | None = None, name: str | None = None
                   ) -> list[dict[str, Any]]:
        rows = []
        for resource in self._rollouts():
            if (namespace is not None and resource.meta.namespace != namespace) or \
                    (name is not None and resource.meta.name != name):
                continue
            status = _status(resource)
            verdict = await self._verdict(resource, status) \
                if status.phase == "Progressing" else None
            rows.append(_row(resource, status, verdict, self._clock()))
        return rows

    async def control(self, namespace: str, name: str, action: str) -> dict[str, Any]:
        """pause, resume or abort; returns the rollout's row after it."""
        key = ResourceKey(ROLLOUT.kind, namespace, name)
        async with self._lock:
            resource = self._current(key)
            if resource is None:
                raise NotFoundError(f"no Rollout {name} in namespace {namespace}",
                                    hint=f"list them with `tulle rollout status -n {namespace}`")
            status, spec, now = _status(resource), _spec(resource), self._clock()
            weight: int | None = None
            if action == "pause":
                if status.phase not in ("Waiting", "Progressing"):
                    raise ConflictError(f"rollout {name} is {status.phase}: nothing to pause")
                new = replace(status, phase="Paused", message=f"paused by `tulle rollout pause` "
                              f"at step {status.step + 1}" if status.step >= 0 else
                              "paused by `tulle rollout pause` before its first step")
            elif action == "resume":
                new, weight = _resumed(spec, status, now)
            elif action == "abort":
                if status.phase == "Promoted" or (status.phase in FINISHED and status.weight == 0):
                    raise ConflictError(
                        f"rollout {name} is {status.phase}: nothing to abort",
                        hint="to go back after a promotion, apply the Rollout with stable and "
                             "canary swapped")
                move = Move(now, "Aborted", status.step, 0, "aborted by `tulle rollout abort`: "
                            f"every request to {spec.stable}")
                new, weight = status.moved(move, route_text(route_spec(spec, 0))), 0
            else:
                raise NotFoundError(f"unknown rollout action {action!r}",
                                    hint="pause, resume or abort")
            await self._write(resource, new, weight)
            log.info("rollout %s: %s", key, new.message)
        stored = self._current(key)
        assert stored is not None
        return _row(stored, _status(stored), None, self._clock())

    # -- reading -----------------------------------------------------------------------------

    def _rollouts(self) -> list[Resource]:
        return sorted((r for r in self._resources.resources() if r.info is ROLLOUT),
                      key=lambda r: r.key)

    def _current(self, key: ResourceKey) -> Resource | None:
        return self._resources.find(key)

    def _edited(self, resource: Resource, status: RolloutStatus) -> str | None:
        """Why the route is not as the rollout left it, or None."""
        key = ResourceKey(HTTP_ROUTE.kind, resource.meta.namespace, resource.meta.name)
        route = self._current(key)
        if route is None:
            return (f"HTTPRoute {key.namespace}/{key.name} was deleted by someone else: the "
                    "rollout stopped (`tulle rollout resume` writes it again, `abort` "
                    "ends the rollout)")
        if route_text(route.manifest["spec"]) == status.route:
            return None
        return (f"HTTPRoute {key.namespace}/{key.name} was changed by someone else (not by "
                f"the rollout, which had it at {status.weight} % to the canary): the rollout "
                "stopped and leaves the route as it is; `tulle rollout resume` takes it back "
                "at that weight, `tulle rollout abort` sends every request to stable")

    def _missing(self, resource: Resource) -> str | None:
        spec = _spec(resource)
        ready = [w for w in self._workloads() if w.namespace == resource.meta.namespace
                 and w.service == spec.service and w.state is WorkloadState.READY]
        for side in ("stable", "canary"):
            version = getattr(spec, side)
            if not any(w.version == version for w in ready):
                return (f"waiting: no ready instance of {spec.service} version {version} "
                        f"({side}); start one with `tulle run --service {spec.service} "
                        f"--version {version}`")
        return None

    async def _verdict(self, resource: Resource, status: RolloutStatus) -> Verdict | None:
        """The analysis of the step so far; None when a replica's telemetry is missing."""
        spec = _spec(resource)
        since = max(status.step_started, self._started)
        horizon = self._telemetry.windows.horizon_s
        seconds = min(max(self._clock() - since, 1.0), horizon)
        peers = await self._telemetry.ask_peers(seconds)
        if peers.missing:
            return None
        window = self._telemetry.window(seconds, peers)
        namespace = resource.meta.namespace
        canary = _side(window, f"{subset_name(spec.service, spec.canary)}.{namespace}")
        stable = _side(window, f"{subset_name(spec.service, spec.stable)}.{namespace}")
        return analyse(spec.analysis, canary, stable)

    # -- writing -----------------------------------------------------------------------------

    async def _write(self, resource: Resource, status: RolloutStatus, weight: int | None
                     ) -> None:
        """The rollout's status, and the route at ``weight`` (None: the route as it is)."""
        namespace, name = resource.meta.namespace, resource.meta.name
        spec = _spec(resource)
        manifests: list[Mapping[str, Any]] = []
        if weight is not None:
            await self._subsets(resource)
            manifests.append(route_manifest(name, namespace, spec, weight))
        metadata = dict(resource.manifest["metadata"])
        metadata["annotations"] = {**metadata.get("annotations", {}), STATUS: status.to_json()}
        manifests.append({**resource.manifest, "metadata": metadata})
        await self._resources.apply_async(
            [Document(source=f"rollout {namespace}/{name}", body=m) for m in manifests],
            internal=True)


    async def _subsets(self, resource: Resource) -> None:
        """Write the subsets that do not exist yet, and wait until every proxy has their
        clusters and endpoints: a route that names a cluster a proxy is still warming gets
        503s (no cluster) until it is warm."""
        namespace, spec = resource.meta.namespace, _spec(resource)
        missing = [subset_manifest(namespace, spec.service, version)
                   for version in (spec.stable, spec.canary)
                   if self._current(ResourceKey(SERVICE.kind, namespace,
                                                subset_name(spec.service, version))) is None]
        if not missing:
            return
        await self._resources.apply_async(
            [Document(source=f"rollout {namespace}/{resource.meta.name}", body=m)
             for m in missing], internal=True)
        if not await self._settle():
            log.warning("rollout %s: not every proxy took the subsets within the wait; the "
                        "route goes on (a proxy still warming them answers 503 until it has "
                        "them)", resource.key)


def _spec(resource: Resource) -> RolloutSpec:
    return cast(RolloutSpec, resource.spec)


def _status(resource: Resource) -> RolloutStatus:
    return RolloutStatus.from_json(dict(resource.meta.annotations).get(STATUS))


def _resumed(spec: RolloutSpec, status: RolloutStatus, now: float
             ) -> tuple[RolloutStatus, int | None]:
    """The status after `tulle rollout resume`, and the weight to write (None: as it is)."""
    if status.phase == "Paused":
        phase = "Progressing" if status.step >= 0 else "Waiting"
        return replace(status, phase=phase, step_started=now,  # type: ignore[arg-type]
                       message=f"resumed at step {status.step + 1}, its pause counted again"
                       if status.step >= 0 else "resumed"), None
    if status.phase == "Stopped":
        return replace(status, phase="Progressing", step_started=now,
                       route=route_text(route_spec(spec, status.weight)),
                       message=f"resumed: the route taken back at {status.weight} % to "
                               f"{spec.canary}, step {status.step + 1} counted again"), \
            status.weight
    if status.phase in ("RolledBack", "Aborted"):
        return replace(status, phase="Waiting", step=-1, message="resumed: starting again "
                       "from the first step"), None
    raise ConflictError(f"the rollout is {status.phase}: nothing to resume",
                        hint="a promoted rollout is done; apply a new one for the next version"
                        if status.phase == "Promoted" else "")


def _side(window: Window, destination: str) -> Side:
    """Every caller's calls to one subset, as the callers saw them."""
    total = callers_of(window, destination)
    return Side(requests_of(total), total.get("rq5", 0), quantile(total, 0.99))


def _row(resource: Resource, status: RolloutStatus, verdict: Verdict | None, now: float
         ) -> dict[str, Any]:
    spec = _spec(resource)
    step = spec.steps[status.step] if 0 <= status.step < len(spec.steps) else None
    left = None
    if step is not None and status.phase == "Progressing":
        left = max(0.0, pause_s(step) - (now - status.step_started))
    return {
        "namespace": resource.meta.namespace, "name": resource.meta.name,
        "service": spec.service, "stable": spec.stable, "canary": spec.canary,
        "phase": status.phase, "step": status.step + 1, "steps": len(spec.steps),
        "weight": status.weight, "stepStartedAt": status.step_started or None,
        "pauseLeftSeconds": None if left is None else round(left, 1),
        "message": status.message,
        "analysis": None if verdict is None else {
            "outcome": verdict.outcome, "reason": verdict.reason, **verdict.numbers},
        "moves": [{"at": m.at, "phase": m.phase, "step": m.step + 1, "weight": m.weight,
                   "reason": m.reason, "numbers": dict(m.numbers)} for m in status.moves],
    }
