"""What one proxy should have at one mesh version: the shared part of its namespace, held by
reference, and its own few resources. Immutable, and free of the generators, so that a worker
process that only serves streams holds them without importing what builds them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

from tulle.xds import types
from tulle.xds.wire import EncodedResource, sum_of, version_of_sum

ByName = Mapping[str, EncodedResource]
_NOTHING: ByName = MappingProxyType({})
_NO_NAMES: frozenset[str] = frozenset()


@dataclass(frozen=True, eq=False)
class SharedConfig:
    """What every proxy of a namespace gets at one snapshot (clusters, endpoints, the outbound
    scopes and route tables, the trust bundle), built once, and its difference from the namespace's
    previous shared part, computed once. Proxies hold it by reference."""

    serial: int  # unique per compiler: what a later shared part's ``base`` names
    resources: Mapping[str, ByName]  # by type
    sums: Mapping[str, int]  # by type: the running sum of set_version (wire.sum_of)
    base: int | None = None  # the serial of the shared part the diff below is from
    changed: Mapping[str, frozenset[str]] = field(default_factory=dict)  # added or new version
    removed: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, serial: int, by_type: Mapping[str, Iterable[EncodedResource]],
           previous: SharedConfig | None = None) -> SharedConfig:
        resources = {t: MappingProxyType({r.name: r for r in items})
                     for t, items in by_type.items()}
        sums = {t: sum_of(items.values()) for t, items in resources.items()}
        if previous is None:
            return cls(serial, MappingProxyType(resources), MappingProxyType(sums))
        changed, removed = {}, {}
        for type_url in resources.keys() | previous.resources.keys():
            old = previous.resources.get(type_url, _NOTHING)
            new = resources.get(type_url, _NOTHING)
            changed[type_url] = frozenset(name for name, r in new.items()
                                          if (o := old.get(name)) is None
                                          or (o is not r and o.version != r.version))
            removed[type_url] = frozenset(name for name in old if name not in new)
        return cls(serial, MappingProxyType(resources), MappingProxyType(sums),
                   previous.serial, MappingProxyType(changed), MappingProxyType(removed))

    def changed_names(self, type_url: str) -> frozenset[str]:
        """What differs from the ``base`` shared part, of one type: added, changed, removed."""
        return self.changed.get(type_url, _NO_NAMES) | self.removed.get(type_url, _NO_NAMES)


NO_SHARED = SharedConfig(0, MappingProxyType({}), MappingProxyType({}))


@dataclass(frozen=True, eq=False)
class ProxyConfig:
    """Everything one proxy should have, per xDS type, at one mesh version: the shared part of
    its namespace, by reference, and its own few resources (listeners, its inbound cluster,
    its certificate, its upstream routes). The two never hold the same name."""

    mesh_version: int
    shared: SharedConfig
    own: Mapping[str, ByName]

    @cached_property
    def versions(self) -> Mapping[str, str]:
        """The version of each type's whole set: the same definition as the streams' (the
        sum of its members' hashes), composed from the shared part's sum, computed once."""
        return MappingProxyType({
            t: version_of_sum(self.shared.sums.get(t, 0)
                              + sum_of(self.own.get(t, _NOTHING).values()))
            for t in self.type_urls})

    @property
    def type_urls(self) -> list[str]:
        return [t for t in types.PUSH_ORDER if t in self.own or t in self.shared.resources]

    @property
    def resources(self) -> Mapping[str, ByName]:
        return MappingProxyType({t: self.of_type(t) for t in self.type_urls})

    def of_type(self, type_url: str) -> ByName:
        """Every resource of one type. Merged anew when both parts hold some, and not kept: a
        config is held per proxy, and the push path looks names up one by one (``get``)."""
        shared = self.shared.resources.get(type_url, _NOTHING)
        own = self.own.get(type_url, _NOTHING)
        if not own:
            return shared
        if not shared:
            return own
        return MappingProxyType({**shared, **own})

    def get(self, type_url: str, name: str) -> EncodedResource | None:
        found = self.own.get(type_url, _NOTHING).get(name)
        if found is None:
            found = self.shared.resources.get(type_url, _NOTHING).get(name)
        return found

    def holds(self, type_url: str) -> bool:
        """Whether the config has any resource of this type."""
        return bool(self.own.get(type_url) or self.shared.resources.get(type_url))

    def own_names(self, type_url: str) -> Iterable[str]:
        return self.own.get(type_url, _NOTHING).keys()

    @classmethod
    def build(cls, mesh_version: int, by_type: Mapping[str, Iterable[EncodedResource]],
              shared: SharedConfig = NO_SHARED) -> ProxyConfig:
        own = {t: MappingProxyType({r.name: r for r in items}) for t, items in by_type.items()}
        return cls(mesh_version, shared, MappingProxyType(own))
