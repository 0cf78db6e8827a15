"""A staged rotation driven through fakes: the stages commit in order, each waits for every
proxy, stage 2 waits until every live workload renewed from the new issuer, and a stage that
does not complete stops the rotation where it can resume."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.support.fakes import FakeProxies, FakePush
from tests.unit.controlplane.support import registry
from tests.unit.identity.certs import open_ca
from tulle.controlplane.services.rotation import Rotator, bundle_hash
from tulle.errors import ConflictError, IdentityError
from tulle.identity.ca import CertificateAuthority
from tulle.model.workload import WorkloadCertificate
from tulle.registry.registry import WorkloadRegistry

NODES = ["books-1.default", "web-1.default"]


def certificate(issuer_id: str) -> WorkloadCertificate:
    return WorkloadCertificate("spiffe://x/ns/default/sa/a", "1", 0.0, 1e12, issuer_id,
                               "", "/k", 0.0)


def rotator(ca: CertificateAuthority, reg: WorkloadRegistry, proxies: FakeProxies,
            push: FakePush, *, renews: bool, messages: list[dict[str, Any]]) -> Rotator:
    def broadcast(message: dict[str, Any]) -> None:
        messages.append(message)
        if message.get("renew") and renews:  # every agent renews from the current issuer
            for node in NODES:
                reg.set_certificate(node, certificate(ca.issuer.id))

    return Rotator(ca, reg, push=push, wait_synced=proxies.wait_synced,
                   connected=proxies.connected, broadcast=broadcast,
                   refresh_server_identity=lambda: None, stage_timeout_s=0.3)


def test_a_root_rotation_runs_three_stages_and_ends_with_the_new_root(tmp_path: Path) -> None:
    ca, reg = open_ca(tmp_path), registry(tmp_path, "books-1", "web-1")
    old_root, old_issuer = ca.anchors[0].id, ca.issuer.id
    proxies, push, messages = FakeProxies(list(NODES)), FakePush(), []
    for node in NODES:
        reg.set_certificate(node, certificate(old_issuer))
    result = asyncio.run(rotator(ca, reg, proxies, push, renews=True,
                                 messages=messages).rotate("root"))
    assert [stage["stage"] for stage in result["stages"]] == [1, 2, 3]
    assert old_root not in result["anchors"] and len(result["anchors"]) == 1
    assert result["issuer"] != old_issuer and ca.state.rotation is None
    # Each stage waited for every proxy (nodes=None) to ACK the version it pushed.
    assert [(v, n) for v, _, n in proxies.waits] == [(1, None), (2, None), (3, None)]
    assert {"renew": True} in messages
    assert all(reg.certificate(n).issuer_id == result["issuer"]  # type: ignore[union-attr]
               for n in NODES)


def test_a_stage_that_does_not_complete_stops_and_can_resume(tmp_path: Path) -> None:
    ca, reg = open_ca(tmp_path), registry(tmp_path, "books-1", "web-1")
    for node in NODES:
        reg.set_certificate(node, certificate(ca.issuer.id))
    proxies, messages = FakeProxies(list(NODES)), []
    stuck = rotator(ca, reg, proxies, FakePush(), renews=False, messages=messages)
    with pytest.raises(IdentityError, match="stage 2 of the root rotation"):
        asyncio.run(stuck.rotate("root"))
    assert ca.state.rotation is not None and ca.state.rotation.stage == 2
    assert len(ca.state.anchors) == 2, "stage 1 stays done: the bundle holds both roots"
    resumed = rotator(ca, reg, proxies, FakePush(), renews=True, messages=messages)
    result = asyncio.run(resumed.rotate("root"))
    assert [stage["stage"] for stage in result["stages"]] == [2, 3]


def test_proxies_that_do_not_ack_stop_stage_one(tmp_path: Path) -> None:
    ca, reg = open_ca(tmp_path), registry(tmp_path, "books-1")
    proxies = FakeProxies(["books-1.default"], synced=False)
    with pytest.raises(IdentityError, match=r"stage 1 .* not every proxy confirmed"):
        asyncio.run(rotator(ca, reg, proxies, FakePush(), renews=True, messages=[])
                    .rotate("issuer"))
    assert ca.state.rotation is not None and ca.state.rotation.stage == 1


class Peers:
    """The other replicas: who holds the election, and what each stage finds on them."""

    def __init__(self, holder: str | None = None, lagging: list[str] | None = None) -> None:
        self.holder = holder
        self.lagging = lagging or []
        self.calls: list[tuple[str, str | None]] = []
        self.released = 0

    async def claim(self) -> str | None:
        return self.holder

    async def still_holds(self) -> bool:
        return self.holder is None

    async def release(self) -> None:
        self.released += 1

    async def synced(self, bundle: str, issuer: str | None, timeout_s: float
                     ) -> tuple[int, list[str]]:
        self.calls.append((bundle, issuer))
        return 2, self.lagging


def shared_rotator(tmp_path: Path, peers: Peers) -> tuple[Rotator, CertificateAuthority]:
    ca, reg = open_ca(tmp_path), registry(tmp_path, "books-1", "web-1")
    proxies, messages = FakeProxies(list(NODES)), []

    def broadcast(message: dict[str, Any]) -> None:
        messages.append(message)
        if message.get("renew"):
            for node in NODES:
                reg.set_certificate(node, certificate(ca.issuer.id))

    for node in NODES:
        reg.set_certificate(node, certificate(ca.issuer.id))
    return Rotator(ca, reg, push=FakePush(), wait_synced=proxies.wait_synced,
                   connected=proxies.connected, broadcast=broadcast,
                   refresh_server_identity=lambda: None, stage_timeout_s=0.3, shared=True,
                   peers=peers), ca  # type: ignore[arg-type]


def test_on_a_shared_store_each_stage_waits_for_the_other_replicas(tmp_path: Path) -> None:
    peers = Peers()
    rotator_, ca = shared_rotator(tmp_path, peers)
    result = asyncio.run(rotator_.rotate("root"))
    assert [stage["stage"] for stage in result["stages"]] == [1, 2, 3]
    # Stage 2 asks them for the new issuer too; each asks for the bundle in force then.
    assert [issuer for _, issuer in peers.calls] == [None, result["issuer"], None]
    assert peers.calls[-1][0] == bundle_hash(ca.bundle_pem())
    assert peers.released == 1
    assert all(s["detail"].endswith("; 2 other replica(s) followed") for s in result["stages"])


def test_a_replica_that_does_not_follow_stops_the_stage_and_is_named(tmp_path: Path) -> None:
    peers = Peers(lagging=["replica r-b: its CA has not followed the rotation's bundle yet"])
    rotator_, ca = shared_rotator(tmp_path, peers)
    with pytest.raises(IdentityError, match=r"other replicas did not follow: replica r-b"):
        asyncio.run(rotator_.rotate("issuer"))
    assert ca.state.rotation is not None and ca.state.rotation.stage == 1  # resumable
    assert peers.released == 1  # another replica may resume it


def test_a_rotation_held_by_another_replica_is_refused_and_names_it(tmp_path: Path) -> None:
    rotator_, ca = shared_rotator(tmp_path, Peers(holder="r-a"))
    with pytest.raises(ConflictError, match="replica r-a is rotating the CA now"):
        asyncio.run(rotator_.rotate("root"))
    assert ca.state.rotation is None


def test_a_refused_rotation_gives_the_election_back(tmp_path: Path) -> None:
    """This replica won the election, then the request was refused (another kind of
    rotation is under way): the election is released, so another replica may resume it."""
    peers = Peers(lagging=["replica r-b: not yet"])
    rotator_, _ = shared_rotator(tmp_path, peers)
    with pytest.raises(IdentityError):
        asyncio.run(rotator_.rotate("issuer"))  # stops at stage 1, resumable
    with pytest.raises(ConflictError, match="issuer rotation is in progress"):
        asyncio.run(rotator_.rotate("root"))
    assert peers.released == 2


def test_a_stage_waits_for_a_live_workloads_proxy_that_is_not_connected(
        tmp_path: Path) -> None:
    """After a control-plane restart an agent may be back before its Envoy: a stage that
    went on without that proxy would leave it the bundle and revocation lists of before
    (it then refuses the peers' new certificates)."""
    ca, reg = open_ca(tmp_path), registry(tmp_path, "books-1", "web-1")
    for node in NODES:
        reg.set_certificate(node, certificate(ca.issuer.id))
    proxies, messages = FakeProxies([NODES[0]]), []  # web-1's Envoy is reconnecting
    with pytest.raises(IdentityError, match="stage 1 of the issuer rotation did not complete"):
        asyncio.run(rotator(ca, reg, proxies, FakePush(), renews=True,
                            messages=messages).rotate("issuer"))
    assert proxies.waits == []  # nothing was pushed and waited for without it
