"""Resource operations behind `tulle apply`, `get` and `delete`.

An apply is all or nothing: every document is parsed and every reference checked against the
store as it would be after the apply; only when nothing is wrong does one store transaction
write them all. A rejected apply leaves the store, and so every proxy, untouched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from tulle.analysis.engine import Message
from tulle.analysis.run import WarningsMemo
from tulle.errors import ConfigError, NotFoundError, Problem, TulleError, UsageError
from tulle.model.kinds import KINDS, KindInfo, closest, find_kind
from tulle.model.meta import ResourceKey
from tulle.model.parse import Document, parse_documents, resource_from_manifest
from tulle.model.references import known_services, reference_problems
from tulle.model.resource import Resource
from tulle.model.staging import staged
from tulle.model.workload import Workload
from tulle.store.base import ApplyResult, Store, StoredResource

log = logging.getLogger("tulle.controlplane")


class ResourceService:
    def __init__(self, store: Store, workloads: Callable[[], Iterable[Workload]],
                 on_change: Callable[[], None],
                 precheck: Callable[[list[Resource]], None] = lambda resources: None,
                 remote_io: bool = False) -> None:
        self._precheck = precheck
        self._warnings = WarningsMemo()
        self._store = store
        self._workloads = workloads
        self._on_change = on_change
        self._resources: dict[ResourceKey, Resource] = {}
        self._stored: dict[ResourceKey, StoredResource] = {}
        # A remote store (etcd) is written from a thread, one batch at a time.
        self._remote_io = remote_io
        self._writing = asyncio.Lock()

    def load(self) -> int:
        """Read every stored resource: at start, and when a shared store's watch lost track."""
        self._stored.clear()
        self._resources.clear()
        for stored in self._store.resources():
            self._stored[stored.key] = stored
            self._resources[stored.key] = resource_from_manifest(stored.manifest)
        return len(self._resources)

    def absorb(self, changes: Iterable[tuple[ResourceKey, StoredResource | None]]) -> bool:
        """Fold in writes another replica made to a shared store (None: deleted); whether
        anything differed from this view (this replica's own writes come back the same)."""
        differed = False
        for key, stored in changes:
            known = self._stored.get(key)
            if stored is None:
                differed |= known is not None
                self._stored.pop(key, None)
                self._resources.pop(key, None)
            elif known is None or known.revision != stored.revision:
                try:
                    resource = resource_from_manifest(stored.manifest)
                except TulleError as exc:  # validated where it was applied; never expected
                    log.error("a replica stored %s, which this one cannot read: %s", key,
                              exc.message)
                    continue
                self._stored[key], self._resources[key] = stored, resource
                differed = True
        return differed

    def resources(self) -> list[Resource]:
        return list(self._resources.values())

    def find(self, key: ResourceKey) -> Resource | None:
        """The resource stored under ``key``, as this replica knows it."""
        return self._resources.get(key)

    def apply(self, documents: Iterable[Document], *, dry_run: bool = False,
              internal: bool = False) -> tuple[list[ApplyResult], list[Message]]:
        """Validate and store a batch; returns the results and the warnings. ``internal``:
        written by the control plane itself (see model.staging)."""
        batch, warnings = self._prepare(list(documents), internal)
        if dry_run:
            return self._dry(batch), warnings
        results = self._store.apply([(r.key, r.manifest) for r in batch])
        if any(result.action != "unchanged" for result in results):
            self._reload(r.key for r in batch)
            self._on_change()
        return results, warnings

    async def apply_async(self, documents: Iterable[Document], *, dry_run: bool = False,
                          internal: bool = False) -> tuple[list[ApplyResult], list[Message]]:
        """:meth:`apply`, with the store's writes and reads in a thread when the store is
        remote (etcd): the event loop goes on serving proxies and agents while etcd answers
        slowly or not at all. One batch at a time, so each validates against the last."""
        if not self._remote_io:
            return self.apply(documents, dry_run=dry_run, internal=internal)
        async with self._writing:
            batch, warnings = self._prepare(list(documents), internal)
            if dry_run:
                return self._dry(batch), warnings
            results = await asyncio.to_thread(
                self._store.apply, [(r.key, r.manifest) for r in batch])
            if any(result.action != "unchanged" for result in results):
                keys = [r.key for r in batch]
                stored = await asyncio.to_thread(lambda: [self._store.resource(k) for k in keys])
                self._take(stored)
                self._on_change()
            return results, warnings

    def _prepare(self, documents: list[Document], internal: bool = False
                 ) -> tuple[tuple[Resource, ...], list[Message]]:
        # A DryRun HTTPRoute keeps the version in force (route_trials.py), a Rollout its status.
        batch = tuple(staged(r, self._resources.get(r.key), internal=internal)
                      for r in parse_documents(documents))
        sources = _sources(batch, documents)
        proposed = {**self._resources, **{r.key: r for r in batch}}
        return batch, self._validate(proposed, batch, sources)

    def _dry(self, batch: Iterable[Resource]) -> list[ApplyResult]:
        return [ApplyResult(r.key, _dry_action(self._stored.get(r.key), r), 0) for r in batch]

    def replace(self, manifests: Sequence[Mapping[str, Any]], deletes: Sequence[ResourceKey],
                *, source: str, dry_run: bool = False) -> tuple[list[ApplyResult], list[Message]]:
        """Store ``manifests`` and delete ``deletes`` as one validated transaction (rollback).
        With deletes, every remaining resource's references are checked again too."""
        batch, warnings = self._prepare_replace(manifests, deletes, source)
        if dry_run:
            return [], warnings
        results = self._store.replace([(r.key, r.manifest) for r in batch], deletes)
        self._replaced(deletes, [self._store.resource(r.key) for r in batch])
        return results, warnings

    async def replace_async(self, manifests: Sequence[Mapping[str, Any]],
                            deletes: Sequence[ResourceKey], *, source: str,
                            dry_run: bool = False) -> tuple[list[ApplyResult], list[Message]]:
        """:meth:`replace`, with the store's write and reads in a thread when the store is
        remote (as :meth:`apply_async`)."""
        if not self._remote_io:
            return self.replace(manifests, deletes, source=source, dry_run=dry_run)
        async with self._writing:
            batch, warnings = self._prepare_replace(manifests, deletes, source)
            if dry_run:
                return [], warnings
            results = await asyncio.to_thread(
                self._store.replace, [(r.key, r.manifest) for r in batch], deletes)
            stored = await asyncio.to_thread(lambda: [self._store.resource(r.key)
                                                      for r in batch])
            self._replaced(deletes, stored)
            return results, warnings

    def _prepare_replace(self, manifests: Sequence[Mapping[str, Any]],
                         deletes: Sequence[ResourceKey], source: str
                         ) -> tuple[tuple[Resource, ...], list[Message]]:
        documents = [Document(source=source, body=manifest) for manifest in manifests]
        batch = parse_documents(documents)
        proposed = {k: r for k, r in self._resources.items() if k not in set(deletes)}
        proposed.update({r.key: r for r in batch})
        checked = list(proposed.values()) if deletes else list(batch)
        return batch, self._validate(proposed, checked, dict.fromkeys(proposed, source))

    def _replaced(self, deletes: Sequence[ResourceKey],
                  stored: Iterable[StoredResource | None]) -> None:
        for key in deletes:
            self._resources.pop(key, None)
            self._stored.pop(key, None)
        self._take(stored)
        self._on_change()

    def _validate(self, proposed: Mapping[ResourceKey, Resource], checked: Iterable[Resource],
                  sources: Mapping[ResourceKey, str]) -> list[Message]:
        """Check the references of ``checked`` against the store as ``proposed`` would leave
        it, translate it for Envoy (the precheck), and return the analyzers' warnings the
        change introduces. Raises on the first error; changes nothing."""
        workloads = list(self._workloads())
        known = known_services(proposed.values(), (w.service_ref for w in workloads))
        problems = reference_problems(list(checked), known, sources, proposed)
        if problems:
            raise ConfigError(problems)
        warnings = list(self._warnings(self._resources.values(), proposed.values(), workloads,
                                       sources))
        self._precheck(list(proposed.values()))
        return warnings

    def delete(self, kind: str, namespace: str, name: str, *, force: bool = False
               ) -> ApplyResult:
        """Delete one resource. A delete that would leave other resources referring to
        something gone is refused, naming them, unless ``force``."""
        key = self._deletable(kind, namespace, name, force)
        return self._deleted(self._store.delete(key))

    async def delete_async(self, kind: str, namespace: str, name: str, *, force: bool = False
                           ) -> ApplyResult:
        """:meth:`delete`, with the store's write in a thread when the store is remote."""
        if not self._remote_io:
            return self.delete(kind, namespace, name, force=force)
        async with self._writing:
            key = self._deletable(kind, namespace, name, force)
            return self._deleted(await asyncio.to_thread(self._store.delete, key))

    def _deletable(self, kind: str, namespace: str, name: str, force: bool) -> ResourceKey:
        info = resolve_kind(kind)
        key = _key(info, namespace, name)
        if not force and key in self._resources:
            broken = self._broken_by_delete(key)
            if broken:
                raise ConfigError(broken, message=(
                    f"{key} is still referred to ({len(broken)} reference"
                    f"{'s' if len(broken) != 1 else ''}); nothing was deleted"))
        return key

    def _deleted(self, result: ApplyResult) -> ApplyResult:
        self._resources.pop(result.key, None)
        self._stored.pop(result.key, None)
        self._on_change()
        return result

    def _broken_by_delete(self, key: ResourceKey) -> list[Problem]:
        """The references that deleting ``key`` would break: problems the remaining
        resources would have that they do not have now."""
        workloads = [w.service_ref for w in self._workloads()]
        sources = dict.fromkeys(self._resources, "")

        def problems(resources: Mapping[ResourceKey, Resource]) -> list[Problem]:
            known = known_services(resources.values(), workloads)
            return reference_problems(list(resources.values()), known, sources, resources)

        # By place, not wording: a "did you mean" in a message may change with what is left.
        before = {(p.resource, p.field) for p in problems(self._resources)}
        after = problems({k: r for k, r in self._resources.items() if k != key})
        hint = ("change or delete what refers to it first, or delete with --force (then "
                "`tulle analyze` reports the references left dangling)")
        return [replace(p, hint=hint) for p in sorted(after, key=lambda p: (p.resource, p.field))
                if (p.resource, p.field) not in before]

    def get(self, kind: str, namespace: str, name: str) -> StoredResource:
        info = resolve_kind(kind)
        key = _key(info, namespace, name)
        stored = self._stored.get(key)
        if stored is None:
            raise NotFoundError(f"{key} not found",
                                hint=f"list them with `tulle get {info.plural} -n {namespace}`")
        return stored

    def list(self, kind: str, namespace: str | None) -> list[StoredResource]:
        info = resolve_kind(kind)
        return [s for k, s in sorted(self._stored.items())
                if k.kind == info.kind and (namespace is None or not info.namespaced
                                            or k.namespace == namespace)]

    def _reload(self, keys: Iterable[ResourceKey]) -> None:
        """Read back what a batch stored (only its keys: reading the whole store cost tens
        of ms per apply at 1,000 services)."""
        self._take([self._store.resource(key) for key in keys])

    def _take(self, stored: Iterable[StoredResource | None]) -> None:
        for found in stored:
            assert found is not None  # just stored by this replica
            self._stored[found.key] = found
            self._resources[found.key] = resource_from_manifest(found.manifest)


def _key(info: KindInfo, namespace: str, name: str) -> ResourceKey:
    """Mesh-wide kinds ignore the namespace a caller passes (the CLI always sends one)."""
    return ResourceKey(info.kind, namespace if info.namespaced else "", name)


def resolve_kind(name: str) -> KindInfo:
    info = find_kind(name)
    if info is None:
        names = [n for k in KINDS for n in k.names()]
        guess = closest(name.lower(), names)
        hint = f'did you mean "{guess}"? ' if guess else ""
        raise UsageError(f'unknown resource kind "{name}"',
                         hint=hint + "kinds: " + ", ".join(k.plural for k in KINDS)
                         + ", workloads")
    return info


def _sources(batch: tuple[Resource, ...], documents: Iterable[Document]
             ) -> Mapping[ResourceKey, str]:
    # parse_documents keeps document order and drops nothing when it succeeds.
    return {resource.key: document.source
            for resource, document in zip(batch, documents, strict=True)}


def _dry_action(stored: StoredResource | None, resource: Resource) -> Any:
    if stored is None:
        return "created"
    return "unchanged" if dict(stored.manifest) == dict(resource.manifest) else "configured"
