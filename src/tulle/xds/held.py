"""What a stream remembers of its proxy, kept small: a stream's memory is paid per connected
proxy, and at a thousand services each proxy holds thousands of names.

Two things make it small:
- ``Held``: what a proxy holds of one type is, almost always, its namespace's shared part (one
  map, shared by every proxy of the namespace) and a few resources of its own. A stream keeps the
  shared map by reference and only its differences from it. Moving to the next snapshot's shared
  map costs the names of that snapshot's diff.
- ``NamePool``: the names a proxy subscribes to arrive as new strings on every stream, and
  proxies of a namespace subscribe to the same sets. The pool interns the names and hands equal
  sets out as one object.
"""

from __future__ import annotations

import functools
import sys
import weakref
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from types import MappingProxyType

from tulle.xds.wire import EncodedResource, member_hash

ByName = Mapping[str, EncodedResource]
_NOTHING: ByName = MappingProxyType({})


def stub(type_url: str, name: str, version: str) -> EncodedResource:
    """A resource known only by its version: what a reconnecting proxy says it holds."""
    return EncodedResource(type_url, name, version, b"", b"", member_hash(name, version))


def _same(a: EncodedResource | None, b: EncodedResource | None) -> bool:
    if a is b:
        return True
    return a is not None and b is not None and a.version == b.version


class Held(Mapping[str, EncodedResource]):
    """The resources a proxy holds of one type: ``base`` (a shared map, by reference) with this
    proxy's differences from it (``None``: a name of ``base`` the proxy does not hold)."""

    __slots__ = ("_diff", "_settled", "base", "serial")

    def __init__(self) -> None:
        self.base: ByName = _NOTHING
        self.serial = -1  # the shared part ``base`` comes from; -1: none
        self._diff: dict[str, EncodedResource | None] = {}
        self._settled = 0  # len(_diff) when last measured against a whole map

    # -- reading ---------------------------------------------------------------------------

    def __getitem__(self, name: str) -> EncodedResource:
        found = self.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def get(self, name: str) -> EncodedResource | None:  # type: ignore[override]
        if name in self._diff:
            return self._diff[name]
        return self.base.get(name)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and name in self._diff:
            return self._diff[name] is not None
        return name in self.base

    def __iter__(self) -> Iterator[str]:
        diff = self._diff
        for name in self.base:
            if name not in diff:
                yield name
        for name, resource in diff.items():
            if resource is not None:
                yield name

    def __len__(self) -> int:
        size = len(self.base)
        for name, resource in self._diff.items():
            if resource is None:
                size -= 1
            elif name not in self.base:
                size += 1
        return size

    def snapshot(self) -> dict[str, EncodedResource]:
        """A plain copy, for comparing everything: merged at C speed, where ``get`` per name
        would cost a Python call each."""
        merged = {**self.base, **self._diff}
        for name, resource in self._diff.items():
            if resource is None:
                del merged[name]
        return merged  # type: ignore[return-value]  # the Nones were just taken out

    @property
    def differences(self) -> int:
        """How many names this proxy keeps apart from the shared map."""
        return len(self._diff)

    def loose(self) -> bool:
        """Whether the differences grew well past what the last whole measure left (a first
        push before any base, say): time to measure against the shared map again."""
        return len(self._diff) > 2 * self._settled + 64

    # -- changing --------------------------------------------------------------------------

    def put(self, name: str, resource: EncodedResource) -> None:
        if _same(self.base.get(name), resource):
            self._diff.pop(name, None)
        else:
            self._diff[name] = resource

    def pop(self, name: str) -> EncodedResource | None:
        held = self.get(name)
        if name in self.base:
            self._diff[name] = None
        else:
            self._diff.pop(name, None)
        return held

    def replace(self, resources: Mapping[str, EncodedResource]) -> None:
        """Hold exactly ``resources``."""
        self._diff = _differences(self.base, resources.items(), resources.keys())

    @property
    def empty(self) -> bool:
        """Holds nothing and was never measured against a shared map (a stream's start)."""
        return self.serial < 0 and not self._diff and not self.base

    def fill(self, base: ByName, serial: int, resources: Mapping[str, EncodedResource]
             ) -> None:
        """Hold exactly ``resources``, measured against the shared map ``base`` at once: a
        first push costs one pass at C speed, not one call per name and then a second pass
        to keep only the proxy's own differences."""
        self.base, self.serial = base, serial
        self._diff = _differences(base, resources.items(), resources.keys())
        self._settled = len(self._diff)

    def rebase(self, base: ByName, serial: int, names: Iterable[str] | None) -> None:
        """Keep what is held, measured against a new shared map. ``names``: the only names
        whose entry can differ between the old and the new map (the shared part's diff); None
        compares them all."""
        diff, old = self._diff, self.base
        if names is None:  # measured anew into a new dict: a dict never shrinks in place
            now = self.snapshot() if old else {n: r for n, r in diff.items() if r is not None}
            fresh = _differences(base, now.items(), now.keys())
            self._diff, self._settled = fresh, len(fresh)
        elif base is not old:
            for name in names:
                held = diff[name] if name in diff else old.get(name)
                if _same(held, base.get(name)):
                    diff.pop(name, None)
                else:
                    diff[name] = held
        self.base, self.serial = base, serial


def _differences(base: ByName, held: Iterable[tuple[str, EncodedResource]],
                 names: AbstractSet[str]) -> dict[str, EncodedResource | None]:
    """What holding ``held`` (whose names are ``names``) differs by from ``base``."""
    fresh: dict[str, EncodedResource | None] = {
        name: resource for name, resource in held
        if (b := base.get(name)) is not resource and (b is None or b.version != resource.version)}
    if len(names) < len(base) or fresh:
        fresh.update(dict.fromkeys(base.keys() - names))
    return fresh


class NamePool:
    """Interns subscribed names and shares equal sets between streams. The pool holds nothing
    alive: a set leaves it when no stream holds it."""

    def __init__(self) -> None:
        self._sets: weakref.WeakValueDictionary[int, frozenset[str]] = \
            weakref.WeakValueDictionary()

    def names(self, names: Iterable[str]) -> frozenset[str]:
        fresh = frozenset(map(sys.intern, names))
        if not fresh:
            return fresh
        key = hash(fresh)
        shared = self._sets.get(key)
        if shared is not None and shared == fresh:
            return shared
        if shared is None:  # on a collision the first set keeps the slot
            self._sets[key] = fresh
        return fresh


@functools.cache
def default_pool() -> NamePool:
    """The process's pool, made on first use."""
    return NamePool()
