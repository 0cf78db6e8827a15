"""Tap targets: resolving what the user typed, planning loggers, and routing events."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.xds.meshes import mesh, service, workload
from tulle.errors import NotFoundError, UsageError
from tulle.model.meta import ServiceRef
from tulle.model.taps import ProxyTaps
from tulle.tap.targets import EMPTY_PLAN, TapTarget, plan_taps, resolve_target, wants

BOOKS = ServiceRef("default", "books")
SUBSET = {"apiVersion": "tulle.io/v1alpha1", "kind": "Service",
          "metadata": {"name": "books-v1"}, "spec": {"selector": {"service": "books"}}}
SNAPSHOT = mesh(1, [workload("books-1"), workload("books-2"), workload("web-1"),
                    workload("shop-1", namespace="shop"), workload("db-1")],
                [service("db", "tcp"), service("authors"), SUBSET])


@pytest.mark.parametrize(("text", "namespace", "expected"), [
    ("books", "default", TapTarget("service", "default", "books")),
    ("service/books", "default", TapTarget("service", "default", "books")),
    ("svc/authors", "default", TapTarget("service", "default", "authors")),
    ("books-1", "default", TapTarget("workload", "default", "books-1")),
    ("wl/books-1", "default", TapTarget("workload", "default", "books-1")),
    ("shop-1", "shop", TapTarget("workload", "shop", "shop-1")),
])
def test_resolve(text: str, namespace: str, expected: TapTarget) -> None:
    assert resolve_target(SNAPSHOT, text, namespace) == expected


BAD: list[tuple[str, str, str, type[Exception], str]] = [
    ("unknown", "bookz", "default", NotFoundError,
     "no service or workload named 'bookz' in namespace default"),
    ("wrong namespace", "books", "shop", NotFoundError, "in namespace shop"),
    ("service that is a workload", "service/books-1", "default", NotFoundError,
     "no service named 'books-1'"),
    ("unknown kind", "pod/books-1", "default", UsageError, "unknown kind 'pod'"),
    ("bad name", "Books!", "default", UsageError, "is not a valid name"),
    ("tcp", "db", "default", UsageError, "is a TCP service"),
]


@pytest.mark.parametrize(("text", "namespace", "error", "message"), [c[1:] for c in BAD],
                         ids=[c[0] for c in BAD])
def test_resolve_errors_name_what_is_wrong_and_the_fix(
        text: str, namespace: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        resolve_target(SNAPSHOT, text, namespace)
    assert getattr(caught.value, "hint", "")


def test_a_typo_gets_a_suggestion() -> None:
    with pytest.raises(NotFoundError) as caught:
        resolve_target(SNAPSHOT, "bookz", "default")
    assert 'did you mean "books"' in str(caught.value.hint)


def test_a_name_that_is_both_must_be_qualified() -> None:
    both = mesh(1, [workload("web", service="web")])
    with pytest.raises(UsageError, match="both a service and a workload") as caught:
        resolve_target(both, "web", "default")
    assert "service/web" in str(caught.value.hint)


def test_no_session_no_plan() -> None:
    assert plan_taps([], SNAPSHOT) is EMPTY_PLAN


def test_a_service_tap_logs_its_instances_inbound_and_every_caller_for_it() -> None:
    plan = plan_taps([TapTarget("service", "default", "books")], SNAPSHOT)
    called = ProxyTaps(inbound=True, destinations=frozenset({BOOKS}))
    caller = ProxyTaps(destinations=frozenset({BOOKS}))
    assert plan == {"books-1.default": called, "books-2.default": called,
                    "web-1.default": caller, "shop-1.shop": caller, "db-1.default": caller}


def test_a_subset_taps_the_workloads_its_selector_picks() -> None:
    plan = plan_taps([TapTarget("service", "default", "books-v1")], SNAPSHOT)
    assert {node for node, taps in plan.items() if taps.inbound} == {
        "books-1.default", "books-2.default"}


def test_a_workload_tap_logs_that_proxy_only_and_sessions_combine() -> None:
    plan = plan_taps([TapTarget("workload", "default", "web-1"),
                      TapTarget("workload", "default", "gone")], SNAPSHOT)
    assert plan == {"web-1.default": ProxyTaps(inbound=True, outbound=True)}
    both = plan_taps([TapTarget("workload", "default", "web-1"),
                      TapTarget("service", "default", "books")], SNAPSHOT)
    assert both["web-1.default"] == ProxyTaps(inbound=True, outbound=True)


def event(workload: str, direction: str, **fields: Any) -> dict[str, Any]:
    return {"workload": workload, "direction": direction} | fields


BOOKS_TAP = TapTarget("service", "default", "books")
WANTS: list[tuple[str, TapTarget, dict[str, Any], bool]] = [
    ("instance inbound", BOOKS_TAP, event("books-1.default", "inbound"), True),
    ("other inbound", BOOKS_TAP, event("web-1.default", "inbound"), False),
    ("by cluster", BOOKS_TAP, event("web-1.default", "outbound",
                                    upstreamCluster="outbound|books.default"), True),
    ("by short host (no route, faults)", BOOKS_TAP,
     event("web-1.default", "outbound", authority="books"), True),
    ("by full host", BOOKS_TAP, event("shop-1.shop", "outbound", authority="books.default"),
     True),
    ("short host from another namespace is another service", BOOKS_TAP,
     event("shop-1.shop", "outbound", authority="books"), False),
    ("other service", BOOKS_TAP, event("web-1.default", "outbound", authority="authors",
                                       upstreamCluster="outbound|authors.default"), False),
    ("unknown sender", BOOKS_TAP, event("ghost.default", "inbound"), False),
    ("workload: its own", TapTarget("workload", "default", "web-1"),
     event("web-1.default", "outbound"), True),
    ("workload: another", TapTarget("workload", "default", "web-1"),
     event("books-1.default", "inbound"), False),
]


@pytest.mark.parametrize(("target", "tapped", "expected"), [c[1:] for c in WANTS],
                         ids=[c[0] for c in WANTS])
def test_events_go_to_the_sessions_that_want_them(
        target: TapTarget, tapped: dict[str, Any], expected: bool) -> None:
    assert wants(target, tapped, SNAPSHOT) is expected
