"""ResourceService.apply and .replace report the analyzer messages an apply introduces (see
tests/unit/analysis/test_apply_warnings.py for every rule), on a real SQLite store: a
re-apply repeats nothing, a dry run reports what it would introduce, and no message blocks
an apply, whatever its level."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.model.traffic import Manifest, to_route, traffic_policy
from tests.unit.model.workloads import workload
from tests.unit.xds.meshes import http_route, service
from tulle.analysis.codes import Level
from tulle.controlplane.services.resources import ResourceService
from tulle.model.meta import ResourceKey
from tulle.model.parse import Document
from tulle.store.sqlite import SqliteStore

SUBSET = service("books-v2") | {"spec": {"protocol": "http",
                                         "selector": {"service": "books", "version": "v2"}}}


@pytest.fixture
def resources(tmp_path: Path) -> Iterator[ResourceService]:
    store = SqliteStore(tmp_path / "store.db")
    service = ResourceService(store, lambda: [workload("books-1", "books")], lambda: None)
    yield service
    store.close()


def apply(resources: ResourceService, *manifests: Manifest, dry_run: bool = False
          ) -> list[tuple[str, str]]:
    documents = [Document(f"apply.yaml:{i}", m) for i, m in enumerate(manifests, 1)]
    _, warnings = resources.apply(documents, dry_run=dry_run)
    return [(w.code, w.resource) for w in warnings]


def test_apply_reports_what_it_introduces_once(resources: ResourceService) -> None:
    assert apply(resources, SUBSET, dry_run=True) == [("TUL0004", "Service default/books-v2")]
    assert resources.resources() == []  # a dry run stores nothing
    assert apply(resources, SUBSET) == [("TUL0004", "Service default/books-v2")]
    assert apply(resources, SUBSET) == []  # still true, but not new


def test_an_error_level_message_does_not_block_the_apply(resources: ResourceService) -> None:
    def books(rule: str) -> Manifest:
        return http_route("books", "books", [{"name": rule, "backendRefs": [{"name": "books"}]}])

    policy = traffic_policy("p", to_route("books", "search"), rateLimit={"requests": 10})
    assert apply(resources, books("search"), policy) == []
    documents = [Document("apply.yaml:1", books("find"))]
    results, warnings = resources.apply(documents)
    assert [r.action for r in results] == ["configured"]
    assert [(w.code, w.level, w.resource) for w in warnings] == \
        [("TUL0003", Level.ERROR, "TrafficPolicy default/p")]


def test_replace_reports_what_it_introduces(resources: ResourceService) -> None:
    apply(resources, service("books-v1"))
    _, warnings = resources.replace(
        [SUBSET], [ResourceKey("Service", "default", "books-v1")], source="revision 1")
    assert [(w.code, w.resource, w.source) for w in warnings] == \
        [("TUL0004", "Service default/books-v2", "revision 1")]
