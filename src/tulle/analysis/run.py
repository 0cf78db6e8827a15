"""The entry points: `tulle analyze` on files alone (the CLI) or on the live store with files
overlaid as if applied (the control plane), and the warnings of an apply (the control plane).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from tulle.analysis.analyzers import ANALYZERS
from tulle.analysis.engine import AnalysisInput, AnalysisResult, Analyzer, Message, analyze
from tulle.analysis.traffic import Traffic
from tulle.errors import ConfigError
from tulle.model.meta import ResourceKey
from tulle.model.parse import Document, parse_documents
from tulle.model.resource import Resource
from tulle.model.workload import Workload


def parse_for_analysis(documents: Sequence[Document]) -> tuple[Resource, ...]:
    """Each resource checked on its own (schema and field checks, as apply does); references
    between resources are left to the analyzers, which report them with codes."""
    try:
        return parse_documents(documents)
    except ConfigError as exc:
        count = len(exc.problems)
        raise ConfigError(exc.problems, message=f"{count} problem{'s' if count != 1 else ''} "
                          "found; fix them before the files can be analyzed") from exc


def run_analysis(documents: Sequence[Document] = (), stored: Iterable[Resource] = (),
                 workloads: Iterable[Workload] | None = None, traffic: Traffic | None = None,
                 analyzers: Iterable[Analyzer] = ANALYZERS) -> AnalysisResult:
    """Analyze ``stored`` with ``documents`` overlaid on it (a document replaces the stored
    resource of the same kind, namespace and name)."""
    batch = parse_for_analysis(documents) if documents else ()
    sources = {r.key: d.source for r, d in zip(batch, documents, strict=True)}
    merged = {r.key: r for r in stored} | {r.key: r for r in batch}
    given = AnalysisInput(tuple(merged.values()), sources,
                          None if workloads is None else tuple(workloads), traffic)
    return analyze(given, analyzers)


def apply_warnings(current: Iterable[Resource], proposed: Iterable[Resource],
                   workloads: Iterable[Workload], sources: Mapping[ResourceKey, str],
                   analyzers: Iterable[Analyzer] = ANALYZERS) -> tuple[Message, ...]:
    """The messages an apply (or a rollback) introduces: those the analyzers report on the
    ``proposed`` state (the store as the change would leave it) and not on the ``current``
    one, compared by code, resource, field and message. A message about a resource outside
    the batch counts too (a new route that hides a stored route's rule), and so does one whose
    words change (a subset's message names the routes that use it, so a new route to an
    empty subset is reported). Both states are analyzed with the same live workloads and no
    telemetry, so the analyzers that need telemetry are skipped.

    They never block an apply, whatever their level: the apply's own validation has already
    refused what must be refused, so an error here is something the apply leaves doing
    nothing (a policy aimed at a rule the batch renamed), reported with the analyzer's level.
    """
    chosen = tuple(analyzers)
    live = tuple(workloads)
    before = analyze(AnalysisInput(tuple(current), {}, live), chosen)
    after = analyze(AnalysisInput(tuple(proposed), sources, live), chosen)
    return _introduced(before, after)


class WarningsMemo:
    """``apply_warnings`` that remembers the last state it analyzed. An apply's proposed state
    is the next apply's current one (the same resources, the batch's read back equal), so
    while the workloads stay the same an apply analyzes one state, not two."""

    def __init__(self, analyzers: Iterable[Analyzer] = ANALYZERS) -> None:
        self._analyzers = tuple(analyzers)
        self._last: tuple[dict[ResourceKey, Resource], tuple[Workload, ...],
                          AnalysisResult] | None = None

    def __call__(self, current: Iterable[Resource], proposed: Iterable[Resource],
                 workloads: Iterable[Workload], sources: Mapping[ResourceKey, str]
                 ) -> tuple[Message, ...]:
        now, then, live = tuple(current), tuple(proposed), tuple(workloads)
        before = self._recall(now, live) or analyze(AnalysisInput(now, {}, live),
                                                     self._analyzers)
        after = analyze(AnalysisInput(then, sources, live), self._analyzers)
        self._last = ({r.key: r for r in then}, live, after)
        return _introduced(before, after)

    def _recall(self, current: tuple[Resource, ...], live: tuple[Workload, ...]
                ) -> AnalysisResult | None:
        """The last analysis, if it was of ``current`` with these workloads."""
        if self._last is None:
            return None
        resources, workloads, result = self._last
        if len(workloads) != len(live) or any(
                a is not b and a != b for a, b in zip(workloads, live, strict=True)):
            return None
        if len(resources) != len(current):
            return None
        for resource in current:
            seen = resources.get(resource.key)
            if seen is not resource and seen != resource:
                return None
        return result


def _introduced(before: AnalysisResult, after: AnalysisResult) -> tuple[Message, ...]:
    known = {_identity(m) for m in before.messages}
    return tuple(m for m in after.messages if _identity(m) not in known)


def _identity(message: Message) -> tuple[str, str, str, str, str, str]:
    """What makes two messages the same finding; the source differs between the states."""
    return (message.code, message.kind, message.namespace, message.name, message.field,
            message.message)
