"""whatif.trials and the control plane's counts: where a DryRun HTTPRoute would send requests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from envoy.data.accesslog.v3 import accesslog_pb2

from tests.unit.xds.meshes import http_route, rule, workload
from tulle.controlplane.services.trials import TrialCounter
from tulle.model.mesh import MeshSnapshot, build_mesh
from tulle.model.meta import ServiceRef
from tulle.model.parse import resource_from_manifest
from tulle.model.route_trials import NOT_FOUND, REDIRECT, UNDECIDED, staged
from tulle.telemetry.schema import TRIAL, TRIAL_SKIPPED, SeriesKey
from tulle.whatif.matching import Request
from tulle.whatif.trials import TrialDecision, evaluate, today
from tulle.xds.compiler import trial_watch

BOOKS = ServiceRef("default", "books")


def first(weights: Sequence[int]) -> int:
    return 0


def last(weights: Sequence[int]) -> int:
    return len(weights) - 1


def mesh(*rules: dict[str, Any], enforced: Sequence[dict[str, Any]] = ()) -> MeshSnapshot:
    trial = http_route("books", "books", list(rules))
    trial["spec"]["mode"] = "DryRun"
    stored = (resource_from_manifest(http_route("books", "books", list(enforced)))
              if enforced else None)
    return build_mesh(1, [staged(resource_from_manifest(trial), stored)],
                      [workload("books-1"), workload("books-v2-1")])


CANARY = rule(("books", 90), ("books-v2", 10), prefix="/list")


@pytest.mark.parametrize(("rules", "request_", "pick", "expected"), [
    ([CANARY], Request("GET", "/list/1"), first, ("default/books", "0", "books.default")),
    ([CANARY], Request("GET", "/list?x=1"), last, ("default/books", "0", "books-v2.default")),
    ([CANARY], Request("GET", "/other"), first, ("", "", NOT_FOUND)),
    ([{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
       "filters": [{"type": "RequestRedirect", "requestRedirect": {"hostname": "x.example"}}]}],
     Request("GET", "/"), first, ("default/books", "0", REDIRECT)),
    ([{"name": "beta", "matches": [{"headers": [{"name": "x-beta", "value": "1"}]}],
       "backendRefs": [{"name": "books-v2"}]}, rule("books")],
     Request("GET", "/", (("X-Beta", "1"),)), first, ("default/books", "beta",
                                                     "books-v2.default")),
])
def test_where_the_trial_would_send_a_request(rules: list[dict[str, Any]], request_: Request,
                                              pick: Any, expected: tuple[str, str, str]
                                              ) -> None:
    snapshot = mesh(*rules)
    outcome = evaluate(BOOKS, snapshot.route_trials[BOOKS], request_, pick=pick)
    assert (outcome.route, outcome.rule, outcome.would) == expected


def test_a_match_on_a_header_the_caller_did_not_log_is_undecided() -> None:
    snapshot = mesh({"matches": [{"headers": [{"name": "Cookie", "value": "beta=1"}]}],
                     "backendRefs": [{"name": "books-v2"}]}, rule("books"))
    trial = snapshot.route_trials[BOOKS]
    assert trial_watch(snapshot).headers == ()  # type: ignore[union-attr]
    outcome = evaluate(BOOKS, trial, Request("GET", "/"), frozenset({"cookie"}))
    assert outcome.would == UNDECIDED


@pytest.mark.parametrize(("cluster", "status", "expected"), [
    ("outbound|books-v2.default", "200", "books-v2.default"),
    ("", "404", "404"),
    ("", "", "-"),
])
def test_where_a_request_went(cluster: str, status: str, expected: str) -> None:
    assert today(cluster, status) == expected


def entry(path: str, cluster: str = "outbound|books.default", vhost: str = "books.default",
          **headers: str) -> accesslog_pb2.HTTPAccessLogEntry:
    out = accesslog_pb2.HTTPAccessLogEntry()
    tags = out.common_properties.custom_tags
    tags.update({"tulleLog": "route-trial", "vhost": vhost, "method": "GET", "path": path,
                 "cluster": cluster, "status": "200"})
    tags.update({f"h.{k.replace('_', '-')}": v for k, v in headers.items()})
    return out


def count_trials(snapshot: MeshSnapshot, entries: list[accesslog_pb2.HTTPAccessLogEntry],
                 per_second: int = 100) -> list[tuple[SeriesKey, dict[str, int]]]:
    return TrialCounter(lambda: 10.0, per_second).count(snapshot, "web-1.default", entries)


def test_the_control_plane_counts_by_rule_and_destination() -> None:
    snapshot = mesh(rule("books-v2", prefix="/list"), enforced=[rule("books", prefix="/")])
    counted = dict(count_trials(snapshot, [
        entry("/list/1"), entry("/list/2"),
        entry("/list/3", cluster="outbound|books-v2.default"),
        entry("/about"),
        entry("/list/4", vhost="other.default"),  # no trial there: not counted
    ]))
    assert counted == {
        SeriesKey(TRIAL, "books.default", "default/books", "0"):
            {"rq": 3, "moved": 2, "to:books-v2.default": 3},
        SeriesKey(TRIAL, "books.default", "", ""): {"rq": 1, "moved": 1, "to:404": 1},
    }


def test_no_trial_left_counts_nothing() -> None:
    snapshot = build_mesh(1, [], [workload("books-1")])
    assert count_trials(snapshot, [entry("/list/1")]) == []


def test_a_header_match_is_evaluated_on_the_logged_value() -> None:
    snapshot = mesh({"name": "beta", "matches": [{"headers": [{"name": "x-beta",
                                                                "value": "1"}]}],
                     "backendRefs": [{"name": "books-v2"}]}, rule("books"))
    assert trial_watch(snapshot).headers == ("x-beta",)  # type: ignore[union-attr]
    counted = dict(count_trials(snapshot, [entry("/", x_beta="1"), entry("/")]))
    assert counted[SeriesKey(TRIAL, "books.default", "default/books", "beta")]["rq"] == 1
    assert counted[SeriesKey(TRIAL, "books.default", "default/books", "1")]["moved"] == 0


@pytest.mark.parametrize(("decision", "text"), [
    (TrialDecision("default/books", "split", backends=(("books.default", 90),
                                                      ("books-v2.default", 10))),
     "default/books:split -> books.default 90 %, books-v2.default 10 %"),
    (TrialDecision("default/books", "0", backends=(("books-v2.default", 1),)),
     "default/books:0 -> books-v2.default"),
    (TrialDecision("", "", backends=(("books.default", 1),)), "books.default (the default route)"),
    (TrialDecision("", "", NOT_FOUND), "404 (no rule matches)"),
    (TrialDecision("default/books", "old", REDIRECT), "default/books:old -> redirect"),
    (TrialDecision("", "", UNDECIDED), "undecided (the routing matches on a redacted header)"),
])
def test_what_tap_says_a_trial_would_do(decision: TrialDecision, text: str) -> None:
    assert decision.describe() == text


def test_past_the_budget_requests_are_counted_as_not_evaluated() -> None:
    snapshot = mesh(rule("books-v2", prefix="/"))
    now = [10.0]
    counter = TrialCounter(lambda: now[0], per_second=3)
    first = dict(counter.count(snapshot, "web-1.default", [entry("/")] * 2))
    second = dict(counter.count(snapshot, "web-1.default", [entry("/")] * 4))
    tried = SeriesKey(TRIAL, "books.default", "default/books", "0")
    skipped = SeriesKey(TRIAL, "books.default", "", TRIAL_SKIPPED)
    assert (first[tried]["rq"], second[tried]["rq"], second[skipped]["rq"]) == (2, 1, 3)
    # The budget is the control plane's: another caller's requests wait for the next second.
    assert dict(counter.count(snapshot, "web-2.default", [entry("/")]))[skipped]["rq"] == 1
    now[0] = 11.0
    assert dict(counter.count(snapshot, "web-2.default", [entry("/")] * 3))[tried]["rq"] == 3


def test_a_header_envoy_cannot_log_leaves_its_matches_undecided() -> None:
    snapshot = mesh({"matches": [{"headers": [{"name": "x%beta", "value": "1"}]}],
                     "backendRefs": [{"name": "books-v2"}]}, rule("books"))
    assert trial_watch(snapshot).headers == ()  # type: ignore[union-attr]
    counted = dict(count_trials(snapshot, [entry("/")]))
    assert counted == {SeriesKey(TRIAL, "books.default", "", ""): {
        "rq": 1, "moved": 1, "to:undecided": 1}}
