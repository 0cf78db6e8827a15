"""ResourceService.delete refuses to leave references dangling, unless forced, on a real
SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.model.traffic import to_route, traffic_policy
from tests.unit.model.workloads import workload
from tests.unit.xds.meshes import http_route, service
from tulle.controlplane.services.resources import ResourceService
from tulle.errors import ConfigError
from tulle.model.parse import Document
from tulle.store.sqlite import SqliteStore

MIRRORED = http_route("books", "books", [{
    "backendRefs": [{"name": "books"}],
    "filters": [{"type": "RequestMirror",
                 "requestMirror": {"backendRef": {"name": "books-shadow"}}}]}])


@pytest.fixture
def resources(tmp_path: Path) -> Iterator[ResourceService]:
    store = SqliteStore(tmp_path / "store.db")
    service_ = ResourceService(store, lambda: [workload("books-1", "books")], lambda: None)
    yield service_
    store.close()


def _apply(resources: ResourceService, *manifests: dict[str, object]) -> None:
    resources.apply([Document(f"a.yaml:{i}", m) for i, m in enumerate(manifests, 1)])


def test_a_referred_service_is_not_deleted(resources: ResourceService) -> None:
    _apply(resources, service("books-shadow"), MIRRORED)
    with pytest.raises(ConfigError) as caught:
        resources.delete("service", "default", "books-shadow")
    error = caught.value
    assert "nothing was deleted" in error.message
    assert [(p.resource, p.field) for p in error.problems] == [
        ("HTTPRoute default/books",
         "spec.rules[0].filters[0].requestMirror.backendRef.name")]
    assert "--force" in error.problems[0].hint
    assert {r.meta.name for r in resources.resources()} == {"books-shadow", "books"}


def test_force_deletes_anyway(resources: ResourceService) -> None:
    _apply(resources, service("books-shadow"), MIRRORED)
    assert resources.delete("service", "default", "books-shadow", force=True).action == \
        "deleted"
    assert {r.meta.name for r in resources.resources()} == {"books"}


def test_a_route_a_policy_targets_is_not_deleted(resources: ResourceService) -> None:
    route = http_route("books", "books", [{"name": "search",
                                           "backendRefs": [{"name": "books"}]}])
    policy = traffic_policy("limit", to_route("books", "search"), rateLimit={"requests": 10})
    _apply(resources, route, policy)
    with pytest.raises(ConfigError) as caught:
        resources.delete("httproute", "default", "books")
    assert [p.resource for p in caught.value.problems] == ["TrafficPolicy default/limit"]


def test_a_service_its_workloads_still_define_is_deleted(resources: ResourceService) -> None:
    # books-1 still registers under books: routes to books keep a target.
    _apply(resources, service("books"), http_route("r", "books",
                                                   [{"backendRefs": [{"name": "books"}]}]))
    assert resources.delete("service", "default", "books").action == "deleted"


def test_references_broken_before_do_not_block(resources: ResourceService) -> None:
    _apply(resources, service("books-shadow"), MIRRORED, service("unrelated"))
    resources.delete("service", "default", "books-shadow", force=True)
    assert resources.delete("service", "default", "unrelated").action == "deleted"
