"""Apply-time warnings (advisories.py): legal configuration that probably does not do what was
meant. Only resources of the batch being applied are warned about."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tests.unit.model.documents import Expected, assert_problems
from tests.unit.model.traffic import Manifest, to_service, traffic_policy
from tests.unit.model.workloads import workload
from tests.unit.xds.meshes import http_route, parse, service
from tulle.errors import Problem
from tulle.model.advisories import advisories
from tulle.model.workload import Workload

SELECTOR = {"service": "books", "version": "v2"}
NO_WORKLOAD = "selects no workload yet: traffic sent to this service gets 503"


def warnings(batch: Sequence[Manifest], existing: Sequence[Manifest] = (),
             workloads: Sequence[Workload] = ()) -> list[Problem]:
    """Warnings for applying ``batch`` on top of ``existing``; every source is "apply.yaml"."""
    resources = parse(*existing, *batch)
    batch_resources = resources[len(existing):]
    proposed = {r.key: r for r in resources}
    found = advisories(batch_resources, proposed, workloads,
                       {r.key: "apply.yaml" for r in batch_resources})
    assert all(p.level == "warning" and p.source == "apply.yaml" for p in found)
    return found


def subset(name: str = "books-v2", namespace: str = "default",
           selector: dict[str, str] | None = None) -> Manifest:
    return service(name, namespace=namespace) | {
        "spec": {"protocol": "http", "selector": selector or SELECTOR}}


@pytest.mark.parametrize(("workloads", "expected"), [
    ([], [("spec.selector", NO_WORKLOAD, "tulle run --service SVC --version V")]),
    ([workload("books-1", "books", version="v2")], []),
    ([workload("books-1", "books", version="v2", namespace="shop")],
     [("spec.selector", NO_WORKLOAD, "check the labels")]),
], ids=["no workloads", "a match", "another namespace"])
def test_selector_matching_nothing(workloads: list[Workload], expected: list[Expected]
                                   ) -> None:
    found = warnings([subset()], workloads=workloads)
    assert_problems(found, expected)
    assert all(p.resource == "Service default/books-v2" for p in found)


def test_only_the_batch_is_warned_about() -> None:
    assert warnings([service("books")], existing=[subset()]) == []


def match(value: str = "/books", kind: str = "PathPrefix", **extra: Any) -> dict[str, Any]:
    return {"path": {"type": kind, "value": value}} | extra


def route(name: str, *matches: dict[str, Any], parent: str = "books") -> Manifest:
    """One rule per match, each to backend "books"."""
    return http_route(name, parent, [{"backendRefs": [{"name": "books"}], "matches": [m]}
                                     for m in matches])


SHADOWED = "never matches: default/a rules[0].matches[0] matches the same requests to " \
           "books.default first"
CHANGE = "change or remove one of the two matches"


@pytest.mark.parametrize(("first", "second", "shadowed"), [
    (match(), match(), True),
    (match("/books/"), match("/books"), True),  # a trailing "/" in a prefix is ignored
    (match("/books"), match("/books", "Exact"), False),
    (match(headers=[{"name": "X-User", "value": "1"}]),
     match(headers=[{"name": "x-user", "value": "1"}]), True),  # header names ignore case
    (match(headers=[{"name": "x-user", "value": "a"}]),
     match(headers=[{"name": "x-user", "value": "A"}]), False),
], ids=["identical", "trailing slash", "prefix vs exact", "header name case",
        "header values differ"])
def test_shadowed_rule_in_a_later_route(first: dict[str, Any], second: dict[str, Any],
                                        shadowed: bool) -> None:
    found = warnings([route("a", first), route("b", second)])
    expected = [("spec.rules[0].matches[0]", SHADOWED, CHANGE)] if shadowed else []
    assert_problems(found, expected)
    assert all(p.resource == "HTTPRoute default/b" for p in found)


def test_shadowed_within_one_route_names_the_later_rule() -> None:
    found = warnings([route("a", match("/x"), match("/books"), match("/books/"))])
    assert_problems(found, [("spec.rules[2].matches[0]", "never matches: default/a "
                             "rules[1].matches[0] matches the same requests", CHANGE)])


@pytest.mark.parametrize(("batch", "existing", "count"), [
    ([route("b", match())], [route("a", match())], 1),  # the new route is shadowed
    ([route("a", match())], [route("b", match())], 0),  # the new route shadows: no warning
], ids=["new route shadowed", "new route shadows"])
def test_shadowing_is_reported_on_the_batch_only(batch: list[Manifest],
                                                 existing: list[Manifest], count: int) -> None:
    assert len(warnings(batch, existing)) == count


def test_exact_paths_with_and_without_trailing_slash_do_not_shadow() -> None:
    assert warnings([route("a", match("/books", "Exact"), match("/books/", "Exact"))]) == []


POOL = {"maxConnections": 1}
IGNORED = [("spec.connectionPool", "Service default/books already gets connectionPool from "
            "TrafficPolicy default/a; this one is ignored", "set it in one policy only")]


@pytest.mark.parametrize(("batch", "existing", "warned"), [
    (["b"], ["a"], True),
    (["a"], ["b"], False),  # the policy applied wins: the existing one is the one ignored
], ids=["new policy ignored", "new policy wins"])
def test_policy_conflicts(batch: list[str], existing: list[str], warned: bool) -> None:
    def policies(names: list[str]) -> list[Manifest]:
        return [traffic_policy(n, to_service(), connectionPool=POOL) for n in names]

    found = warnings(policies(batch), policies(existing))
    assert_problems(found, IGNORED if warned else [])
    assert all(p.resource == "TrafficPolicy default/b" for p in found)
