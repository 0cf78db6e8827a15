"""route_trials and build_mesh: a DryRun HTTPRoute keeps the routing in force, and is tried."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.xds.meshes import http_route, rule, workload
from tulle.errors import ConfigError
from tulle.model.mesh import build_mesh
from tulle.model.meta import ResourceKey, ServiceRef
from tulle.model.parse import resource_from_manifest
from tulle.model.resource import Resource
from tulle.model.route_trials import IN_FORCE, in_force, staged

BOOKS = ServiceRef("default", "books")
KEY = ResourceKey("HTTPRoute", "default", "books")


def route(*rules: dict[str, Any], mode: str | None = None, parent: str = "books",
          annotations: dict[str, str] | None = None) -> Resource:
    manifest = http_route("books", parent, list(rules))
    if mode is not None:
        manifest["spec"]["mode"] = mode
    if annotations:
        manifest["metadata"]["annotations"] = annotations
    return resource_from_manifest(manifest)


ENFORCED = route(rule("books", prefix="/"))
TRIED = route(rule(("books", 50), ("books-v2", 50), prefix="/"), mode="DryRun")


@pytest.mark.parametrize(("applied", "stored", "carried"), [
    # A new route in dry run: nothing is in force.
    (TRIED, None, None),
    # A change to an enforced route: the enforced spec stays in force.
    (TRIED, ENFORCED, ENFORCED.manifest["spec"]),
    # Another change while in dry run: still the same version in force.
    (route(rule("books-v2", prefix="/"), mode="DryRun"), None, None),
    # Enforcing ends the trial.
    (ENFORCED, TRIED, None),
])
def test_an_apply_carries_the_version_in_force(applied: Resource, stored: Resource | None,
                                               carried: dict[str, Any] | None) -> None:
    result = staged(applied, stored)
    found = dict(result.meta.annotations).get(IN_FORCE)
    assert (json.loads(found) if found else None) == carried


def test_a_second_trial_keeps_what_the_first_carried() -> None:
    first = staged(TRIED, ENFORCED)
    second = staged(route(rule("books-v2", prefix="/"), mode="DryRun"), first)
    assert dict(second.meta.annotations)[IN_FORCE] == dict(first.meta.annotations)[IN_FORCE]
    assert in_force(second) is not None
    assert in_force(second).spec == ENFORCED.spec  # type: ignore[union-attr]


def test_a_manifest_cannot_choose_what_is_in_force() -> None:
    forged = route(rule("books-v2", prefix="/"), mode="DryRun",
                   annotations={IN_FORCE: json.dumps({"parentRefs": [{"name": "books"}],
                                                      "rules": [{"backendRefs": [
                                                          {"name": "evil"}]}]}),
                                "team": "shop"})
    result = staged(forged, None)
    assert dict(result.meta.annotations) == {"team": "shop"}
    assert in_force(result) is None
    enforced = staged(route(rule("books"), annotations={IN_FORCE: "{}"}), TRIED)
    assert IN_FORCE not in dict(enforced.meta.annotations)


def test_the_mesh_routes_by_the_version_in_force_and_tries_the_other() -> None:
    tried = staged(TRIED, ENFORCED)
    mesh = build_mesh(1, [tried], [workload("books-1"), workload("books-v2-1")])
    assert [a.spec for a in mesh.routes[BOOKS]] == [ENFORCED.spec]
    assert mesh.resources[KEY].spec == ENFORCED.spec
    trial = mesh.route_trials[BOOKS]
    assert trial.trying == (KEY,)
    assert [a.spec for a in trial.routes] == [TRIED.spec]


def test_a_new_route_in_dry_run_routes_nothing() -> None:
    mesh = build_mesh(1, [staged(TRIED, None)], [workload("books-1")])
    assert BOOKS not in mesh.routes
    assert KEY not in mesh.resources
    assert [a.spec for a in mesh.route_trials[BOOKS].routes] == [TRIED.spec]


def test_a_trial_that_moves_a_route_to_another_parent_tries_both() -> None:
    moved = staged(route(rule("books-v2", prefix="/"), mode="DryRun", parent="books-v2"),
                   ENFORCED)
    mesh = build_mesh(1, [moved], [workload("books-1"), workload("books-v2-1")])
    # books would lose its route (the default route again); books-v2 would gain one.
    assert mesh.route_trials[BOOKS].routes == ()
    assert len(mesh.route_trials[ServiceRef("default", "books-v2")].routes) == 1


def test_a_gateway_route_cannot_be_tried() -> None:
    manifest = http_route("web", "edge", [rule("books")])
    manifest["spec"]["parentRefs"] = [{"name": "edge", "kind": "Gateway",
                                       "group": "gateway.networking.k8s.io"}]
    manifest["spec"]["mode"] = "DryRun"
    with pytest.raises(ConfigError) as caught:
        resource_from_manifest(manifest)
    assert "spec.mode" in str(caught.value)
