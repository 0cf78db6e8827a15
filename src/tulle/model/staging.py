"""What an apply stores, given what is stored under the same key: the annotations that tulle
alone writes are carried over, or dropped, whatever the manifest says of them."""

from __future__ import annotations

from tulle.model.kinds import ROLLOUT
from tulle.model.parse import with_annotation
from tulle.model.resource import Resource
from tulle.model.rollout import STATUS
from tulle.model.route_trials import staged as trial_staged


def staged(resource: Resource, stored: Resource | None, *, internal: bool = False) -> Resource:
    """``internal``: written by the control plane itself (a rollout's move), which sets the
    rollout's status; an apply's manifest cannot. A Rollout applied with the spec it has
    keeps its status (where it is); with another spec, it starts over."""
    resource = trial_staged(resource, stored)
    if resource.info is not ROLLOUT or internal:
        return resource
    keep = None
    if stored is not None and dict(stored.manifest["spec"]) == dict(resource.manifest["spec"]):
        keep = dict(stored.meta.annotations).get(STATUS)
    return with_annotation(resource, STATUS, keep)
