"""What a replica keeps of the others' registrations: their workloads, one per node, and the
certificates issued to each node, which still vouch for its agent for ``DEPARTED_KEEP_S``
after the registration left etcd (its replica died, and the lease lapsed before the agent
failed over)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.unit.model.workloads import workload
from tulle.controlplane.replication import DEPARTED_KEEP_S, RemoteWorkloads
from tulle.model.workload import WorkloadCertificate


def certificate(serial: str) -> WorkloadCertificate:
    return WorkloadCertificate(spiffe_id="spiffe://mesh.local/ns/default/sa/books",
                               serial=serial, not_before=0.0, not_after=3600.0,
                               issuer_id="issuer-1", chain_pem=f"PEM {serial}",
                               key_path="/keys/key-1.pem", issued_at=0.0)


def record(name: str, current: str | None = None, previous: str | None = None
           ) -> dict[str, Any]:
    return {"workload": workload(name, "books").to_dict(),
            "certificate": certificate(current).to_dict() if current else None,
            "previousCertificate": certificate(previous).to_dict() if previous else None}


class Store:
    def __init__(self, records: list[tuple[str, Mapping[str, Any]]]) -> None:
        self.records = records

    def other_workloads(self) -> list[tuple[str, Mapping[str, Any]]]:
        return self.records


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def remote(records: list[tuple[str, Mapping[str, Any]]] = ()  # type: ignore[assignment]
           ) -> tuple[RemoteWorkloads, Clock, list[int]]:
    clock, changes = Clock(), []
    held = RemoteWorkloads(Store(list(records)), lambda: changes.append(1),  # type: ignore[arg-type]
                           clock=clock)
    held.load()
    return held, clock, changes


def serials(held: RemoteWorkloads, node: str) -> list[str]:
    return [c.serial for c in held.certificates_of(node)]


def test_certificates_are_the_current_and_previous_of_that_node_only() -> None:
    held, _, _ = remote([("a", record("books-1", "11", "10")), ("a", record("books-2", "20"))])
    assert serials(held, "books-1.default") == ["11", "10"]
    assert serials(held, "books-2.default") == ["20"]
    assert serials(held, "books-3.default") == []


def test_a_registration_that_left_etcd_vouches_for_a_while_then_not() -> None:
    held, clock, changes = remote([("a", record("books-1", "11"))])
    held.apply([("a", "books-1.default", None)])  # replica a's lease lapsed
    assert [w.node_id for w in held.workloads()] == []  # its endpoint goes at once
    assert changes == [1]
    clock.now += DEPARTED_KEEP_S - 1
    assert serials(held, "books-1.default") == ["11"]
    clock.now += 2
    assert serials(held, "books-1.default") == []


def test_a_renewal_written_by_the_other_replica_replaces_what_is_held() -> None:
    held, _, changes = remote([("a", record("books-1", "11"))])
    held.apply([("a", "books-1.default", record("books-1", "12", "11"))])
    assert serials(held, "books-1.default") == ["12", "11"]
    assert changes == []  # the same workload: no push for a certificate


def test_a_node_held_by_two_replicas_a_moment_offers_both_replicas_certificates() -> None:
    held, _, _ = remote([("a", record("books-1", "11")), ("b", record("books-1", "12"))])
    assert sorted(serials(held, "books-1.default")) == ["11", "12"]
    assert len(held.workloads()) == 1


def test_an_unreadable_certificate_is_skipped_and_the_workload_kept() -> None:
    broken = {**record("books-1"), "certificate": {"serial": "x"}}
    held, _, _ = remote([("a", broken)])
    assert serials(held, "books-1.default") == []
    assert [w.node_id for w in held.workloads()] == ["books-1.default"]
