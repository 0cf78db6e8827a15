"""Diagnosis rules: versions compared (TUL1020).

A service with two or more versions (subset Services, e.g. books-v1 and books-v2 for a
canary) is judged version against version: each version's success rate and latency come from
what its instances answered themselves (their inbound side, so retries cannot hide a failing
version), and the route rule and weight that send it traffic say how to take it out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from tulle.diagnose.evidence import Evidence, requests
from tulle.diagnose.model import Finding, Scope, Severity, proxy_subject, service_subject
from tulle.diagnose.rank import impact
from tulle.diagnose.rules import Rule
from tulle.diagnose.rules._traffic import (
    callers,
    feeding,
    inbound,
    members,
    ms,
    p,
    share,
    versions_of,
)
from tulle.model.meta import ServiceRef

MIN_ANSWERS = 10  # per version, in the window
SUCCESS_GAP = 0.05  # worse by 5 points of success (and MIN_ERRORS more failures)...
MIN_ERRORS = 3
SUCCESS_GAP_ERROR = 0.10  # ...an error from 10 points
LATENCY_RATIO, LATENCY_MARGIN_MS = 2.0, 100.0  # p50 or p99: twice the others', 100 ms more
LATENCY_RATIO_ERROR = 5.0


@dataclass(frozen=True)
class _Version:
    ref: ServiceRef
    nodes: tuple[str, ...]
    answered: int
    failed: int
    p50: float | None
    p99: float | None

    @property
    def success(self) -> float:
        return 1 - share(self.failed, self.answered)

    def line(self) -> str:
        return (f"{self.ref.host} ({', '.join(n.split('.')[0] for n in self.nodes) or 'none'}): "
                f"{self.success:.1%} success of {self.answered} requests, p50 {ms(self.p50)}, "
                f"p99 {ms(self.p99)}")


def _measure(evidence: Evidence, ref: ServiceRef, nodes: list[str] | None = None) -> _Version:
    nodes = members(evidence, ref) if nodes is None else nodes
    values = inbound(evidence, nodes)
    return _Version(ref, tuple(nodes), requests(values), values.get("rq5", 0),
                    p(values, 0.5), p(values, 0.99))


def _slower(mine: float | None, theirs: float | None, ratio: float) -> bool:
    return (mine is not None and theirs is not None and mine >= ratio * theirs
            and mine - theirs >= LATENCY_MARGIN_MS)


def _worse(version: _Version, others: list[_Version]) -> tuple[bool, bool]:
    """(fails more, slower) than the best of ``others``."""
    best_success = max(v.success for v in others)
    best_p50 = min((v.p50 for v in others if v.p50 is not None), default=None)
    best_p99 = min((v.p99 for v in others if v.p99 is not None), default=None)
    failing = best_success - version.success >= SUCCESS_GAP and version.failed >= MIN_ERRORS
    slow = (_slower(version.p50, best_p50, LATENCY_RATIO)
            or _slower(version.p99, best_p99, LATENCY_RATIO))
    return failing, slow


def _every_instance(evidence: Evidence, version: _Version, others: list[_Version],
                    failing: bool, slow: bool) -> bool:
    """Whether each instance of the version (with answers enough to judge) is worse in the
    same way: one bad instance of a good version is that instance's finding, not the
    version's (TUL1019, TUL1022)."""
    for node in version.nodes:
        alone = _measure(evidence, version.ref, [node])
        if alone.answered < MIN_ANSWERS // 2:
            continue
        node_failing, node_slow = _worse(replace(alone, failed=max(alone.failed, MIN_ERRORS)
                                                 if failing else alone.failed), others)
        if (failing and not node_failing) or (slow and not failing and not node_slow):
            return False
    return True


def version_worse(evidence: Evidence, scope: Scope) -> Iterator[Finding]:
    """TUL1020: one version answers worse than its siblings (success, p50, p99)."""
    parents = sorted(set(evidence.mesh.services)
                     - {ref for ref, s in evidence.mesh.services.items() if s.selector})
    for parent in parents:
        versions = [_measure(evidence, ref) for ref in versions_of(evidence, parent)]
        measured = [v for v in versions if v.answered >= MIN_ANSWERS]
        for version in measured:
            others = [v for v in measured if v is not version]
            if not others:
                continue
            best_success = max(v.success for v in others)
            best_p50 = min((v.p50 for v in others if v.p50 is not None), default=None)
            best_p99 = min((v.p99 for v in others if v.p99 is not None), default=None)
            gap = best_success - version.success
            failing, slow = _worse(version, others)
            if not (failing or slow) or not _every_instance(evidence, version, others,
                                                             failing, slow):
                continue
            very_slow = (_slower(version.p50, best_p50, LATENCY_RATIO_ERROR)
                         or _slower(version.p99, best_p99, LATENCY_RATIO_ERROR))
            severity = (Severity.ERROR if gap >= SUCCESS_GAP_ERROR or very_slow
                        else Severity.WARNING)
            feeds = feeding(evidence, version.ref)
            what = []
            if failing:
                what.append(f"{version.success:.1%} success against {best_success:.1%}")
            if slow:
                what.append(f"p50 {ms(version.p50)} / p99 {ms(version.p99)} against "
                            f"{ms(best_p50)} / {ms(best_p99)}")
            lines = [version.line(), *(v.line() for v in others)]
            lines += [b.describe() for b in feeds] or [
                f"no route rule names {version.ref.host}: callers reach it directly"]
            fix = (f"roll back or fix {version.ref.host}: set its weight to 0 in "
                   f"{feeds[0].subject} (spec.rules[{feeds[0].index}].backendRefs)"
                   if feeds else f"roll back or fix {version.ref.host}")
            yield Finding(
                "TUL1020", severity,
                impact(version.failed, version.answered, base=55 if failing else 45),
                service_subject(version.ref),
                f"Version {version.ref.host} of {parent.host} answers worse than its "
                f"siblings: {'; '.join(what)}."
                + (" Its application produced these errors." if failing else ""),
                tuple(lines), fix,
                related=(service_subject(parent), *(b.subject for b in feeds),
                         *(proxy_subject(n) for n in version.nodes)),
                sources=tuple(proxy_subject(n) for n in callers(evidence, [version.ref])))


RULES: tuple[Rule, ...] = (version_worse,)
