"""Counting what DryRun HTTPRoutes would have done, from the callers' trial logs.

Each entry is one request a caller's sidecar routed by the routes in force, to a service with
a trial; whatif/trials.py says where the trial would have sent it. The counts go into the
telemetry windows as TRIAL series of the caller (``SeriesKey.destination``: the service,
``route``/``rule``: what would have taken the request), with the fields:

- ``rq``: requests;
- ``moved``: requests the trial would have sent elsewhere than where they went;
- ``to:WHERE``: requests the trial would have sent to WHERE, a backend's host or one of
  whatif.trials' outcomes without a backend (404, 500, redirect, undecided).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envoy.data.accesslog.v3 import accesslog_pb2

from tulle.model.mesh import MeshSnapshot
from tulle.model.meta import ServiceRef
from tulle.security import REDACTED
from tulle.telemetry.schema import TRIAL, TRIAL_TO, SeriesKey
from tulle.whatif.matching import Request
from tulle.whatif.trials import Pick, decide, evaluate, random_pick, today
from tulle.xds.compiler import trial_watch
from tulle.xds.generators.access_logs import TRIAL_HEADER_TAG

MAX_PATH_CHARS = 8192  # an application chooses its paths; a longer one is cut
MAX_HEADER_CHARS = 4096


def count_trials(mesh: MeshSnapshot, entries: Sequence[accesslog_pb2.HTTPAccessLogEntry],
                 pick: Pick = random_pick) -> list[tuple[SeriesKey, dict[str, int]]]:
    watch = trial_watch(mesh)
    if watch is None:
        return []  # the trials ended since these requests were logged
    by_host = {ref.host: (ref, trial) for ref, trial in mesh.route_trials.items()}
    counts: dict[SeriesKey, dict[str, int]] = {}
    for entry in entries:
        tags = entry.common_properties.custom_tags
        found = by_host.get(tags.get("vhost", ""))
        if found is None:
            continue
        service, trial = found
        headers = tuple((name.removeprefix(TRIAL_HEADER_TAG), value[:MAX_HEADER_CHARS])
                        for name, value in tags.items() if name.startswith(TRIAL_HEADER_TAG))
        request = Request(tags.get("method", ""), tags.get("path", "")[:MAX_PATH_CHARS],
                          headers)
        # Headers the caller did not log (redacted ones): a match on them is undecided.
        unlogged = frozenset(trial.headers()).difference(watch.headers)
        outcome = evaluate(service, trial, request, unlogged, pick)
        went = today(tags.get("cluster", ""), tags.get("status", ""))
        values = counts.setdefault(SeriesKey(TRIAL, service.host, outcome.route, outcome.rule),
                                   {})
        for field, n in (("rq", 1), ("moved", int(outcome.would != went)),
                         (TRIAL_TO + outcome.would, 1)):
            values[field] = values.get(field, 0) + n
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
