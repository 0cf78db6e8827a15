"""Ranking: causes above the symptoms they explain, then by severity and score.

A symptom (``Finding.symptom``) is explained by every cause that shares a called resource
with it (not merely a caller), or whose subject it names:
"the app on books-1 refuses connections" (proxy/books-1.default, service/books.default)
explains "5xx on web -> books" (service/books.default). An explained symptom is listed after
all causes, with ``explained_by`` naming them; an unexplained one keeps its own place.
Several causes naming one subject (a version that fails and is worse than its sibling) are
one culprit: the worst leads, the others follow with ``explained_by`` naming it.
"""

from __future__ import annotations

from collections.abc import Iterable

from tulle.diagnose.model import Finding, base_subject


def _order(finding: Finding) -> tuple[int, float, str]:
    return (-int(finding.severity), -finding.score, finding.code)


def _targets(finding: Finding) -> frozenset[str]:
    return finding.resources - frozenset(finding.sources)


def _explains(cause: Finding, symptom: Finding) -> bool:
    """A cause explains a symptom about the same called resources, or when the cause is one
    of the symptom's resources itself (a caller's own sidecar); merely sharing a caller is
    not enough (a caller's memory does not explain its callee's 5xx)."""
    return bool(_targets(cause) & _targets(symptom)) or cause.subject in symptom.resources


def rank(findings: Iterable[Finding]) -> list[Finding]:
    findings = list(findings)
    causes = [f for f in findings if not f.symptom]
    # One culprit, one top finding: of the causes naming the same subject, the worst leads
    # and the others follow it, explained by it.
    leads: dict[str, Finding] = {}
    for cause in sorted(causes, key=_order):
        leads.setdefault(base_subject(cause.subject), cause)  # a route and its rules: one
    ranked: list[tuple[tuple[int, int, float, str, str], Finding]] = []
    for found in findings:
        explained: tuple[str, ...] = ()
        if found.symptom:
            explained = tuple(sorted({c.code for c in causes if _explains(c, found)}))
        elif (lead := leads[base_subject(found.subject)]) is not found:
            explained = (lead.code,)
        finding = found.explained(explained) if explained else found
        key = (1 if explained else 0, -int(finding.severity), -finding.score, finding.code,
               finding.subject)
        ranked.append((key, finding))
    ranked.sort(key=lambda item: item[0])
    return [finding for _, finding in ranked]


def impact(failed: int, total: int, base: float) -> float:
    """A score for a finding: the rule's base (how sure and how central the rule is) plus up
    to 40 for the share of requests it hurts."""
    share = failed / total if total else 0.0
    return round(min(100.0, base + 40.0 * share), 1)
