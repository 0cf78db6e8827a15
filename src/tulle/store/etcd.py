"""The store, on etcd: what control-plane replicas on several hosts share.

The same contract as the SQLite store (tulle.store.base.Store): a batch is applied whole or
not at all, revisions number every change, and the history keeps each change's before and
after. etcd is the engine; tulle never writes consensus of its own.

Keys, under a prefix (``/tulle/`` unless told otherwise)::

    meta/revision                                     {"revision": N}, the last tulle revision
    resources/KIND/NAMESPACE/NAME                     manifest, revision, created/updated at
    history/REVISION/INDEX                            one change (the log, in order)
    history-key/KIND/NAMESPACE/NAME/REVISION/INDEX    the same change, found by resource
    workloads/REPLICA/NODE_ID                         a workload registered with REPLICA
    ca/NAME                                           the CA's files, encrypted (cavault)
    replicas/REPLICA                                  where a live replica listens
    elections/NAME                                    the replica that runs singleton work
                                                      NAME (under its lease)

A write reads what it changes, then commits in one etcd transaction that holds only if
``meta/revision`` and every key it read are unchanged. Two replicas writing at once: one
commits, the other reads again and retries after a random pause (so that writers who
collided do not collide again in step), so revisions stay dense and ordered.
"""

from __future__ import annotations

import json
import random
import ssl
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tulle.errors import NotFoundError, StateError
from tulle.model.meta import ResourceKey
from tulle.store.base import Action, ApplyResult, Change, StoredResource
from tulle.store.etcdclient import WATCH_IDLE_S, Delete, EtcdClient, KeyValue, Put

TRIM_BATCH = 60  # history entries per transaction (two deletes each; etcd allows 128 ops)
MAX_ATTEMPTS = 20  # optimistic retries against concurrent writers before giving up
RETRY_PAUSE_S = (0.005, 0.2)  # the first retry's longest pause, and any retry's
_WIDTH = 20  # revisions are zero-padded so that key order is revision order


def _too_big(error: StateError, changes: int, operations: int) -> StateError:
    """etcd's limits on one transaction, said in the user's terms: one apply is one
    transaction, all or nothing."""
    if "too many operations" in error.message:
        return StateError(
            f"this change touches {changes} resources, {operations} etcd operations in one "
            "transaction (3 per resource): more than etcd allows (--max-txn-ops, 128 by "
            "default); nothing was changed",
            hint="apply the resources in smaller files (up to 40 at once with etcd's "
                 "defaults), or start every etcd member with a higher --max-txn-ops, "
                 "e.g. --max-txn-ops 4096")
    if "request is too large" in error.message:
        return StateError(
            f"this change touches {changes} resources, more bytes than etcd takes in one "
            "request (--max-request-bytes, 1.5 MiB by default); nothing was changed",
            hint="apply the resources in smaller files, or start every etcd member with a "
                 "higher --max-request-bytes")
    return error


def _dump(manifest: Mapping[str, Any]) -> str:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"))


DEPARTED_MARK_S = 120  # how long a replica's clean stop is remembered in etcd

class EtcdStore:
    def __init__(self, client: EtcdClient, prefix: str = "/tulle/", replica: str = "r") -> None:
        self._etcd = client
        self._prefix = prefix if prefix.endswith("/") else prefix + "/"
        # Registrations belong to the replica whose sessions hold them: each replica keeps
        # (and expires) its own, and never another's. They live as long as the replica's
        # lease (when one is held): a replica that dies takes its registrations with it.
        self._replica = replica
        self._lease = 0
        self._lease_until = 0.0  # time.monotonic() when the lease lapses, as last renewed

    @property
    def replica(self) -> str:
        return self._replica

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self._etcd.endpoints

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        return self._etcd.tls_context

    # -- keys ------------------------------------------------------------------------------

    def _key(self, *parts: str) -> bytes:
        return (self._prefix + "/".join(parts)).encode()

    def _resource_key(self, key: ResourceKey) -> bytes:
        return self._key("resources", key.kind, key.namespace, key.name)

    def _history_keys(self, revision: int, index: int, key: ResourceKey) -> tuple[bytes, bytes]:
        number, position = f"{revision:0{_WIDTH}d}", f"{index:04d}"
        return (self._key("history", number, position),
                self._key("history-key", key.kind, key.namespace, key.name, number, position))

    # -- reads -----------------------------------------------------------------------------

    def _revision(self) -> tuple[int, int]:
        """(the last tulle revision, the etcd modification revision of its key)."""
        found = self._etcd.get(self._key("meta", "revision"))
        if found is None:
            return 0, 0
        return int(json.loads(found.value)["revision"]), found.mod_revision

    def revision(self) -> int:
        return self._revision()[0]

    def resources(self) -> list[StoredResource]:
        found = [self._stored(kv) for kv in self._etcd.prefix(self._key("resources") + b"/")]
        return sorted(found, key=lambda r: (r.key.kind, r.key.namespace, r.key.name))

    def resource(self, key: ResourceKey) -> StoredResource | None:
        found = self._etcd.get(self._resource_key(key))
        return self._stored(found) if found is not None else None

    def _resource_of(self, etcd_key: bytes) -> ResourceKey:
        kind, namespace, name = etcd_key.decode()[len(self._prefix):].split("/")[1:4]
        return ResourceKey(kind, namespace, name)

    def _stored(self, kv: KeyValue) -> StoredResource:
        record = json.loads(kv.value)
        return StoredResource(self._resource_of(kv.key), json.loads(record["manifest"]),
                              int(record["revision"]), float(record["created_at"]),
                              float(record["updated_at"]))

    @staticmethod
    def _change(kv: KeyValue) -> Change:
        record = json.loads(kv.value)
        before, after = record["before"], record["after"]
        return Change(int(record["revision"]), float(record["at"]),
                      ResourceKey(record["kind"], record["namespace"], record["name"]),
                      record["action"], json.loads(before) if before else None,
                      json.loads(after) if after else None)

    def history(self, key: ResourceKey | None = None, limit: int = 100) -> list[Change]:
        prefix = (self._key("history") if key is None else
                  self._key("history-key", key.kind, key.namespace, key.name)) + b"/"
        return [self._change(kv) for kv in self._etcd.prefix(prefix, limit=limit,
                                                             descending=True)]

    def changes_after(self, revision: int) -> list[Change]:
        start = self._key("history", f"{revision + 1:0{_WIDTH}d}")
        end = self._key("history") + b"0"  # "/" + 1: just after every history key
        return [self._change(kv) for kv in self._etcd.range(start, end)]

    def etcd_revision(self) -> int:
        """etcd's own revision now: where a watch that misses nothing after a read starts."""
        return self._etcd.header_revision()

    def resource_changes(self, after: int, *, idle_s: float = WATCH_IDLE_S
                         ) -> Iterator[tuple[int, list[tuple[ResourceKey,
                                                             StoredResource | None]]]]:
        """Resources written after etcd revision ``after`` (by any replica), as (etcd
        revision, [(key, the stored resource, or None when deleted)]), until the watch
        stream ends; WatchCompacted when ``after`` is too old."""
        for revision, events in self._etcd.watch(self._key("resources") + b"/", after + 1,
                                                 idle_s=idle_s):
            yield revision, [(self._resource_of(e.kv.key), None) if e.deleted
                             else (self._resource_of(e.kv.key), self._stored(e.kv))
                             for e in events]

    def history_entries(self) -> int:
        return self._etcd.count(self._key("history") + b"/")

    def oldest_revision(self) -> int:
        first = self._etcd.prefix(self._key("history") + b"/", limit=1)
        return self._change(first[0]).revision if first else 0

    # -- writes ----------------------------------------------------------------------------

    def apply(self, manifests: Sequence[tuple[ResourceKey, Mapping[str, Any]]]
              ) -> list[ApplyResult]:
        return self.replace(manifests, ())

    def delete(self, key: ResourceKey) -> ApplyResult:
        return self._write((), (key,), hint=f"list what exists with `tulle get "
                                            f"{key.kind.lower()} --namespace {key.namespace}`")[0]

    def replace(self, manifests: Sequence[tuple[ResourceKey, Mapping[str, Any]]],
                deletes: Sequence[ResourceKey]) -> list[ApplyResult]:
        return self._write(manifests, deletes, hint="nothing was changed")

    def _write(self, manifests: Sequence[tuple[ResourceKey, Mapping[str, Any]]],
               deletes: Sequence[ResourceKey], *, hint: str) -> list[ApplyResult]:
        for tried in range(MAX_ATTEMPTS):
            attempt = self._attempt(manifests, deletes, hint)
            if attempt is not None:
                return attempt
            first, longest = RETRY_PAUSE_S
            time.sleep(random.uniform(0, min(longest, first * 2 ** tried)))
        raise StateError(f"the store kept changing under this write ({MAX_ATTEMPTS} attempts)",
                         hint="another control-plane replica is writing heavily; retry")

    def _attempt(self, manifests: Sequence[tuple[ResourceKey, Mapping[str, Any]]],
                 deletes: Sequence[ResourceKey], hint: str) -> list[ApplyResult] | None:
        """One optimistic try: the results, or None when another writer got in first."""
        current, meta_mod = self._revision()
        revision, now = current + 1, time.time()
        read: dict[bytes, KeyValue | None] = {}
        unchanged: list[tuple[bytes, int]] = [(self._key("meta", "revision"), meta_mod)]
        writes: list[Put | Delete] = []
        results: list[ApplyResult] = []
        changes: list[tuple[ResourceKey, Action, str | None, str | None]] = []

        def stored(key: ResourceKey) -> KeyValue | None:
            etcd_key = self._resource_key(key)
            if etcd_key not in read:
                read[etcd_key] = self._etcd.get(etcd_key)
                found = read[etcd_key]
                unchanged.append((etcd_key, found.mod_revision if found else 0))
            return read[etcd_key]

        for key in deletes:
            found = stored(key)
            if found is None:
                raise NotFoundError(f"{key} not found", hint=hint)
            writes.append(Delete(self._resource_key(key)))
            changes.append((key, "deleted", json.loads(found.value)["manifest"], None))
            results.append(ApplyResult(key, "deleted", revision))
        for key, manifest in manifests:
            found = stored(key)
            record = json.loads(found.value) if found is not None else None
            after = _dump(manifest)
            if record is not None and record["manifest"] == after:
                results.append(ApplyResult(key, "unchanged", int(record["revision"])))
                continue
            action: Action = "configured" if record is not None else "created"
            writes.append(Put(self._resource_key(key), json.dumps({
                "manifest": after, "revision": revision, "updated_at": now,
                "created_at": record["created_at"] if record is not None else now}).encode()))
            changes.append((key, action, record["manifest"] if record else None, after))
            results.append(ApplyResult(key, action, revision))
        if not changes:
            return results
        for index, (key, action, before, after_text) in enumerate(changes):
            entry = json.dumps({"revision": revision, "at": now, "kind": key.kind,
                                "namespace": key.namespace, "name": key.name,
                                "action": action, "before": before,
                                "after": after_text}).encode()
            writes += [Put(k, entry) for k in self._history_keys(revision, index, key)]
        writes.append(Put(self._key("meta", "revision"),
                          json.dumps({"revision": revision}).encode()))
        try:
            return results if self._etcd.transaction(unchanged, writes) else None
        except StateError as exc:
            raise _too_big(exc, len(changes), len(writes)) from exc

    # -- opaque files (the CA's, encrypted by their owner) -----------------------------------

    def read_file(self, area: str, name: str) -> bytes | None:
        found = self._etcd.get(self._key(area, name))
        return found.value if found is not None else None

    def write_file(self, area: str, name: str, data: bytes) -> None:
        self._etcd.transaction((), [Put(self._key(area, name), data)])

    def file_names(self, area: str) -> list[str]:
        start = self._key(area, "")
        return [kv.key[len(start):].decode() for kv in self._etcd.prefix(start)]

    def file_changes(self, area: str, after: int, *, idle_s: float = WATCH_IDLE_S
                     ) -> Iterator[tuple[int, list[str]]]:
        """Names of ``area``'s files written or deleted after etcd revision ``after`` (by any
        replica), as (etcd revision, [name])."""
        start = self._key(area, "")
        for revision, events in self._etcd.watch(start, after + 1, idle_s=idle_s):
            yield revision, [e.kv.key[len(start):].decode() for e in events]

    def read_file_revision(self, area: str, name: str) -> tuple[bytes | None, int]:
        """The file's bytes and its etcd modification revision (None, 0: absent)."""
        found = self._etcd.get(self._key(area, name))
        return (found.value, found.mod_revision) if found is not None else (None, 0)

    def swap_file(self, area: str, name: str, revision: int, data: bytes) -> bool:
        """Write only if the file's modification revision is still ``revision``."""
        key = self._key(area, name)
        return self._etcd.transaction(((key, revision),), [Put(key, data)])

    def create_file(self, area: str, name: str, data: bytes) -> bool:
        """Write only if absent; whether it was written."""
        key = self._key(area, name)
        return self._etcd.transaction(((key, 0),), [Put(key, data)])

    # -- workloads -------------------------------------------------------------------------

    def hold_lease(self, ttl_s: int) -> None:
        """From now on, this replica's registrations live as long as a lease it keeps alive
        (keep_lease); a new one replaces any held before."""
        asked = time.monotonic()
        self._lease = self._etcd.grant(ttl_s)
        self._lease_until = asked + ttl_s

    def keep_lease(self, *, timeout_s: float | None = None, within_s: float | None = None
                   ) -> bool:
        """Renew the lease; False when it had expired (re-hold it and save again).
        ``timeout_s``, ``within_s``: the waits for one etcd member and for all."""
        if not self._lease:
            return True
        asked = time.monotonic()
        # No answer (StateError): the lease is good only until its last renewal said.
        ttl = self._etcd.keep_alive(self._lease, timeout_s=timeout_s, within_s=within_s)
        # Counted from when we asked, not when etcd answered: never later than etcd's.
        self._lease_until = asked + ttl if ttl > 0 else 0.0
        return ttl > 0

    def lease_left(self) -> float:
        """How long this replica's lease lives for certain, by its last renewal (0: none
        held, or lapsed). Singleton work stops before it runs out."""
        return max(0.0, self._lease_until - time.monotonic()) if self._lease else 0.0

    # -- elections (singleton work) --------------------------------------------------------

    def campaign(self, name: str) -> int:
        """Hold election ``name`` under this replica's lease if nobody does. The etcd
        revision of the election's key while this replica holds it (the fence its writes
        compare against), 0 while another replica does."""
        key = self._key("elections", name)
        if self._lease:
            self._etcd.transaction(((key, 0),), [Put(key, self._replica.encode(),
                                                     self._lease)])
        found = self._etcd.get(key)
        return found.mod_revision if found and found.value == self._replica.encode() else 0

    def leader(self, name: str) -> str | None:
        """The replica that holds election ``name``, if any."""
        found = self._etcd.get(self._key("elections", name))
        return found.value.decode() if found is not None else None

    def resign(self, name: str, fence: int) -> None:
        key = self._key("elections", name)
        self._etcd.transaction(((key, fence),), [Delete(key)])

    # -- compaction (singleton work) -------------------------------------------------------

    def trim_history(self, keep: int, fence: tuple[str, int] | None = None) -> int:
        """Drop the history of every revision but the newest ``keep``: both keys of each
        entry, oldest first, a batch per transaction. With ``fence`` (an election and the
        revision this replica won it at), each batch is written only while it still holds
        that election. Returns how many entries went."""
        cutoff = self.revision() - max(1, keep)
        if cutoff < 1:
            return 0
        end = self._key("history", f"{cutoff + 1:0{_WIDTH}d}")
        removed = 0
        unchanged = () if fence is None else ((self._key("elections", fence[0]), fence[1]),)
        while batch := self._etcd.range(self._key("history") + b"/", end, limit=TRIM_BATCH):
            writes: list[Put | Delete] = []
            for kv in batch:
                key = self._change(kv).key
                number, position = kv.key.decode().rsplit("/", 2)[1:]
                writes += [Delete(kv.key), Delete(self._key(
                    "history-key", key.kind, key.namespace, key.name, number, position))]
            if not self._etcd.transaction(unchanged, writes):
                raise StateError(f"this replica no longer holds the election {fence[0]}"
                                 if fence else "the history changed while it was trimmed",
                                 hint="another replica runs the compaction now")
            removed += len(batch)
        return removed

    def compact_etcd(self, revision: int) -> bool:
        """Compact etcd's own history up to ``revision`` (see EtcdClient.compact)."""
        return self._etcd.compact(revision)

    def announce(self, endpoint: Mapping[str, Any]) -> None:
        """Say where this replica listens, for as long as its lease lives."""
        self._etcd.transaction((), [Put(self._key("replicas", self._replica),
                                        json.dumps(dict(endpoint)).encode(), self._lease)])

    def withdraw(self) -> None:
        """This replica stops: no agent should come to it any more. A mark that it left on
        purpose stays a while, so the others do not take it for lost."""
        mark = self._etcd.grant(DEPARTED_MARK_S)
        self._etcd.transaction((), [Delete(self._key("replicas", self._replica)),
                                    Put(self._key("departed", self._replica), b"{}", mark)])

    def departed(self) -> set[str]:
        """The replicas that withdrew within the last ``DEPARTED_MARK_S``."""
        return {kv.key.decode().rsplit("/", 1)[1]
                for kv in self._etcd.prefix(self._key("departed") + b"/")}

    def replicas(self) -> dict[str, Mapping[str, Any]]:
        """Where every live replica listens (its own announcement included)."""
        return {kv.key.decode().rsplit("/", 1)[1]: json.loads(kv.value)
                for kv in self._etcd.prefix(self._key("replicas") + b"/")}

    def other_workloads(self) -> list[tuple[str, Mapping[str, Any]]]:
        """(replica, record) for the registrations of every other replica."""
        out = []
        for kv in self._etcd.prefix(self._key("workloads") + b"/"):
            replica = self._workload_of(kv.key)[0]
            if replica != self._replica:
                out.append((replica, json.loads(kv.value)))
        return out

    def _workload_of(self, etcd_key: bytes) -> tuple[str, str]:
        replica, node = etcd_key.decode()[len(self._prefix):].split("/")[1:3]
        return replica, node

    def workload_changes(self, after: int, *, idle_s: float = WATCH_IDLE_S
                         ) -> Iterator[tuple[int, list[tuple[str, str,
                                                             Mapping[str, Any] | None]]]]:
        """Registrations written after etcd revision ``after`` by other replicas, as (etcd
        revision, [(replica, node id, record, or None when gone)])."""
        for revision, events in self._etcd.watch(self._key("workloads") + b"/", after + 1,
                                                 idle_s=idle_s):
            changes = []
            for event in events:
                replica, node = self._workload_of(event.kv.key)
                if replica != self._replica:
                    changes.append((replica, node,
                                    None if event.deleted else json.loads(event.kv.value)))
            yield revision, changes

    def workloads(self) -> list[Mapping[str, Any]]:
        return [json.loads(kv.value) for kv in self._etcd.prefix(
            self._key("workloads", self._replica) + b"/")]

    def save_workload(self, node_id: str, record: Mapping[str, Any]) -> None:
        self._etcd.transaction((), [Put(self._key("workloads", self._replica, node_id),
                                        json.dumps(record).encode(), self._lease)])

    def delete_workload(self, node_id: str) -> None:
        self._etcd.transaction((), [Delete(self._key("workloads", self._replica, node_id))])

    def close(self) -> None:
        """Nothing to release: every call is one HTTP request."""
