"""Configs on their way to worker processes: encoded once on the control plane, rebuilt as the
same immutable ``ProxyConfig`` in each worker.

A namespace's shared part travels once per snapshot as a *parcel*: its diff from the shared
part the worker already holds (the one it was diffed against), else whole. A parcel is pickled
once and the same bytes go to every worker that needs it; its resources are the bytes the
compiler encoded, never serialized again. A proxy's own few resources travel only when they
changed since the last ones sent to its worker.

The control plane keeps a ``Ledger`` per worker (what it holds); the worker keeps a ``Table``
(the configs themselves). Both follow the same messages, so they agree on what is held.
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tulle.xds.config import ByName, ProxyConfig, SharedConfig
from tulle.xds.wire import EncodedResource, same_versions

# An EncodedResource's fields: what pickles smallest and fastest.
Flat = tuple[str, str, str, bytes, bytes, int]
_NOTHING: ByName = MappingProxyType({})


def flat(resource: EncodedResource) -> Flat:
    return (resource.type_url, resource.name, resource.version, resource.sotw_entry,
            resource.delta_entry, resource.member_hash)


@dataclass(frozen=True)
class SharedParcel:
    """A shared part, whole (``base`` None) or as its diff from shared part ``base``."""

    serial: int
    base: int | None
    resources: Mapping[str, tuple[Flat, ...]]  # whole: every resource; a diff: the changed
    removed: Mapping[str, tuple[str, ...]]  # a diff: the names that left

    @classmethod
    def whole(cls, shared: SharedConfig) -> SharedParcel:
        return cls(shared.serial, None,
                   {t: tuple(flat(r) for r in by_name.values())
                    for t, by_name in shared.resources.items()}, {})

    @classmethod
    def diff(cls, shared: SharedConfig) -> SharedParcel:
        assert shared.base is not None
        return cls(shared.serial, shared.base,
                   {t: tuple(flat(shared.resources[t][n]) for n in names)
                    for t, names in shared.changed.items() if names},
                   {t: tuple(names) for t, names in shared.removed.items() if names})


@dataclass(frozen=True)
class ConfigEntry:
    """One proxy's config: its shared part by serial, and its own resources (None: the same
    as the last ones sent for this node)."""

    node_id: str
    seq: int  # the control plane's order: a worker never replaces a config with an older one
    mesh_version: int
    serial: int
    own: Mapping[str, tuple[Flat, ...]] | None


@dataclass(frozen=True)
class Shipment:
    """What one push sends one worker: parcels (pickled), configs, and the shared parts the
    worker keeps afterwards (every other one it drops)."""

    parcels: tuple[bytes, ...]
    entries: tuple[ConfigEntry, ...]
    keep: frozenset[int]


class Parcels:
    """Pickled parcels of one push, shared by every worker's shipment."""

    def __init__(self) -> None:
        self._made: dict[tuple[int, bool], bytes] = {}

    def of(self, shared: SharedConfig, as_diff: bool) -> bytes:
        key = (shared.serial, as_diff)
        made = self._made.get(key)
        if made is None:
            parcel = SharedParcel.diff(shared) if as_diff else SharedParcel.whole(shared)
            made = self._made[key] = pickle.dumps(parcel, protocol=pickle.HIGHEST_PROTOCOL)
        return made


@dataclass
class Ledger:
    """What one worker holds, as the control plane knows it."""

    shared: set[int] = field(default_factory=set)  # serials
    own: dict[str, Mapping[str, ByName]] = field(default_factory=dict)  # by node: last sent
    serial_of: dict[str, int] = field(default_factory=dict)  # by node
    users: Counter[int] = field(default_factory=Counter)  # serial -> nodes whose config uses it
    seq: int = 0

    def forget(self, node_id: str) -> None:
        self.own.pop(node_id, None)
        self._use(node_id, None)

    def _use(self, node_id: str, serial: int | None) -> None:
        old = self.serial_of.pop(node_id, None)
        if old is not None:
            self.users[old] -= 1
            if not self.users[old]:
                del self.users[old]
        if serial is not None:
            self.serial_of[node_id] = serial
            self.users[serial] += 1

    def ship(self, configs: Iterable[tuple[str, ProxyConfig]], parcels: Parcels) -> Shipment:
        """The shipment that brings the worker to ``configs`` (for some of its nodes)."""
        blobs: list[bytes] = []
        entries: list[ConfigEntry] = []
        shipped: set[int] = set()
        for node_id, config in configs:
            shared = config.shared
            if shared.serial not in self.shared and shared.serial not in shipped:
                as_diff = shared.base is not None and shared.base in self.shared | shipped
                blobs.append(parcels.of(shared, as_diff))
                shipped.add(shared.serial)
            last = self.own.get(node_id)
            same = last is not None and _same_own(last, config.own)
            self.seq += 1
            entries.append(ConfigEntry(
                node_id, self.seq, config.mesh_version, shared.serial,
                None if same else {t: tuple(flat(r) for r in by_name.values())
                                   for t, by_name in config.own.items()}))
            self.own[node_id] = config.own
            self._use(node_id, shared.serial)
        keep = frozenset(self.users)
        self.shared = set(keep)
        return Shipment(tuple(blobs), tuple(entries), keep)


def _same_own(a: Mapping[str, ByName], b: Mapping[str, ByName]) -> bool:
    return a is b or (a.keys() == b.keys()
                      and all(same_versions(of_a, b[t]) for t, of_a in a.items()))


class Table:
    """A worker's configs, rebuilt from shipments."""

    def __init__(self) -> None:
        self.shared: dict[int, SharedConfig] = {}
        self.configs: dict[str, tuple[int, ProxyConfig]] = {}  # by node: (seq, config)
        self._own: dict[str, Mapping[str, ByName]] = {}

    def apply(self, shipment: Shipment) -> list[str]:
        """Take a shipment in; the nodes whose config it changed."""
        for blob in shipment.parcels:
            parcel: SharedParcel = pickle.loads(blob)  # from our own control plane
            self.shared[parcel.serial] = self._rebuilt(parcel)
        changed = []
        for entry in shipment.entries:
            held = self.configs.get(entry.node_id)
            if held is not None and held[0] > entry.seq:
                continue  # (one channel keeps them in order: a safeguard)
            own = (self._own.get(entry.node_id, MappingProxyType({})) if entry.own is None
                   else MappingProxyType({t: _by_name(flats) for t, flats in entry.own.items()}))
            self._own[entry.node_id] = own
            self.configs[entry.node_id] = (entry.seq, ProxyConfig(
                entry.mesh_version, self.shared[entry.serial], own))
            changed.append(entry.node_id)
        for serial in [s for s in self.shared if s not in shipment.keep]:
            del self.shared[serial]
        return changed

    def config(self, node_id: str) -> ProxyConfig | None:
        held = self.configs.get(node_id)
        return None if held is None else held[1]

    def forget(self, node_id: str) -> None:
        self.configs.pop(node_id, None)
        self._own.pop(node_id, None)

    def _rebuilt(self, parcel: SharedParcel) -> SharedConfig:
        if parcel.base is None:
            return SharedConfig.of(parcel.serial, {t: [EncodedResource(*f) for f in flats]
                                                   for t, flats in parcel.resources.items()})
        base = self.shared[parcel.base]
        by_type: dict[str, dict[str, EncodedResource]] = {}
        for type_url in base.resources.keys() | parcel.resources.keys():
            resources = dict(base.resources.get(type_url, _NOTHING))
            for name in parcel.removed.get(type_url, ()):
                resources.pop(name, None)
            for f in parcel.resources.get(type_url, ()):
                resources[f[1]] = EncodedResource(*f)
            by_type[type_url] = resources
        return SharedConfig.of(parcel.serial, {t: r.values() for t, r in by_type.items()},
                               base)


def _by_name(flats: Iterable[Flat]) -> ByName:
    return MappingProxyType({f[1]: EncodedResource(*f) for f in flats})
