"""What `tulle diagnose` reports: findings, their severity, and the scope a run looks at."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any

from tulle.model.meta import ResourceKey, ServiceRef


class Severity(IntEnum):
    """Higher is worse. ``CRITICAL``: requests fail now; ``ERROR``: some requests fail;
    ``WARNING``: nothing fails yet or the failures are deliberate (a limit doing its job)."""

    INFO = 0
    WARNING = 1
    ERROR = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        return cls[text.upper()]


def subject(kind: str, name: str, namespace: str = "") -> str:
    """How findings name a resource: ``service/books.default``, ``proxy/web-1.default``,
    ``trafficpolicy/books-limits.default``, ``mesh/controlplane`` (no namespace)."""
    return f"{kind.lower()}/{name}.{namespace}" if namespace else f"{kind.lower()}/{name}"


def service_subject(ref: ServiceRef) -> str:
    return subject("service", ref.name, ref.namespace)


def proxy_subject(node_id: str) -> str:
    return f"proxy/{node_id}"


def rule_subject(route: ResourceKey, index: int, name: str | None) -> str:
    """One rule of an HTTPRoute: ``httproute/books.default#canary``, by the rule's name, or its
    0-based index when unnamed (as telemetry's route series name it)."""
    from tulle.telemetry.schema import rule_key

    return f"{subject(route.kind, route.name, route.namespace)}#{rule_key(index, name)}"


def base_subject(text: str) -> str:
    """A subject without its part: ``httproute/books.default#canary`` ->
    ``httproute/books.default``."""
    return text.partition("#")[0]


@dataclass(frozen=True)
class Finding:
    """One thing wrong, with the proof and the fix.

    ``score`` (0-100) orders findings of one severity: how much traffic it hurts and how sure
    the rule is. ``symptom`` marks a consequence (5xx on an edge) that a cause finding may
    explain; ranking puts causes above the symptoms they share a resource with. ``related``
    names every other resource involved (callers, the policy that set a limit): scoping and
    cause-symptom linking read it.
    """

    code: str
    severity: Severity
    score: float
    subject: str
    cause: str  # one sentence
    evidence: tuple[str, ...]  # facts with numbers and resource names
    fix: str  # a command or a resource change
    related: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # the calling side (caller proxies), for --from
    symptom: bool = False
    explained_by: tuple[str, ...] = field(default=(), compare=False)  # set by ranking

    @property
    def resources(self) -> frozenset[str]:
        return frozenset((self.subject, *self.related, *self.sources))

    @property
    def docs(self) -> str:
        return f"docs/diagnostics/{self.code}.md"

    def explained(self, by: tuple[str, ...]) -> Finding:
        return replace(self, explained_by=by)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity.label, "score": self.score,
                "subject": self.subject, "cause": self.cause, "evidence": list(self.evidence),
                "fix": self.fix, "docs": self.docs, "related": list(self.related),
                "sources": list(self.sources), "symptom": self.symptom,
                "explainedBy": list(self.explained_by)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        return cls(code=str(data["code"]), severity=Severity.parse(str(data["severity"])),
                   score=float(data["score"]), subject=str(data["subject"]),
                   cause=str(data["cause"]), evidence=tuple(map(str, data["evidence"])),
                   fix=str(data["fix"]), related=tuple(map(str, data.get("related", ()))),
                   sources=tuple(map(str, data.get("sources", ()))),
                   symptom=bool(data.get("symptom", False)),
                   explained_by=tuple(map(str, data.get("explainedBy", ()))))


def _node_parts(name: str, namespace: str) -> tuple[str, str]:
    base, dot, ns = name.partition(".")
    return (base, ns) if dot else (name, namespace)


@dataclass(frozen=True)
class Scope:
    """What a run looks at: the whole mesh, one service, one namespace, or one edge.

    ``source``/``destination`` (``--from``/``--to``) name a workload or a service, as ``NAME``
    or ``NAME.NAMESPACE``.
    """

    namespace: str | None = None
    service: str | None = None
    source: str | None = None
    destination: str | None = None

    @property
    def whole_mesh(self) -> bool:
        return not (self.namespace or self.service or self.source or self.destination)

    def _names(self, value: str | None, context: Mapping[str, Iterable[str]]) -> set[str]:
        """The subjects ``value`` may mean: a service, or a proxy and its service."""
        if value is None:
            return set()
        name, namespace = _node_parts(value, self.namespace or "default")
        proxy = subject("proxy", name, namespace)
        names = {subject("service", name, namespace), proxy}
        return names | set(context.get(proxy, ()))

    def covers(self, finding: Finding, context: Mapping[str, Iterable[str]]) -> bool:
        """Whether ``finding`` belongs in this scope. ``context`` maps a subject to the
        services it belongs to: a proxy to its service (so that ``--to books`` also covers
        ``proxy/books-1.default``), a version subset to the services whose routes send it
        traffic, a route (or one of its rules) to its parents and backends, a policy to its
        targets. `diagnose books` so covers ``service/books-v2.default``."""
        def widen(names: Iterable[str]) -> set[str]:
            names = {base_subject(n) for n in names} | set(names)
            return names | {s for n in names for s in context.get(n, ())}

        everything = widen(finding.resources)
        if not any("." in r for r in everything):
            return True  # mesh-wide (the control plane, the CA): every scope shows it
        if self.namespace and not any(base_subject(r).endswith(f".{self.namespace}")
                                      for r in everything):
            return False
        if self.service and not everything & self._names(self.service, context):
            return False
        if self.source and not widen(finding.sources) & self._names(self.source, context):
            return False
        targets = widen(finding.resources - set(finding.sources))
        return not (self.destination and not targets & self._names(self.destination, context))

    def to_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "service": self.service, "from": self.source,
                "to": self.destination}


def resource_subject(key: ResourceKey) -> str:
    """``HTTPRoute default/books`` -> ``httproute/books.default``."""
    return subject(key.kind, key.name, key.namespace)


def source_subject(source: str) -> str:
    """A policy source as resolution names it ("TrafficPolicy default/books-pool") ->
    ``trafficpolicy/books-pool.default``."""
    kind, _, rest = source.partition(" ")
    namespace, _, name = rest.partition("/")
    return subject(kind, name, namespace) if name else subject(kind, namespace)
