"""Configs shipped to worker processes: whatever the sequence of snapshots, and whichever
proxies each push covers, a worker's table holds exactly the configs the control plane
compiled, with the same shared-part diffs (the streams' work in proportion to the change
depends on them), and keeps no shared part no config uses."""

from __future__ import annotations

import pickle
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.xds.test_stream_diff import Chain, Snapshot, snapshots
from tulle.xds.config import ProxyConfig, SharedConfig
from tulle.xds.workers.ship import Ledger, Parcels, Shipment, Table

NODES = ("n1", "n2", "n3")


def _versions(by_type: Mapping[str, Mapping[str, object]]) -> dict[str, dict[str, str]]:
    return {t: {n: r.version for n, r in of_type.items()}  # type: ignore[attr-defined]
            for t, of_type in by_type.items() if of_type}


def _same_shared(worker: SharedConfig, control_plane: SharedConfig, diffed: bool) -> None:
    assert worker.serial == control_plane.serial
    assert _versions(worker.resources) == _versions(control_plane.resources)
    assert {t: s for t, s in worker.sums.items() if s} == \
        {t: s for t, s in control_plane.sums.items() if s}
    if diffed:  # shipped as a diff: the worker knows what changed, as the compiler did
        assert worker.base == control_plane.base
        for type_url in control_plane.resources.keys() | worker.resources.keys():
            assert worker.changed_names(type_url) == control_plane.changed_names(type_url)


def _same(worker: ProxyConfig | None, control_plane: ProxyConfig) -> None:
    assert worker is not None
    assert worker.mesh_version == control_plane.mesh_version
    assert _versions(worker.own) == _versions(control_plane.own)
    assert dict(worker.versions) == dict(control_plane.versions)


def _through_the_pipe(shipment: Shipment) -> Shipment:
    restored: Shipment = pickle.loads(pickle.dumps(shipment))
    return restored


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(snapshots, st.sets(st.sampled_from(NODES), min_size=1),
                          st.integers(1, 4)), min_size=1, max_size=8))
def test_a_worker_rebuilds_what_the_control_plane_compiled(
        steps: list[tuple[Snapshot, set[str], int]]) -> None:
    """Each push goes in shipments of ``every`` configs (as the pool ships them), and the
    worker is checked after each shipment."""
    chain = Chain()
    ledger, table = Ledger(), Table()
    latest: dict[str, ProxyConfig] = {}
    for snapshot, nodes, every in steps:
        config = chain.config(snapshot)
        ordered = sorted(nodes)
        parcels = Parcels()
        for start in range(0, len(ordered), every):
            _ship_and_check(ledger, table, latest, config, ordered[start:start + every],
                            parcels)


def _ship_and_check(ledger: Ledger, table: Table, latest: dict[str, ProxyConfig],
                    config: ProxyConfig, nodes: list[str], parcels: Parcels) -> None:
    shipment = _through_the_pipe(ledger.ship([(node, config) for node in nodes], parcels))
    assert table.apply(shipment) == nodes
    for node in nodes:
        latest[node] = config
    for node, expected in latest.items():
        held = table.config(node)
        _same(held, expected)
        assert held is not None
        # A shared part the worker held the base of came as a diff, and means the same.
        _same_shared(held.shared, expected.shared,
                     diffed=held.shared.base is not None)
    # It keeps the shared parts its configs use, no other; the ledger agrees.
    used = {c.shared.serial for c in latest.values()}
    assert set(table.shared) == used == ledger.shared


def test_one_push_pickles_each_shared_part_once_for_every_worker() -> None:
    chain = Chain()
    empty = Snapshot({}, {}, False)
    first = chain.config(empty)
    parcels = Parcels()
    shipments = [Ledger().ship([("n1", first), ("n2", first)], parcels) for _ in range(3)]
    blobs = [s.parcels for s in shipments]
    assert all(len(b) == 1 for b in blobs)
    assert blobs[0][0] is blobs[1][0] is blobs[2][0]


def test_unchanged_own_resources_do_not_travel_again() -> None:
    from tests.unit.xds.test_stream_diff import CDS, LDS

    chain = Chain()
    ledger, table = Ledger(), Table()
    own = {LDS: {"outbound": 1}, CDS: {"inbound": 0}}
    one = chain.config(Snapshot({CDS: {"a": 0}}, own, False))
    table.apply(ledger.ship([("n1", one)], Parcels()))
    two = chain.config(Snapshot({CDS: {"a": 1}}, own, False))
    shipment = ledger.ship([("n1", two)], Parcels())
    assert shipment.entries[0].own is None
    (parcel_bytes,) = shipment.parcels
    parcel = pickle.loads(parcel_bytes)
    assert parcel.base == one.shared.serial  # the diff, not the whole shared part
    table.apply(shipment)
    _same(table.config("n1"), two)


def test_an_older_config_never_replaces_a_newer_one() -> None:
    chain = Chain()
    ledger, table = Ledger(), Table()
    old = ledger.ship([("n1", chain.config(Snapshot({}, {}, False)))], Parcels())
    newer_config = chain.config(Snapshot({}, {}, False))
    new = ledger.ship([("n1", newer_config)], Parcels())
    table.apply(old)
    table.apply(new)
    table.apply(Shipment((), old.entries, new.keep))  # a late duplicate of the older one
    _same(table.config("n1"), newer_config)


def test_a_workers_status_report_reads_back_as_the_stream_status() -> None:
    from tulle.xds.sync import Nack
    from tulle.xds.tracker import ProxyStatus, TypeStatus, facts_of, status_of

    nack = Nack("n1", "t/cds", "3", "v3", "v2", "bad cluster", 12.0)
    status = ProxyStatus("n1", "delta", 10.5, "ipv4:127.0.0.1:4000", {
        "t/cds": TypeStatus("v3", "3", 11.0, 7, "3", "v2", 10.9, 6, nack),
        "t/eds": TypeStatus("e1", "2", 11.1, 7, "", "", None, 0, None)})
    restored = status_of("n1", pickle.loads(pickle.dumps(facts_of(status))))
    assert restored == status


def test_a_shared_part_no_remaining_config_uses_is_dropped() -> None:
    chain = Chain()
    ledger, table = Ledger(), Table()
    old = chain.config(Snapshot({}, {}, False))
    table.apply(ledger.ship([("n1", old), ("n2", old)], Parcels()))
    new = chain.config(Snapshot({}, {}, False))
    table.apply(ledger.ship([("n1", new)], Parcels()))
    assert set(table.shared) == ledger.shared == {old.shared.serial, new.shared.serial}
    ledger.forget("n2")  # its stream closed
    table.forget("n2")
    table.apply(ledger.ship([("n1", new)], Parcels()))
    assert set(table.shared) == ledger.shared == {new.shared.serial}
