"""proxies-synced on classified sync states: a PENDING push is retried until the check's
deadline; NACKED and STALE fail at once (settled), in the same words as proxy-status."""

from __future__ import annotations

import pytest

from tulle.checks.dataplane import evaluate_sync
from tulle.checks.runner import Status
from tulle.xds import types
from tulle.xds.sync import Nack, ProxySync, SyncState, TypeSync

NOW = 1_800_000_000.0
SYNCED = TypeSync("CDS", SyncState.SYNCED, acked_version="c1")
PENDING = TypeSync("RDS", SyncState.PENDING, sent_at=NOW - 1.2)
STALE = TypeSync("RDS", SyncState.STALE, sent_at=NOW - 25)
NACKED = TypeSync("LDS", SyncState.NACKED, nack=Nack(
    "web-1.default", types.LISTENER, "2", "l2", "l1", "listener: {...}\nunknown filter", NOW))


def proxy(node: str, *kinds: TypeSync) -> ProxySync:
    return ProxySync(node, 10.0, "delta", NOW - 60, types=(SYNCED, *kinds))


@pytest.mark.parametrize(("proxies", "settled", "line"), [
    ([proxy("web-1.default", PENDING)], False,
     "web-1.default: RDS PENDING (sent, waiting for the ACK, 1.2s)"),
    ([proxy("web-1.default", STALE)], True, "web-1.default: RDS STALE (sent, not ACKed for 25s)"),
    ([proxy("web-1.default", NACKED)], True,
     "web-1.default: LDS NACKED (refused version l2, runs l1: unknown filter)"),
    # A push in flight elsewhere may still settle: the check waits for it, then reports all.
    ([proxy("web-1.default", NACKED), proxy("web-2.default", PENDING)], False,
     "web-2.default: RDS PENDING"),
])
def test_failures(proxies: list[ProxySync], settled: bool, line: str) -> None:
    outcome = evaluate_sync(proxies, NOW)
    assert outcome.status is Status.FAILED
    assert outcome.settled is settled
    assert line in outcome.message


def test_synced_and_never_sent_types_pass() -> None:
    outcome = evaluate_sync([proxy("web-1.default"), ProxySync("books-1.default", 10.0, "sotw",
                                                                NOW)], NOW)
    assert outcome.status is Status.OK
    assert outcome.message == "every type of every proxy is SYNCED"
