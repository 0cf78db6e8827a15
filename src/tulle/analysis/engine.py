"""The analysis engine: run the analyzers whose inputs are available, collect their messages.

An analyzer sees its inputs only through an :class:`AnalysisContext` limited to what it
declared (resource kinds, workloads, telemetry), so the declaration is the truth: the same
analyzer runs in the CLI on files and in the control plane on the live store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tulle.analysis.codes import Code, Level
from tulle.analysis.traffic import Traffic
from tulle.model.kinds import KindInfo
from tulle.model.meta import ResourceKey
from tulle.model.resource import Resource
from tulle.model.workload import Workload


class Need(StrEnum):
    WORKLOADS = "workloads"  # the registry's workloads: live and at apply time
    TELEMETRY = "telemetry"  # the telemetry windows: live only (not at apply time)


@dataclass(frozen=True)
class Analyzer:
    name: str
    description: str
    kinds: tuple[KindInfo, ...]  # the resource kinds it reads
    codes: tuple[Code, ...]  # the codes it may report
    run: Callable[[AnalysisContext], None]
    needs: frozenset[Need] = frozenset()  # skipped when one is missing
    uses: frozenset[Need] = frozenset()  # read when available, not required


@dataclass(frozen=True)
class AnalysisInput:
    resources: tuple[Resource, ...]
    sources: Mapping[ResourceKey, str] = field(default_factory=dict)  # key -> "file:line"
    workloads: tuple[Workload, ...] | None = None  # None: not available (files only)
    traffic: Traffic | None = None  # None: not available

    def available(self) -> frozenset[Need]:
        out = set()
        if self.workloads is not None:
            out.add(Need.WORKLOADS)
        if self.traffic is not None:
            out.add(Need.TELEMETRY)
        return frozenset(out)


@dataclass(frozen=True)
class Message:
    code: str
    level: Level
    title: str
    analyzer: str
    kind: str
    namespace: str
    name: str
    source: str  # "books.yaml:12" when the resource came from a file
    field: str
    message: str
    fix: str
    docs: str

    @property
    def resource(self) -> str:
        return str(ResourceKey(self.kind, self.namespace, self.name))

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "level": str(self.level), "title": self.title,
                "analyzer": self.analyzer,
                "resource": {"kind": self.kind, "namespace": self.namespace,
                             "name": self.name},
                "source": self.source, "field": self.field, "message": self.message,
                "fix": self.fix, "docs": self.docs}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        resource = data["resource"]
        return cls(code=data["code"], level=Level.parse(data["level"]), title=data["title"],
                   analyzer=data["analyzer"], kind=resource["kind"],
                   namespace=resource["namespace"], name=resource["name"],
                   source=data.get("source", ""), field=data.get("field", ""),
                   message=data["message"], fix=data["fix"], docs=data["docs"])


@dataclass(frozen=True)
class Skipped:
    analyzer: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"analyzer": self.analyzer, "reason": self.reason}


@dataclass(frozen=True)
class AnalysisResult:
    messages: tuple[Message, ...]
    ran: tuple[str, ...]
    skipped: tuple[Skipped, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"messages": [m.to_dict() for m in self.messages], "ran": list(self.ran),
                "skipped": [s.to_dict() for s in self.skipped]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnalysisResult:
        return cls(tuple(Message.from_dict(m) for m in data.get("messages", ())),
                   tuple(data.get("ran", ())),
                   tuple(Skipped(s["analyzer"], s["reason"]) for s in data.get("skipped", ())))


class UndeclaredInput(Exception):
    """An analyzer read something it did not declare: a bug in the analyzer."""


class AnalysisContext:
    """What one analyzer may read, and where it reports."""

    def __init__(self, analyzer: Analyzer, given: AnalysisInput) -> None:
        self._analyzer = analyzer
        self._given = given
        self._kinds = {info.kind for info in analyzer.kinds}
        self.messages: list[Message] = []
        self.read: set[str] = set()  # what it actually read: kinds and needs (for meta-tests)

    def resources(self, *kinds: KindInfo) -> list[Resource]:
        """The resources of these kinds, in key order."""
        for info in kinds:
            self._check_kind(info.kind)
        wanted = {info.kind for info in kinds}
        self.read.update(wanted)
        return sorted((r for r in self._given.resources if r.kind in wanted),
                      key=lambda r: r.key)

    def workloads(self) -> tuple[Workload, ...] | None:
        """The registry's workloads, or None where there are none to read (files only)."""
        self._check_need(Need.WORKLOADS)
        return self._given.workloads

    def traffic(self) -> Traffic:
        self._check_need(Need.TELEMETRY)
        if self._given.traffic is None:
            raise UndeclaredInput(f"{self._analyzer.name} ran without telemetry")
        return self._given.traffic

    def source(self, key: ResourceKey) -> str:
        return self._given.sources.get(key, "")

    def report(self, code: Code, key: ResourceKey, field: str = "", **values: Any) -> None:
        if code not in self._analyzer.codes:
            raise UndeclaredInput(f"{self._analyzer.name} reported {code.code}, which it "
                                  "does not declare")
        self.messages.append(Message(
            code=code.code, level=code.level, title=code.title, analyzer=self._analyzer.name,
            kind=key.kind, namespace=key.namespace, name=key.name, source=self.source(key),
            field=field, message=code.message.format(**values), fix=code.fix.format(**values),
            docs=code.docs))

    def _may(self, need: Need) -> bool:
        return need in self._analyzer.needs or need in self._analyzer.uses

    def _check_need(self, need: Need) -> None:
        if not self._may(need):
            raise UndeclaredInput(f"{self._analyzer.name} reads {need} without declaring it")
        self.read.add(str(need))

    def _check_kind(self, kind: str) -> None:
        if kind not in self._kinds:
            raise UndeclaredInput(f"{self._analyzer.name} reads {kind} without declaring it")


_WHY_MISSING = {
    Need.WORKLOADS: "needs the registry's workloads: analyze the live mesh (--live)",
    Need.TELEMETRY: "needs telemetry: analyze the live mesh (--live)",
}


def analyze(given: AnalysisInput, analyzers: Iterable[Analyzer]) -> AnalysisResult:
    available = given.available()
    messages: list[Message] = []
    ran: list[str] = []
    skipped: list[Skipped] = []
    for analyzer in analyzers:
        missing = sorted(analyzer.needs - available)
        if missing:
            skipped.append(Skipped(analyzer.name, "; ".join(_WHY_MISSING[n] for n in missing)))
            continue
        context = AnalysisContext(analyzer, given)
        analyzer.run(context)
        messages.extend(context.messages)
        ran.append(analyzer.name)
    ordered = sorted(dict.fromkeys(messages), key=lambda m: (
        -m.level, m.code, m.namespace, m.kind, m.name, m.field, m.message))
    return AnalysisResult(tuple(ordered), tuple(ran), tuple(skipped))
