"""The one entry point both sides call: files alone (the CLI), or the live store with files
overlaid as if applied (the control plane)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tulle.analysis.analyzers import ANALYZERS
from tulle.analysis.engine import AnalysisInput, AnalysisResult, Analyzer, analyze
from tulle.analysis.traffic import Traffic
from tulle.errors import ConfigError
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
