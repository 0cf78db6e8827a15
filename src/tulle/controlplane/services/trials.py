"""Counting what DryRun HTTPRoutes would have done, from the callers' trial logs.

Each entry is one request a caller's sidecar routed by the routes in force, to a service with
a trial; whatif/trials.py says where the trial would have sent it. The counts go into the
telemetry windows as TRIAL series of the caller (``SeriesKey.destination``: the service,
``route``/``rule``: what would have taken the request), with the fields:

- ``rq``: requests;
- ``moved``: requests the trial would have sent elsewhere than where they went;
- ``to:WHERE``: requests the trial would have sent to WHERE, a backend's host or one of
  whatif.trials' outcomes without a backend (404, 500, redirect, undecided).

Requests past the budget (MAX_EVALUATED_PER_S) count as ``rq`` of a series whose rule is
TRIAL_SKIPPED: the others are then a sample, which `tulle stat` says.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from envoy.data.accesslog.v3 import accesslog_pb2

from tulle.model.mesh import MeshSnapshot
from tulle.model.meta import ServiceRef
from tulle.security import REDACTED
from tulle.telemetry.schema import TRIAL, TRIAL_SKIPPED, TRIAL_TO, SeriesKey
from tulle.whatif.matching import Request, RuleMatch, ordered
from tulle.whatif.trials import Pick, decide, evaluate, random_pick, today
from tulle.xds.compiler import trial_watch
from tulle.xds.generators.access_logs import TRIAL_HEADER_TAG

MAX_PATH_CHARS = 8192  # an application chooses its paths; a longer one is cut
MAX_HEADER_CHARS = 4096


# Requests the control plane decides per second, from all callers; the rest of that second's
# are counted as not evaluated (the counts become a sample). Deciding one costs about 40
# microseconds of the control plane's event loop (measured with three rules): this bounds a
# dry run on a busy service to a few percent of a core, so that it never starves the proxies
# the control plane serves.
MAX_EVALUATED_PER_S = 1000


class TrialCounter:
    """Counts from the callers' trial logs, within MAX_EVALUATED_PER_S."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 per_second: int = MAX_EVALUATED_PER_S, pick: Pick = random_pick) -> None:
        self._clock = clock
        self._per_second = per_second
        self._pick = pick
        self._spent = (0, 0)  # (second, evaluated in it)

    def count(self, mesh: MeshSnapshot, node_id: str,
              entries: Sequence[accesslog_pb2.HTTPAccessLogEntry]
              ) -> list[tuple[SeriesKey, dict[str, int]]]:
        watch = trial_watch(mesh)
        if watch is None:
            return []  # the trials ended since these requests were logged
        second = int(self._clock())
        last, spent = self._spent
        if last != second:
            spent = 0
        by_host = {ref.host: (ref, trial) for ref, trial in mesh.route_trials.items()}
        tables: dict[str, list[RuleMatch]] = {}  # each trial's routes, ordered once
        counts: dict[SeriesKey, dict[str, int]] = {}
        for entry in entries:
            tags = entry.common_properties.custom_tags
            found = by_host.get(tags.get("vhost", ""))
            if found is None:
                continue
            service, trial = found
            if spent >= self._per_second:
                skipped = counts.setdefault(SeriesKey(TRIAL, service.host, "", TRIAL_SKIPPED),
                                            {})
                skipped["rq"] = skipped.get("rq", 0) + 1
                continue
            spent += 1
            headers = tuple((name.removeprefix(TRIAL_HEADER_TAG), value[:MAX_HEADER_CHARS])
                            for name, value in tags.items()
                            if name.startswith(TRIAL_HEADER_TAG))
            request = Request(tags.get("method", ""), tags.get("path", "")[:MAX_PATH_CHARS],
                              headers)
            # Headers the caller did not log (redacted ones): a match on them is undecided.
            unlogged = frozenset(trial.headers()).difference(watch.headers)
            if service.host not in tables:
                tables[service.host] = ordered(trial.routes)
            outcome = evaluate(service, trial, request, unlogged, self._pick,
                               tables[service.host])
            went = today(tags.get("cluster", ""), tags.get("status", ""))
            values = counts.setdefault(
                SeriesKey(TRIAL, service.host, outcome.route, outcome.rule), {})
            for field, n in (("rq", 1), ("moved", int(outcome.would != went)),
                             (TRIAL_TO + outcome.would, 1)):
                values[field] = values.get(field, 0) + n
        self._spent = (second, spent)
        return list(counts.items())


def mark_trial(event: dict[str, Any], mesh: MeshSnapshot) -> None:
    """Tap: on a request a caller sent to a service with a trial, where the trial would have
    sent it (``wouldRoute``), weights and all."""
    if not mesh.route_trials or event.get("direction") != "outbound":
        return
    caller = mesh.workloads.get(str(event.get("workload")))
    host = str(event.get("authority") or "")
    if caller is None or not host:
        return
    name, _, namespace = host.rsplit(":", 1)[0].partition(".")  # the port is not the name
    service = ServiceRef(namespace or caller.namespace, name)
    trial = mesh.route_trials.get(service)
    if trial is None:
        return
    captured = event.get("requestHeaders") or {}
    headers = tuple((k, str(v)) for k, v in captured.items()
                    if v is not None and v != REDACTED)
    # The tap logger carries the headers trials match on (an absent one is not sent), but
    # never a redacted one's value.
    unlogged = frozenset(k for k, v in captured.items() if v == REDACTED)
    request = Request(str(event.get("method") or ""), str(event.get("path") or ""), headers)
    event["wouldRoute"] = decide(service, trial, request, unlogged).describe()
