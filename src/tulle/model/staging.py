"""What an apply stores, given what is stored under the same key: the annotations that tulle
alone writes are carried over, or dropped, whatever the manifest says of them."""

from __future__ import annotations

from collections.abc import Mapping

from tulle.model.kinds import ROLLOUT
from tulle.model.parse import resource_from_manifest
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
    return _annotated(resource, STATUS, keep)


def _annotated(resource: Resource, key: str, value: str | None) -> Resource:
    annotations = {k: v for k, v in resource.meta.annotations if k != key}
    if value is not None:
        annotations[key] = value
    if annotations == dict(resource.meta.annotations):
        return resource
    metadata: dict[str, object] = {k: v for k, v in resource.manifest["metadata"].items()
                                   if k != "annotations"}
    if annotations:
        metadata["annotations"] = dict(sorted(annotations.items()))
    manifest: Mapping[str, object] = {**resource.manifest, "metadata": metadata}
    return resource_from_manifest(manifest)
