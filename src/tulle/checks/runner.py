"""The check runner: checks are data, the runner executes them, observers see each result.

A :class:`Check` is a record: an id, a group, what it verifies, a hint for when it fails,
whether a failure is fatal (a cross) or only a warning (‼), how long it may keep retrying before it
gives up (``retry_deadline``: for states that settle, such as proxies syncing after a push)
and how long one attempt may take (``timeout``). ``needs`` names the checks it depends on: a
dependency that failed or was skipped skips it, with the reason.

Nothing hangs: each attempt runs in a daemon thread and is abandoned at its timeout, so a
check that never returns is reported as failed and the process can still exit. And `tulle
check` answers within 10 s whatever is frozen: unless `--wait` says otherwise, the checks
that retry share one budget (``RETRY_BUDGET_S`` of time spent in checks that may retry), so
a push that a frozen proxy never ACKs does not hold the run for its check's whole retry
deadline, while a check that passes at once costs the budget nothing.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from tulle.errors import TulleError

C = TypeVar("C")
DOCS_ROOT = "docs/checks"
RETRY_INTERVAL_S = 0.5
RETRY_BUDGET_S = 3.0


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Outcome:
    """What one attempt of a check found."""

    status: Status
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
    # A failure that waiting cannot fix (a NACK, a push un-ACKed past the STALE threshold):
    # the runner reports it at once instead of retrying until the check's deadline.
    settled: bool = False

    @classmethod
    def ok(cls, message: str, **details: Any) -> Outcome:
        return cls(Status.OK, message, details)

    @classmethod
    def warning(cls, message: str, **details: Any) -> Outcome:
        return cls(Status.WARNING, message, details)

    @classmethod
    def failed(cls, message: str, *, settled: bool = False, **details: Any) -> Outcome:
        return cls(Status.FAILED, message, details, settled)


@dataclass(frozen=True)
class Check(Generic[C]):
    """One health check. ``run`` gets the context (the API client) and returns an Outcome;
    a TulleError it raises is a failure with the error's message."""

    id: str
    group: str
    description: str
    hint: str
    run: Callable[[C], Outcome] = field(repr=False, compare=False)
    fatal: bool = True  # False: a failure shows as a warning and blocks nothing
    retry_deadline: float = 0.0  # seconds to keep retrying a failing check
    timeout: float = 5.0  # seconds one attempt may take
    needs: tuple[str, ...] = ()

    @property
    def docs(self) -> str:
        return f"{DOCS_ROOT}/{self.group}.md#{self.id}"


@dataclass(frozen=True)
class Result:
    check: Check[Any]
    status: Status
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of one result (documented in docs/commands.md)."""
        return {"id": self.check.id, "group": self.check.group,
                "description": self.check.description, "status": str(self.status),
                "message": self.message, "hint": self.check.hint, "docs": self.check.docs,
                "details": dict(self.details)}


Observer = Callable[[Result], None]


def run_checks(checks: Sequence[Check[C]], context: C,
               observer: Observer | None = None, max_wait: float | None = None,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> list[Result]:
    """Run ``checks`` in order; each result goes to ``observer`` as soon as it is known.
    ``max_wait`` caps every check's retry deadline (`tulle check --wait`); without it, the
    checks that may retry spend ``RETRY_BUDGET_S`` at most, together."""
    results: dict[str, Result] = {}
    spent = 0.0
    for check in checks:
        blocker = next((results[n] for n in check.needs
                        if n in results and results[n].status in (Status.FAILED,
                                                                   Status.SKIPPED)), None)
        if blocker is not None:
            # Name the check that actually failed, not the chain of skips after it.
            root = results.get(str(blocker.details.get("blockedBy", "")), blocker)
            result = Result(check, Status.SKIPPED,
                            f"skipped: {root.check.id} failed ({root.check.description})",
                            {"blockedBy": root.check.id})
        else:
            cap = max_wait if max_wait is not None else max(0.0, RETRY_BUDGET_S - spent)
            capped = check if check.retry_deadline <= cap \
                else dataclasses.replace(check, retry_deadline=cap)
            started = clock()
            result = run_one(capped, context, clock=clock, sleep=sleep)
            if check.retry_deadline > 0:
                spent += clock() - started
        results[check.id] = result
        if observer is not None:
            observer(result)
    return list(results.values())


def run_one(check: Check[C], context: C, *, clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> Result:
    """Attempt ``check`` until it passes or its retry deadline passes; at least once."""
    started = clock()
    deadline = started + check.retry_deadline
    attempts = 0
    while True:
        attempts += 1
        outcome = _attempt(check, context)
        if outcome.status is Status.OK or outcome.settled \
                or clock() + RETRY_INTERVAL_S > deadline:
            break
        sleep(RETRY_INTERVAL_S)
    status = outcome.status
    if status is Status.FAILED and not check.fatal:
        status = Status.WARNING
    details = dict(outcome.details)
    if attempts > 1 and status is not Status.OK:
        details["attempts"] = attempts
    return Result(check, status, outcome.message, details, round(clock() - started, 3))


def _attempt(check: Check[C], context: C) -> Outcome:
    box: list[Outcome] = []

    def target() -> None:
        box.append(_guarded(check, context))

    worker = threading.Thread(target=target, name=f"check-{check.id}", daemon=True)
    worker.start()
    worker.join(check.timeout)
    if not box:  # still running: abandoned (a daemon thread does not keep the process alive)
        return Outcome.failed(f"did not finish within {check.timeout:g}s (timed out)",
                              timeout=check.timeout)
    return box[0]


def _guarded(check: Check[C], context: C) -> Outcome:
    try:
        return check.run(context)
    except TulleError as error:
        details: dict[str, Any] = {"hint": error.hint} if error.hint else {}
        return Outcome(Status.FAILED, error.message, details)
    except Exception as error:  # a bug in a check must not hide the other checks
        return Outcome.failed(f"the check itself failed: {type(error).__name__}: {error}")


def exit_code(results: Iterable[Result], strict: bool = False) -> int:
    """1 on any failure; with ``strict`` on any warning too; else 0."""
    statuses = {r.status for r in results}
    if Status.FAILED in statuses or (strict and Status.WARNING in statuses):
        return 1
    return 0
