"""HTTPRoutes in dry run: what callers route by meanwhile, and what is being tried.

An HTTPRoute applied with ``spec.mode: DryRun`` is a *trial*: callers go on routing as they
did, and the control plane counts where each of their requests would have gone with the
trial in force (telemetry/trials.py). What "as they did" means:

- a new route (nothing stored under its name): the route is not in force at all;
- a change to an enforced route: the enforced version stays in force. The apply keeps it in
  the stored manifest, as the annotation ``tulle.io/in-force`` (the spec as JSON), so that it
  survives restarts and replicas and goes back with `tulle rollback`;
- a change to a route that is already in dry run: the version in force stays the same.

Applying the route with ``mode: Enforce`` (or `tulle policy promote`) ends the trial. The
annotation is written by tulle only: an apply replaces whatever a manifest carries there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from tulle.model.httproute import HTTPRouteSpec
from tulle.model.kinds import HTTP_ROUTE
from tulle.model.meta import ResourceKey
from tulle.model.parse import resource_from_manifest, with_annotation
from tulle.model.resource import Resource

IN_FORCE = "tulle.io/in-force"

# Where a trial would send a request, when not to a backend (whatif/trials.py).
NOT_FOUND = "404"  # no rule matches: the caller's sidecar answers 404
NO_BACKEND = "500"  # the rule has no backend with weight: 500, as the Gateway API says
REDIRECT = "redirect"  # the rule answers with a redirect
# The trial's matches read a header whose value is redacted in access logs: the control plane
# never sees it, and says so rather than guess.
UNDECIDED = "undecided"


def is_trial(resource: Resource) -> bool:
    return resource.info is HTTP_ROUTE and cast(HTTPRouteSpec, resource.spec).mode == "DryRun"


def staged(resource: Resource, stored: Resource | None) -> Resource:
    """``resource`` as an apply stores it, given what is ``stored`` under its key: a DryRun
    HTTPRoute carries the version in force (if any); any other carries no such annotation."""
    if resource.info is not HTTP_ROUTE:
        return resource
    keep: str | None = None
    if is_trial(resource) and stored is not None:
        if is_trial(stored):
            keep = dict(stored.meta.annotations).get(IN_FORCE)
        else:
            keep = json.dumps(stored.manifest["spec"], sort_keys=True, separators=(",", ":"))
    return with_annotation(resource, IN_FORCE, keep)


def in_force(resource: Resource) -> Resource | None:
    """The version of ``resource`` that callers route by: itself, or for a DryRun HTTPRoute
    the version it carries (None: the route is new and in force nowhere)."""
    if not is_trial(resource):
        return resource
    carried = dict(resource.meta.annotations).get(IN_FORCE)
    if carried is None:
        return None
    metadata = {k: v for k, v in resource.manifest["metadata"].items() if k != "annotations"}
    return _carried(json.dumps({**resource.manifest, "metadata": metadata}, sort_keys=True),
                    carried)


@lru_cache(maxsize=256)
def _carried(manifest_json: str, spec_json: str) -> Resource:
    # Rebuilt on every snapshot otherwise; routes in dry run are few and change rarely.
    manifest: dict[str, Any] = json.loads(manifest_json)
    return resource_from_manifest({**manifest, "spec": json.loads(spec_json)})


@dataclass(frozen=True)
class Split:
    """Resources as callers route by them, and the DryRun HTTPRoutes being tried."""

    in_force: dict[ResourceKey, Resource]
    trials: dict[ResourceKey, Resource]


def split(resources: Iterable[Resource]) -> Split:
    enforced: dict[ResourceKey, Resource] = {}
    trials: dict[ResourceKey, Resource] = {}
    for resource in resources:
        if is_trial(resource):
            trials[resource.key] = resource
        current = in_force(resource)
        if current is not None:
            enforced[resource.key] = current
    return Split(enforced, trials)
