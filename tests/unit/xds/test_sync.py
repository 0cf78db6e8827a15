"""The one classification of xDS sync state: every state, the STALE boundary, a NACK that a
later push superseded, the roll-up order, and the JSON edge."""

from __future__ import annotations

from typing import Any

import pytest

from tulle.errors import ApiError
from tulle.xds import types
from tulle.xds.sync import (
    ROLL_UP_ORDER,
    Nack,
    ProxySync,
    SyncState,
    TypeSync,
    classify,
    roll_up,
    view_of,
    with_disconnected,
)
from tulle.xds.tracker import ProxyStatus, TypeStatus

NOW = 1_800_000_000.0
LIMIT = 10.0
S = SyncState


def nack(nonce: str) -> Nack:
    return Nack("web-1.default", types.ROUTE, nonce, "r2", "r1",
                "route: {...}\n':-prefixed or host headers may not be modified", NOW - 5)


def sent(nonce: str = "2", *, answered: str = "", age: float = 1.0,
         last_nack: Nack | None = None) -> TypeStatus:
    return TypeStatus(sent_version="r2", sent_nonce=nonce, sent_at=NOW - age,
                      sent_mesh_version=5, answered_nonce=answered, acked_version="r1",
                      acked_at=NOW - 60, acked_mesh_version=4, last_nack=last_nack)


CLASSIFY: list[tuple[str, TypeStatus | None, SyncState]] = [
    ("never sent, no record", None, S.NOT_SENT),
    ("never sent, empty record", TypeStatus(), S.NOT_SENT),
    ("ACKed", sent(answered="2"), S.SYNCED),
    ("young push", sent(age=1.2), S.PENDING),
    ("push exactly at the threshold", sent(age=LIMIT), S.PENDING),
    ("push just past the threshold", sent(age=LIMIT + 0.001), S.STALE),
    ("old push", sent(age=300), S.STALE),
    ("NACKed", sent(answered="2", last_nack=nack("2")), S.NACKED),
    ("NACK superseded by a later push", sent("3", last_nack=nack("2")), S.PENDING),
    ("NACK superseded, later push stale", sent("3", age=60, last_nack=nack("2")), S.STALE),
    ("NACK superseded, later push ACKed", sent("3", answered="3", last_nack=nack("2")),
     S.SYNCED),
]


@pytest.mark.parametrize(("case", "status", "expected"), CLASSIFY, ids=[c[0] for c in CLASSIFY])
def test_classify(case: str, status: TypeStatus | None, expected: SyncState) -> None:
    assert classify(status, NOW, LIMIT) is expected


def test_every_type_state_is_classified_somewhere() -> None:
    per_type = {s for s in S if s is not S.DISCONNECTED}
    assert {expected for _, _, expected in CLASSIFY} == per_type


ROLL_UP: list[tuple[tuple[SyncState, ...], SyncState]] = [
    ((), S.NOT_SENT),
    ((S.NOT_SENT,), S.NOT_SENT),
    ((S.SYNCED, S.NOT_SENT), S.SYNCED),
    ((S.SYNCED, S.PENDING), S.PENDING),
    ((S.PENDING, S.STALE, S.SYNCED), S.STALE),
    ((S.STALE, S.NACKED), S.NACKED),
    ((S.NACKED, S.DISCONNECTED), S.DISCONNECTED),
]


@pytest.mark.parametrize(("states", "expected"), ROLL_UP)
def test_roll_up_takes_the_worst(states: tuple[SyncState, ...], expected: SyncState) -> None:
    assert roll_up(states) is expected
    assert roll_up(reversed(states)) is expected


def test_roll_up_order_names_every_state_once() -> None:
    assert sorted(ROLL_UP_ORDER, key=lambda s: s.value) == sorted(S, key=lambda s: s.value)
    assert ROLL_UP_ORDER[0] is S.DISCONNECTED and ROLL_UP_ORDER[-1] is S.NOT_SENT


def test_failing_states_are_those_waiting_does_not_fix() -> None:
    assert {s for s in S if s.failing} == {S.NACKED, S.STALE, S.DISCONNECTED}


def test_labels_and_words() -> None:
    assert S.NOT_SENT.label == "NOT SENT" and S.PENDING.label == "PENDING"
    pending = TypeSync("RDS", S.PENDING, sent_at=NOW - 1.2)
    assert pending.describe(NOW) == "sent, waiting for the ACK, 1.2s"
    assert TypeSync("RDS", S.STALE, sent_at=NOW - 25).describe(NOW) == \
        "sent, not ACKed for 25s"
    refused = TypeSync("RDS", S.NACKED, nack=nack("2"))
    assert refused.describe(NOW) == \
        "refused version r2, runs r1: ':-prefixed or host headers may not be modified"
    assert TypeSync("RDS", S.SYNCED).waiting_s(NOW) is None
    assert pending.waiting_s(NOW) == pytest.approx(1.2)


def status_of_proxy() -> ProxyStatus:
    status = ProxyStatus("web-1.default", "delta", NOW - 3600, "ipv4:127.0.0.1:5000")
    status.types[types.ROUTE] = sent("3", age=30, last_nack=nack("2"))
    status.types[types.CLUSTER] = sent("1", answered="1")
    return status


def test_view_of_a_proxy_classifies_each_type_with_the_threshold() -> None:
    view = view_of(status_of_proxy(), NOW, LIMIT)
    assert [t.type for t in view.types] == ["CDS", "RDS"]
    assert (view.of("CDS").state, view.of("RDS").state, view.of("LDS").state) == (
        S.SYNCED, S.STALE, S.NOT_SENT)
    assert view.of("RDS").nack == nack("2"), "the superseded NACK stays on record"
    assert view.state is S.STALE and view.stale_after_s == LIMIT
    assert view_of(status_of_proxy(), NOW, 60.0).state is S.PENDING
    assert view.last_push_at == NOW - 1


def test_registered_workloads_without_a_stream_are_disconnected() -> None:
    connected = view_of(status_of_proxy(), NOW, LIMIT)
    views = with_disconnected([connected], ["web-1.default", "books-1.default"], LIMIT)
    assert [v.node for v in views] == ["books-1.default", "web-1.default"]
    assert views[0] == ProxySync("books-1.default", LIMIT)
    assert views[0].state is S.DISCONNECTED and not views[0].connected
    assert views[1] is connected


def test_json_round_trip_carries_state_and_facts() -> None:
    view = view_of(status_of_proxy(), NOW, LIMIT)
    data = view.to_json()
    assert data["state"] == "STALE" and data["staleAfterSeconds"] == LIMIT
    assert data["types"]["RDS"]["state"] == "STALE"
    assert data["types"]["RDS"]["nack"]["type"] == "RDS"
    assert ProxySync.from_json(data) == view
    assert Nack.from_json(nack("2").to_json()) == nack("2")


@pytest.mark.parametrize("data", [
    {},
    {"node": "web-1.default", "types": {"RDS": {"state": "SLEEPY"}}},
    {"node": "web-1.default", "types": {"RDS": {"state": "NACKED", "nack": {"type": "RDS"}}}},
    {"node": "web-1.default", "types": ["RDS"]},
])
def test_a_malformed_answer_is_an_api_error(data: dict[str, Any]) -> None:
    with pytest.raises(ApiError, match="cannot read"):
        ProxySync.from_json(data)
