"""Changes other replicas make reach this one: a watch on the shared store's resources.

Control-plane replicas on one etcd store each serve their own proxies from their own view of
the resources. A change applied on any replica is written to etcd; every replica watches the
resources' keys (etcd pushes each change; nothing polls), folds the change into its view and
pushes to its proxies. A replica's own writes come back on the watch too and change nothing.

The watch runs in a thread (the store's client is blocking) and hands each batch to the event
loop. When the stream ends (etcd restarts, a member dies, nothing happened for a while) it
watches again from the last revision it saw; when etcd has compacted that revision away, it
reads every resource again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from tulle.errors import TulleError
from tulle.model.meta import ResourceKey
from tulle.store.base import StoredResource
from tulle.store.etcd import EtcdStore
from tulle.store.etcdclient import WatchCompacted

log = logging.getLogger("tulle.controlplane")

RETRY_MIN_S, RETRY_MAX_S = 0.2, 2.0

Changes = list[tuple[ResourceKey, StoredResource | None]]


class StoreWatcher:
    def __init__(self, store: EtcdStore, loop: asyncio.AbstractEventLoop, *,
                 absorb: Callable[[Changes], bool], reload: Callable[[], object],
                 changed: Callable[[], None]) -> None:
        self._store = store
        self._loop = loop
        self._absorb = absorb
        self._reload = reload
        self._changed = changed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0  # batches that changed this replica's view

    def start(self, after: int) -> None:
        """Watch for writes after etcd revision ``after`` (read before the resources were
        loaded, so that nothing written in between is missed)."""
        self._thread = threading.Thread(target=self._run, args=(after,), daemon=True,
                                        name="tulle-store-watch")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, after: int) -> None:
        delay = RETRY_MIN_S
        while not self._stop.is_set():
            try:
                for revision, changes in self._store.resource_changes(after):
                    if self._stop.is_set():
                        return
                    after = max(after, revision)
                    if changes:
                        self._loop.call_soon_threadsafe(self._apply, changes)
                    delay = RETRY_MIN_S
            except WatchCompacted:
                log.warning("the store's watch fell behind etcd's compaction: reading every "
                            "resource again")
                try:
                    after = self._store.etcd_revision()
                except TulleError as exc:
                    log.warning("cannot read etcd's revision: %s", exc.message)
                    continue
                self._loop.call_soon_threadsafe(self._full_reload)
            except TulleError as exc:
                log.warning("the store's watch failed: %s", exc.message)
            self._stop.wait(delay)
            delay = min(RETRY_MAX_S, delay * 2)

    def _apply(self, changes: Changes) -> None:
        if self._absorb(changes):
            self.batches += 1
            self._changed()

    def _full_reload(self) -> None:
        self._reload()
        self._changed()
