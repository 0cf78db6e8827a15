"""EtcdStore against a real etcd: the same contract as the SQLite store (the contract tests
of test_sqlite.py and test_replace.py run here too, on this module's ``store`` fixture), and
what only a shared store has: concurrent writers, and endpoints that fail over."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.etcd import etcd_server
from tests.support.ports import free_port
from tests.unit.store.test_replace import (  # noqa: F401 - collected here against etcd
    test_changes_after_is_oldest_first_and_oldest_revision,
    test_replace_with_a_missing_delete_changes_nothing,
    test_replace_with_nothing_new_takes_no_revision,
    test_replace_writes_and_deletes_in_one_revision,
)
from tests.unit.store.test_sqlite import (  # noqa: F401 - collected here against etcd
    A,
    B,
    actions,
    manifest,
    test_a_batch_that_fails_midway_writes_nothing,
    test_apply_creates_configures_and_leaves_unchanged,
    test_delete_takes_a_revision_and_missing_is_not_found,
    test_history_has_before_and_after_newest_first,
    test_key_order_in_a_manifest_does_not_count_as_a_change,
    test_resources_hold_the_latest_manifest_and_timestamps,
    test_trimming_keeps_the_newest_revisions_changes,
    test_workloads_are_saved_replaced_listed_and_deleted,
)
from tulle.errors import StateError, UsageError
from tulle.model.meta import ResourceKey
from tulle.store.etcd import EtcdStore
from tulle.store.etcdclient import EtcdClient, parse_endpoints

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def etcd_url() -> Iterator[str]:
    with etcd_server() as url:
        yield url


@pytest.fixture
def store(etcd_url: str) -> EtcdStore:
    """A store of its own: a fresh prefix in the shared etcd."""
    return EtcdStore(EtcdClient([etcd_url]), prefix=f"/test-{next(_prefixes)}/")


def test_reopening_keeps_everything(etcd_url: str) -> None:
    first = EtcdStore(EtcdClient([etcd_url]), prefix="/reopen/")
    first.apply([(A, manifest(A))])
    first.save_workload("web-1.default", {"name": "web-1"})
    again = EtcdStore(EtcdClient([etcd_url]), prefix="/reopen/")
    assert [(s.key, s.manifest) for s in again.resources()] == [(A, manifest(A))]
    assert (again.revision(), again.workloads()) == (1, [{"name": "web-1"}])


def test_concurrent_writers_get_dense_revisions_and_lose_nothing(store: EtcdStore,
                                                                 etcd_url: str) -> None:
    """Replicas writing at once (one store object each): every write lands, in its own
    revision, and the history holds each of them once."""
    replicas = [EtcdStore(EtcdClient([etcd_url]), prefix=store._prefix) for _ in range(4)]
    errors: list[BaseException] = []

    def write(replica: EtcdStore, n: int) -> None:
        try:
            for i in range(10):
                key = ResourceKey("Service", "default", f"s{n}-{i}")
                replica.apply([(key, manifest(key))])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(r, n)) for n, r in enumerate(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert store.revision() == 40
    assert sorted(c.revision for c in store.history(limit=100)) == list(range(1, 41))
    assert len(store.resources()) == 40


def test_a_dead_endpoint_fails_over_to_the_next(etcd_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    store = EtcdStore(EtcdClient([dead, etcd_url], timeout_s=2), prefix="/failover/")
    assert actions(store.apply([(B, manifest(B))])) == [("b", "created", 1)]
    assert store.revision() == 1


@contextlib.contextmanager
def frozen_member() -> Iterator[tuple[str, list[socket.socket]]]:
    """An etcd member that is frozen (SIGSTOP) or cut off behind a live connection: it takes
    connections and never answers. Yields its URL and the connections it took."""
    listener = socket.create_server(("127.0.0.1", 0))
    taken: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                taken.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", taken
    finally:
        listener.close()
        for connection in taken:
            connection.close()


def test_a_member_that_never_answers_costs_one_timeout_not_one_per_call(
        etcd_url: str) -> None:
    """After one call waited out the frozen member, every thread's calls try it last, and
    a watch that ends (its stream idle) does not send the next call back to it."""
    with frozen_member() as (frozen, taken):
        client = EtcdClient([frozen, etcd_url], timeout_s=0.5)
        store = EtcdStore(client, prefix=f"/frozen-{next(_prefixes)}/")
        assert store.revision() == 0 and len(taken) == 1
        for _ in store.resource_changes(store.etcd_revision(), idle_s=0.2):
            pass  # nothing changes: the stream ends idle
        store.apply([(A, manifest(A))])
        others = [threading.Thread(target=store.revision) for _ in range(4)]
        for thread in others:
            thread.start()
        for thread in others:
            thread.join(30)
        assert store.revision() == 1
        assert len(taken) == 1, "calls went back to the member that does not answer"
        assert client.order() == [1, 0]


def test_no_endpoint_answering_is_a_state_error_with_a_hint() -> None:
    store = EtcdStore(EtcdClient([f"http://127.0.0.1:{free_port()}"], timeout_s=2))
    with pytest.raises(StateError) as caught:
        store.revision()
    assert "no etcd endpoint answered" in caught.value.message
    assert caught.value.hint is not None and "etcdctl endpoint health" in caught.value.hint


@pytest.mark.parametrize(("url", "expected"), [
    ("etcd://127.0.0.1:2379", (("http://127.0.0.1:2379",), False)),
    ("etcd://localhost:2379,127.0.0.1:2380",
     (("http://localhost:2379", "http://127.0.0.1:2380"), False)),
    ("etcds://h1:2379,h2:2379,h3:2379",
     (("https://h1:2379", "https://h2:2379", "https://h3:2379"), True)),
])
def test_store_urls(url: str, expected: tuple[tuple[str, ...], bool]) -> None:
    assert parse_endpoints(url) == expected


@pytest.mark.parametrize(("url", "says"), [
    ("etcd://10.0.0.5:2379", "not a loopback address"),  # credentials in clear over a network
    ("postgres://db:5432", "unknown store scheme"),
    ("etcd://", "no etcd endpoint"),
])
def test_bad_store_urls_are_usage_errors(url: str, says: str) -> None:
    with pytest.raises(UsageError, match=says) as caught:
        parse_endpoints(url)
    assert caught.value.hint


def test_each_replica_keeps_its_own_workloads_and_sees_every_resource(etcd_url: str) -> None:
    a = EtcdStore(EtcdClient([etcd_url]), prefix="/replicas/", replica="a")
    b = EtcdStore(EtcdClient([etcd_url]), prefix="/replicas/", replica="b")
    a.save_workload("web-1.default", {"name": "web-1"})
    b.save_workload("web-1.default", {"name": "web-1", "on": "b"})
    b.delete_workload("web-1.default")
    assert (a.workloads(), b.workloads()) == ([{"name": "web-1"}], [])
    a.apply([(A, manifest(A))])
    assert [s.key for s in b.resources()] == [A]


def test_a_watch_sees_the_writes_of_another_replica(etcd_url: str) -> None:
    a = EtcdStore(EtcdClient([etcd_url]), prefix="/watched/", replica="a")
    b = EtcdStore(EtcdClient([etcd_url]), prefix="/watched/", replica="b")
    start = b.etcd_revision()
    a.apply([(A, manifest(A)), (B, manifest(B))])
    a.delete(B)
    seen: list[tuple[str, bool]] = []
    for _, changes in b.resource_changes(start, idle_s=2):
        seen += [(key.name, stored is not None) for key, stored in changes]
        if len(seen) >= 3:
            break
    assert seen == [("a", True), ("b", True), ("b", False)]


def test_one_replica_at_a_time_holds_an_election_and_writes_under_it(etcd_url: str) -> None:
    """Singleton work: the first replica to campaign holds the election; the other gets 0
    until it is free. A trim fenced by an election this replica no longer holds writes
    nothing."""
    prefix = f"/election-{next(_prefixes)}/"
    a = EtcdStore(EtcdClient([etcd_url]), prefix=prefix, replica="a")
    b = EtcdStore(EtcdClient([etcd_url]), prefix=prefix, replica="b")
    for replica in (a, b):
        replica.hold_lease(10)
        assert 9 < replica.lease_left() <= 10
    won = a.campaign("compaction")
    assert won > 0 and a.campaign("compaction") == won  # still a's, at the same revision
    assert b.campaign("compaction") == 0
    assert a.leader("compaction") == b.leader("compaction") == "a"
    for port in range(4):
        a.apply([(A, manifest(A, port=port))])
    with pytest.raises(StateError, match="no longer holds the election"):
        b.trim_history(2, ("compaction", won + 1))  # not the revision the election is at
    assert [c.revision for c in a.history()] == [4, 3, 2, 1]  # nothing went
    assert a.trim_history(2, ("compaction", won)) == 2
    assert [c.revision for c in b.history()] == [4, 3]
    assert b.history(A)[-1].revision == 3  # the per-resource keys went too
    a.resign("compaction", won)
    taken = b.campaign("compaction")
    assert taken > won and b.leader("compaction") == "b"
    with pytest.raises(StateError):
        a.trim_history(1, ("compaction", won))  # a's old fence counts for nothing now
    assert b.compact_etcd(b.etcd_revision()) and not b.compact_etcd(1)


def test_an_apply_larger_than_one_etcd_transaction_says_so_and_writes_nothing(
        store: EtcdStore) -> None:
    """etcd takes 128 operations in one transaction by default: 60 resources are 181."""
    batch = [(ResourceKey("Service", "default", f"s{i}"), manifest(A)) for i in range(60)]
    with pytest.raises(StateError, match=r"touches 60 resources.*--max-txn-ops") as caught:
        store.apply(batch)
    assert "smaller files" in (caught.value.hint or "")
    assert store.resources() == [] and store.revision() == 0
