"""Apply-time warnings (``apply_warnings``): the analyzers' messages that an apply introduces,
that is, present on the store with the batch laid over it and absent on the store as it is.
Each case: the resources stored before, the batch, the live workloads, and the (code,
resource, field) of every message expected, including cases that must produce none."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tests.unit.model.traffic import Manifest, to_route, to_service, traffic_policy
from tests.unit.model.workloads import workload
from tests.unit.xds.meshes import http_route, parse, service
from tulle.analysis.analyzers import ANALYZERS, TELEMETRY
from tulle.analysis.codes import Level
from tulle.analysis.engine import AnalysisContext, Analyzer, Message
from tulle.analysis.run import WarningsMemo, apply_warnings
from tulle.model.kinds import HTTP_ROUTE
from tulle.model.workload import Workload

Found = tuple[str, str, str]  # (code, "Kind namespace/name", field)
BOOKS_V1 = workload("books-1", "books", version="v1")
BATCH_SOURCE = "apply.yaml"


def warnings(batch: Sequence[Manifest], stored: Sequence[Manifest] = (),
             workloads: Sequence[Workload] = (BOOKS_V1,)) -> tuple[Message, ...]:
    """Apply ``batch`` (from "apply.yaml") over ``stored``, as ResourceService.apply does."""
    current = parse(*stored) if stored else ()
    applied = parse(*batch)
    proposed = {r.key: r for r in current} | {r.key: r for r in applied}
    return apply_warnings(current, proposed.values(), workloads,
                          {r.key: BATCH_SOURCE for r in applied})


def found(messages: Sequence[Message]) -> list[Found]:
    return sorted((m.code, m.resource, m.field) for m in messages)


def match(value: str = "/books", kind: str = "PathPrefix", **extra: Any) -> dict[str, Any]:
    return {"path": {"type": kind, "value": value}} | extra


def route(name: str, *matches: dict[str, Any], parent: str = "books") -> Manifest:
    """One rule per match, each to backend "books"."""
    return http_route(name, parent, [{"backendRefs": [{"name": "books"}], "matches": [m]}
                                     for m in matches])


def subset(name: str = "books-v2", version: str = "v2") -> Manifest:
    return service(name) | {"spec": {"protocol": "http",
                                      "selector": {"service": "books", "version": version}}}


def pool_policy(name: str) -> Manifest:
    return traffic_policy(name, to_service(), connectionPool={"maxConnections": 1})


CANARY = http_route("canary", "books", [{"backendRefs": [{"name": "books", "weight": 90},
                                                         {"name": "books-v2", "weight": 10}]}])
HEADER = {"name": "x-user", "value": "1"}
SUBSET = ("TUL0004", "Service default/books-v2", "spec.selector")
RULE_B = ("TUL0008", "HTTPRoute default/b", "spec.rules[0]")
OVERLAP_B = ("TUL0010", "HTTPRoute default/b", "spec.rules[0].matches[0]")
IGNORED_B = ("TUL0018", "TrafficPolicy default/b", "spec.connectionPool")



def port_rule(*ports: int) -> Manifest:
    """A DENY on books for requests to these ports."""
    return {"apiVersion": "tulle.io/v1alpha1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "ports", "namespace": "default"},
            "spec": {"targetRef": {"kind": "Service", "name": "books"}, "action": "DENY",
                     "rules": [{"to": [{"ports": list(ports)}]}]}}


# (id, stored, batch, workloads, expected)
CASES: list[tuple[str, list[Manifest], list[Manifest], list[Workload], list[Found]]] = [
    # AuthorizationPolicy rules on ports the live instances do not serve (they serve 8080).
    ("a rule on another port", [], [port_rule(9090)], [BOOKS_V1],
     [("TUL0024", "AuthorizationPolicy default/ports", "spec.rules[0]")]),
    ("a rule on the served port", [], [port_rule(9090, 8080)], [BOOKS_V1], []),
    # Subsets (selector Services) that select no live workload.
    ("subset without workload", [], [subset()], [BOOKS_V1], [SUBSET]),
    ("subset without any workload", [], [subset()], [], [SUBSET]),
    ("subset with its workload", [], [subset()],
     [BOOKS_V1, workload("books-2", "books", version="v2")], []),
    ("subset's workload in another namespace", [], [subset()],
     [BOOKS_V1, workload("books-2", "books", version="v2", namespace="shop")], [SUBSET]),
    ("empty subset re-applied", [subset()], [subset()], [BOOKS_V1], []),
    ("unrelated apply next to an empty subset", [subset()], [service("authors")], [BOOKS_V1],
     []),
    # The subset was empty already; the new route now sends it traffic, and the message
    # (which names its users) says so.
    ("new route to an empty subset", [subset()], [CANARY], [BOOKS_V1], [SUBSET]),
    # Rules hidden by an earlier match (Gateway API precedence), and routes that overlap.
    ("identical matches", [], [route("a", match()), route("b", match())], [BOOKS_V1],
     [RULE_B, OVERLAP_B]),
    ("trailing slash in a prefix", [], [route("a", match("/books/")), route("b", match())],
     [BOOKS_V1], [RULE_B, OVERLAP_B]),
    ("header names ignore case", [],
     [route("a", match(headers=[HEADER | {"name": "X-User"}])),
      route("b", match(headers=[HEADER]))], [BOOKS_V1], [RULE_B, OVERLAP_B]),
    ("a regex header hides an exact one", [],
     [route("a", match(headers=[{"name": "x-user", "type": "RegularExpression",
                                 "value": ".*"}])),
      route("b", match(headers=[HEADER]))], [BOOKS_V1], [RULE_B, OVERLAP_B]),
    ("header values differ", [],
     [route("a", match(headers=[HEADER | {"value": "a"}])),
      route("b", match(headers=[HEADER | {"value": "A"}]))], [BOOKS_V1], []),
    # The exact path ranks first whatever the route names: nothing is hidden, but the two
    # routes fight over /books, and the prefix route loses it.
    ("prefix and exact", [], [route("a", match()), route("b", match("/books", "Exact"))],
     [BOOKS_V1], [("TUL0010", "HTTPRoute default/a", "spec.rules[0].matches[0]")]),
    ("exact paths with and without a trailing slash", [],
     [route("a", match("/books", "Exact"), match("/books/", "Exact"))], [BOOKS_V1], []),
    ("hidden within one route", [], [route("a", match("/x"), match("/books"),
                                            match("/books/"))],
     [BOOKS_V1], [("TUL0008", "HTTPRoute default/a", "spec.rules[2]")]),
    # A match hidden by another match of its own rule costs nothing: the rule still gets
    # those requests.
    ("duplicate match within one rule", [],
     [http_route("a", "books", [{"backendRefs": [{"name": "books"}],
                                 "matches": [match(), match("/books/")]}])], [BOOKS_V1], []),
    ("new route hidden by a stored one", [route("a", match())], [route("b", match())],
     [BOOKS_V1], [RULE_B, OVERLAP_B]),
    # The new route comes first: the stored route's rule is the one that stops matching.
    ("new route hides a stored one", [route("b", match())], [route("a", match())],
     [BOOKS_V1], [RULE_B, OVERLAP_B]),
    ("hidden rule re-applied", [route("a", match()), route("b", match())],
     [route("b", match())], [BOOKS_V1], []),
    ("an apply that ends the hiding", [route("a", match()), route("b", match())],
     [route("a", match("/other"))], [BOOKS_V1], []),
    # Two TrafficPolicies setting the same thing for one target: the first by name wins.
    ("new policy ignored", [pool_policy("a")], [pool_policy("b")], [BOOKS_V1], [IGNORED_B]),
    ("new policy wins over a stored one", [pool_policy("b")], [pool_policy("a")], [BOOKS_V1],
     [IGNORED_B]),
    ("both policies in the batch", [], [pool_policy("a"), pool_policy("b")], [BOOKS_V1],
     [IGNORED_B]),
    ("ignored policy re-applied", [pool_policy("a"), pool_policy("b")], [pool_policy("b")],
     [BOOKS_V1], []),
    ("policies setting different things", [pool_policy("a")],
     [traffic_policy("b", to_service(), rateLimit={"requests": 10})], [BOOKS_V1], []),
    # Every other analyzer that reads no telemetry runs too.
    ("policy for a service without workloads", [service("authors")],
     [traffic_policy("p", to_service("authors"), connectionPool={"maxConnections": 1})],
     [BOOKS_V1], [("TUL0015", "TrafficPolicy default/p", "spec.targetRefs[0]")]),
    ("the same backend twice", [], [http_route("r", "books", [{"backendRefs": [
        {"name": "books", "weight": 1}, {"name": "books", "weight": 1}]}])], [BOOKS_V1],
     [("TUL0006", "HTTPRoute default/r", "spec.rules[0].backendRefs[1]")]),
]


@pytest.mark.parametrize(("stored", "batch", "workloads", "expected"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_introduced_messages(stored: list[Manifest], batch: list[Manifest],
                             workloads: list[Workload], expected: list[Found]) -> None:
    assert found(warnings(batch, stored, workloads)) == sorted(expected)


def test_same_wording_as_analyze() -> None:
    """The messages are the analyzers': code, level, title, message, fix and docs page."""
    [hidden, overlap] = warnings([route("b", match())], [route("a", match())])
    assert (hidden.code, hidden.level, hidden.title) == \
        ("TUL0008", Level.WARNING, "Route rule never matches")
    assert hidden.message == (
        "this rule never matches: HTTPRoute default/a rules[0] (PathPrefix /books) takes "
        "every request of PathPrefix /books to books.default first")
    assert hidden.fix.startswith("remove the rule, or make it more specific")
    assert hidden.docs == "docs/diagnostics/TUL0008.md"
    assert overlap.code == "TUL0010" and "HTTPRoutes default/a and default/b" in overlap.message
    [subset_message] = warnings([CANARY], [subset()])
    assert subset_message.message.endswith("; used by HTTPRoute default/canary")
    assert "`tulle run --service SVC --version V`" in subset_message.fix
    assert "books-1 ({service: books, version: v1})" in subset_message.fix
    [ignored] = warnings([pool_policy("b")], [pool_policy("a")])
    assert ignored.message == ("Service default/books already gets connectionPool from "
                               "TrafficPolicy default/a; this policy's connectionPool is "
                               "ignored")


def test_source_is_the_batch_document_for_batch_resources_only() -> None:
    hides = warnings([route("a", match())], [route("b", match())])
    assert {m.source for m in hides} == {""}  # the messages are about the stored route b
    hidden = warnings([route("b", match())], [route("a", match())])
    assert {m.source for m in hidden} == {BATCH_SOURCE}


def test_an_error_level_message_is_reported_not_raised() -> None:
    """Renaming the rule a stored policy targets passes validation (only the batch's own
    references are checked) and leaves the policy acting on nothing: TUL0003, level error,
    reported like any other message."""
    named = http_route("books", "books", [{"name": "search", "backendRefs": [{"name": "books"}]}])
    renamed = http_route("books", "books", [{"name": "find", "backendRefs": [{"name": "books"}]}])
    policy = traffic_policy("p", to_route("books", "search"), rateLimit={"requests": 10})
    [message] = warnings([renamed], [named, policy])
    assert (message.code, message.level, message.resource) == \
        ("TUL0003", Level.ERROR, "TrafficPolicy default/p")
    assert 'no rule named "search"' in message.message and "find" in message.fix


def test_analyzers_that_need_telemetry_do_not_run() -> None:
    def crash(ctx: AnalysisContext) -> None:
        raise AssertionError("an analyzer that needs telemetry ran at apply time")

    needs_telemetry = Analyzer("needs-telemetry", "x", (HTTP_ROUTE,), (), crash,
                               needs=TELEMETRY)
    applied = parse(route("a", match()))
    assert apply_warnings((), applied, (BOOKS_V1,), {}, (needs_telemetry,)) == ()



def test_the_memo_analyzes_one_state_per_apply_and_says_what_apply_warnings_says() -> None:
    """Applies in a row: each one's current state is the last one's proposed state (read back
    equal, not the same objects), so the memo analyzes only the proposed one; with other
    workloads it analyzes both again. Its messages are apply_warnings'."""
    runs: list[int] = []

    def count(ctx: AnalysisContext) -> None:
        runs.append(len(ctx.resources(HTTP_ROUTE)))

    chosen = (*ANALYZERS, Analyzer("count", "x", (HTTP_ROUTE,), (), count))
    memo = WarningsMemo(chosen)
    books_v2 = workload("books-2", "books", version="v2")
    steps = [(route("a", match()), (BOOKS_V1,), 2),  # nothing seen yet: both states
             (route("a", match("/x")), (BOOKS_V1,), 1),
             (route("b", match()), (BOOKS_V1,), 1),
             (route("c", match()), (BOOKS_V1, books_v2), 2)]  # a workload came
    stored: tuple[Any, ...] = parse(service("books"), subset())
    for manifest, workloads, analyses in steps:
        applied = parse(manifest)
        proposed = {r.key: r for r in stored} | {r.key: r for r in applied}
        sources = {r.key: BATCH_SOURCE for r in applied}
        expected = apply_warnings(stored, proposed.values(), workloads, sources, chosen)
        runs.clear()
        assert memo(stored, proposed.values(), workloads, sources) == expected
        assert len(runs) == analyses, (manifest, runs)
        # As the store reads it back: equal resources, new objects.
        stored = parse(*(r.manifest for r in proposed.values()))
