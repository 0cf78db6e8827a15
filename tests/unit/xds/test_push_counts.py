"""The hub's counters for /metrics: every response a stream sends, and every NACK, by type."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.unit.xds.envoy_side import CDS, EDS, LDS, RDS, DeltaPeer, FakeClock, Peer, SotwPeer
from tests.unit.xds.sample_configs import sample
from tulle.xds.stream import DeltaStream, SotwStream
from tulle.xds.tracker import NackLog, ResponseLog


@pytest.mark.parametrize(("peer_class", "stream_class"),
                         [(SotwPeer, SotwStream), (DeltaPeer, DeltaStream)],
                         ids=["sotw", "delta"])
def test_every_response_and_nack_is_counted_by_type(
        peer_class: type[Peer], stream_class: type[SotwStream | DeltaStream]) -> None:
    responses, nacks = ResponseLog(), NackLog()
    peer = peer_class()
    peer.stream = stream_class("web-1.default", nacks.record, clock=FakeClock(),
                               on_sent=responses.record)
    first = sample()
    replies = peer.offer(first)
    replies += peer.subscribe(CDS)
    replies += peer.subscribe(EDS, sorted(first.of_type(EDS)))
    replies += peer.subscribe(LDS)
    replies += peer.subscribe(RDS, sorted(first.of_type(RDS)))
    replies += peer.ack_all()
    rejected = peer.offer(sample(2, timeouts={"a": 0, "b": 1}))
    replies += rejected
    peer.nack(rejected[0], "bad cluster")

    assert responses.by_type == Counter(r.type_url for r in replies)
    assert responses.by_type[CDS] >= 2
    assert nacks.by_type == Counter({CDS: 1})
    assert nacks.total == 1
