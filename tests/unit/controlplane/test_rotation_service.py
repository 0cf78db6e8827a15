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
from tulle.controlplane.services.rotation import Rotator
from tulle.errors import IdentityError
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
