"""The check runner: deadlines, retries, dependency skipping, exit codes and rendering."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from tulle.checks.render import CROSS, TableWriter, as_json, result_lines, summary
from tulle.checks.runner import (
    RETRY_BUDGET_S,
    Check,
    Outcome,
    Result,
    Status,
    exit_code,
    run_checks,
    run_one,
)
from tulle.errors import ControlPlaneUnavailable

NEVER = threading.Event()  # never set: a check waiting on it never returns


def check(id_: str, run: Callable[[Any], Outcome], **kwargs: Any) -> Check[Any]:
    return Check(id_, kwargs.pop("group", "control-plane"), f"{id_} works", f"fix {id_}",
                 run, **kwargs)


def ok(_: Any) -> Outcome:
    return Outcome.ok("fine")


def fails(_: Any) -> Outcome:
    return Outcome.failed("broken", where="here")


def warns(_: Any) -> Outcome:
    return Outcome.warning("soon")


def hangs(_: Any) -> Outcome:
    NEVER.wait()
    raise AssertionError("unreachable")


def test_a_check_that_never_returns_fails_with_a_timeout() -> None:
    result = run_one(check("stuck", hangs, timeout=0.05), None)
    assert result.status is Status.FAILED
    assert "timed out" in result.message and "0.05s" in result.message
    assert result.details["timeout"] == 0.05


def test_a_stuck_check_does_not_stop_the_ones_after_it() -> None:
    results = run_checks([check("stuck", hangs, timeout=0.05), check("next", ok)], None)
    assert [r.status for r in results] == [Status.FAILED, Status.OK]


@pytest.mark.parametrize(("run", "fatal", "expected"), [
    (ok, True, Status.OK),
    (fails, True, Status.FAILED),
    (fails, False, Status.WARNING),  # a non-fatal check's failure is a warning
    (warns, True, Status.WARNING),
])
def test_status_of_one_check(run: Callable[[Any], Outcome], fatal: bool,
                             expected: Status) -> None:
    assert run_one(check("c", run, fatal=fatal), None).status is expected


def test_errors_become_failures_with_their_message_and_hint() -> None:
    def unavailable(_: Any) -> Outcome:
        raise ControlPlaneUnavailable("nobody home", hint="tulle up")

    def crashes(_: Any) -> Outcome:
        raise KeyError("version")

    down = run_one(check("down", unavailable), None)
    assert (down.status, down.message, down.details["hint"]) == \
        (Status.FAILED, "nobody home", "tulle up")
    bug = run_one(check("bug", crashes), None)
    assert bug.status is Status.FAILED and "KeyError" in bug.message


def test_retries_until_the_check_passes() -> None:
    answers = iter([Outcome.failed("not yet"), Outcome.failed("not yet"), Outcome.ok("now")])
    naps: list[float] = []
    result = run_one(check("settles", lambda _: next(answers), retry_deadline=10.0), None,
                     sleep=naps.append)
    assert result.status is Status.OK and len(naps) == 2


def test_retries_stop_at_the_deadline() -> None:
    clock = iter(float(t) for t in range(100))
    calls: list[int] = []

    def never_settles(_: Any) -> Outcome:
        calls.append(1)
        return Outcome.failed("still pending")

    result = run_one(check("pending", never_settles, retry_deadline=5.0), None,
                     clock=lambda: next(clock), sleep=lambda s: None)
    assert result.status is Status.FAILED and result.message == "still pending"
    assert 1 < len(calls) < 10 and result.details["attempts"] == len(calls)


def test_a_settled_failure_is_not_retried() -> None:
    calls: list[int] = []

    def nacked(_: Any) -> Outcome:
        calls.append(1)
        return Outcome.failed("RDS NACKED", settled=True)

    result = run_one(check("nacked", nacked, retry_deadline=15.0), None, sleep=lambda s: None)
    assert result.status is Status.FAILED and len(calls) == 1


def test_max_wait_caps_retry_deadlines() -> None:
    calls: list[int] = []

    def never_settles(_: Any) -> Outcome:
        calls.append(1)
        return Outcome.failed("still pending")

    (result,) = run_checks([check("pending", never_settles, retry_deadline=60.0)], None,
                           max_wait=0.0)
    assert result.status is Status.FAILED and len(calls) == 1


def test_no_retry_without_a_deadline() -> None:
    calls: list[int] = []

    def counted(_: Any) -> Outcome:
        calls.append(1)
        return Outcome.failed("no")

    run_one(check("once", counted), None, sleep=lambda s: None)
    assert len(calls) == 1


@pytest.mark.parametrize(("first", "second_status"), [
    (fails, Status.SKIPPED),
    (ok, Status.OK),
    (warns, Status.OK),  # a warning blocks nothing
])
def test_dependents_are_skipped_only_when_their_dependency_failed(
        first: Callable[[Any], Outcome], second_status: Status) -> None:
    results = run_checks([check("base", first), check("dependent", ok, needs=("base",))],
                         None)
    assert results[1].status is second_status


def test_skips_propagate_and_name_the_check_that_failed() -> None:
    ran: list[str] = []

    def tracked(_: Any) -> Outcome:
        ran.append("x")
        return Outcome.ok("")

    results = run_checks([
        check("reachable", fails),
        check("authenticated", tracked, needs=("reachable",)),
        check("store", tracked, group="store", needs=("authenticated",)),
        check("independent", tracked),
    ], None)
    assert [r.status for r in results] == [Status.FAILED, Status.SKIPPED, Status.SKIPPED,
                                           Status.OK]
    assert len(ran) == 1  # skipped checks never ran
    assert "reachable failed" in results[2].message
    assert results[2].details["blockedBy"] == "reachable"


def test_results_stream_to_the_observer_in_order() -> None:
    seen: list[str] = []
    run_checks([check("a", ok), check("b", fails)], None, lambda r: seen.append(r.check.id))
    assert seen == ["a", "b"]


def _results(*statuses: Status) -> list[Result]:
    return [Result(check(f"c{i}", ok), s, "m") for i, s in enumerate(statuses)]


@pytest.mark.parametrize(("statuses", "strict", "code"), [
    ((Status.OK, Status.OK), False, 0),
    ((Status.OK, Status.SKIPPED), False, 0),
    ((Status.OK, Status.WARNING), False, 0),
    ((Status.OK, Status.WARNING), True, 1),
    ((Status.FAILED,), False, 1),
    ((Status.FAILED, Status.WARNING), True, 1),
    ((), True, 0),
])
def test_exit_codes(statuses: tuple[Status, ...], strict: bool, code: int) -> None:
    results = _results(*statuses)
    assert exit_code(results, strict) == code
    assert as_json(results, strict)["ok"] is (code == 0)


@pytest.mark.parametrize(("status", "mark"), [
    (Status.OK, "√"), (Status.WARNING, "‼"), (Status.FAILED, CROSS), (Status.SKIPPED, "-"),
])
def test_each_status_has_its_mark(status: Status, mark: str) -> None:
    lines = result_lines(Result(check("cp-x", ok), status, "what happened"))
    assert lines[0].startswith(f"{mark} cp-x works")


def test_failures_show_message_hint_and_docs_link() -> None:
    lines = result_lines(Result(check("cp-x", ok), Status.FAILED, "line one\nline two",
                                {"hint": "tulle up"}))
    assert lines == [f"{CROSS} cp-x works", "    line one", "    line two",
                     "    hint: tulle up", "    hint: fix cp-x",
                     "    see: docs/checks/control-plane.md#cp-x"]


def test_ok_lines_carry_the_message_and_no_hint() -> None:
    assert result_lines(Result(check("cp-x", ok), Status.OK, "pid 7")) == ["√ cp-x works: pid 7"]


def test_skipped_lines_say_why_without_a_hint() -> None:
    lines = result_lines(Result(check("cp-x", ok), Status.SKIPPED, "skipped: a failed"))
    assert lines == ["- cp-x works", "    skipped: a failed"]


def test_table_writer_prints_each_group_header_once() -> None:
    out: list[str] = []
    writer = TableWriter(out.append, {"control-plane": "control plane", "store": "store"})
    for result in run_checks([check("a", ok), check("b", ok),
                              check("c", fails, group="store")], None):
        writer(result)
    text = "".join(out)
    assert text.startswith("control plane\n-------------\n√ a works: fine\n√ b works")
    assert text.count("control plane\n") == 1 and f"\nstore\n-----\n{CROSS} c works" in text


def test_summary_counts() -> None:
    assert summary(_results(Status.OK)) == "Status check results are √"
    assert summary(_results(Status.OK, Status.WARNING)) == \
        "Status check results are √ (1 ok, 1 warning)"
    assert summary(_results(Status.OK, Status.WARNING), strict=True).startswith(
        f"Status check results are {CROSS}")
    assert summary(_results(Status.FAILED, Status.SKIPPED)) == \
        f"Status check results are {CROSS} (0 ok, 1 failed, 1 skipped)"


def test_json_shape_is_stable() -> None:
    result = Result(check("proxies-synced", ok, group="proxies"), Status.FAILED, "stale",
                    {"proxies": ["web-1.default"]})
    document = as_json([result])
    assert document == {"ok": False, "checks": [{
        "id": "proxies-synced", "group": "proxies", "description": "proxies-synced works",
        "status": "failed", "message": "stale", "hint": "fix proxies-synced",
        "docs": "docs/checks/proxies.md#proxies-synced",
        "details": {"proxies": ["web-1.default"]}}]}


def test_retrying_checks_share_one_budget_without_wait() -> None:
    """`tulle check` answers within 10 s whatever is frozen: a push a frozen proxy never ACKs
    does not hold the run for its check's whole retry deadline; `--wait` may ask for more."""
    now = [0.0]

    def never_settles(_: Any) -> Outcome:
        now[0] += 1.0  # each attempt takes a second
        return Outcome.failed("still pending")

    checks = [check("first", never_settles, retry_deadline=15.0),
              check("second", never_settles, retry_deadline=15.0)]
    def sleep(seconds: float) -> None:
        now[0] += seconds

    results = run_checks(checks, None, clock=lambda: now[0], sleep=sleep)
    assert [r.status for r in results] == [Status.FAILED, Status.FAILED]
    assert now[0] <= RETRY_BUDGET_S + 2  # not 2 x 15 s
