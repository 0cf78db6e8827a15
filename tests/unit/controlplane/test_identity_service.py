"""Signing workload certificates: who may ask (a join token for the node, or the workload's own
current certificate), what is signed (only the registered identity), and the wait for the
proxy's ACK."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.fakes import FakeProxies, FakePush
from tests.unit.controlplane.support import registry
from tests.unit.identity.certs import BOOKS_ID, csr, open_ca, uri
from tulle.controlplane.services.identity import Caller, IdentityService, SigningRequest
from tulle.errors import IdentityError, NotFoundError, UsageError
from tulle.identity.tokens import JoinTokens
from tulle.registry.registry import WorkloadRegistry

BOOKS = "books-1.default"
WEB_ID = BOOKS_ID.replace("/sa/books", "/sa/web")


def service(tmp_path: Path, proxies: FakeProxies | None = None,
            push: FakePush | None = None) -> tuple[IdentityService, WorkloadRegistry]:
    reg = registry(tmp_path, "books-1", "web-1")
    proxies = proxies or FakeProxies()
    push = push or FakePush()
    return IdentityService(open_ca(tmp_path), JoinTokens(), reg, push_soon=push.soon,
                           wait_synced=proxies.wait_synced,
                           proxy_connected=proxies.is_connected,
                           workload_lifetime_s=lambda: 3600.0, ca_dir=tmp_path / "ca",
                           identity_port=lambda: 15712), reg


def request(spiffe_id: str = BOOKS_ID, node: str = BOOKS) -> SigningRequest:
    return SigningRequest(node, csr([uri(spiffe_id)]).decode(), "/keys/books-1.key")


def test_a_join_token_for_the_node_gets_its_identity_signed(tmp_path: Path) -> None:
    proxies = FakeProxies([BOOKS])
    push = FakePush(version=4)
    identity, reg = service(tmp_path, proxies, push)
    token = identity.enrol(reg.get(BOOKS))["joinToken"]  # type: ignore[arg-type]
    signed = asyncio.run(identity.sign(request(), Caller(join_token=token)))
    leaf = x509.load_pem_x509_certificates(signed.chain_pem.encode())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [BOOKS_ID]
    assert signed.acked and proxies.waits == [(5, 5.0, (BOOKS,))]
    held = reg.certificate(BOOKS)
    assert held is not None and held.serial == signed.serial
    assert held.key_path == "/keys/books-1.key"
    assert identity.issued_total == 1


def test_a_token_is_used_up_and_bound_to_its_node(tmp_path: Path) -> None:
    identity, reg = service(tmp_path)
    token = identity.enrol(reg.get("web-1.default"))["joinToken"]  # type: ignore[arg-type]
    with pytest.raises(IdentityError, match=r"issued for .*sa/web"):
        asyncio.run(identity.sign(request(), Caller(join_token=token)))
    with pytest.raises(IdentityError, match="unknown or was already used"):
        asyncio.run(identity.sign(request(WEB_ID, "web-1.default"), Caller(join_token=token)))
    assert reg.certificate(BOOKS) is None


def test_the_current_certificate_vouches_only_for_its_own_identity(tmp_path: Path) -> None:
    identity, reg = service(tmp_path)
    web_token = identity.enrol(reg.get("web-1.default"))["joinToken"]  # type: ignore[arg-type]
    web = asyncio.run(identity.sign(request(WEB_ID, "web-1.default"),
                                    Caller(join_token=web_token)))
    web_der = x509.load_pem_x509_certificates(web.chain_pem.encode())[0].public_bytes(
        serialization.Encoding.DER)
    renewed = asyncio.run(identity.sign(request(WEB_ID, "web-1.default"),
                                        Caller(peer_certificate=web_der)))
    assert renewed.serial != web.serial
    with pytest.raises(IdentityError, match=r"client certificate is .*sa/web"):
        asyncio.run(identity.sign(request(), Caller(peer_certificate=web_der)))


def test_no_credential_is_refused(tmp_path: Path) -> None:
    identity, reg = service(tmp_path)
    with pytest.raises(IdentityError, match="join token or the workload's current"):
        asyncio.run(identity.sign(request(), Caller()))
    assert reg.certificate(BOOKS) is None


def test_unknown_nodes_and_missing_fields(tmp_path: Path) -> None:
    identity, _ = service(tmp_path)
    with pytest.raises(NotFoundError):
        asyncio.run(identity.sign(request(node="ghost-1.default"), Caller(join_token="t")))
    with pytest.raises(UsageError, match="required"):
        asyncio.run(identity.sign(SigningRequest(BOOKS, "", "/k"), Caller(join_token="t")))


def test_a_proxy_that_is_not_connected_is_not_waited_for(tmp_path: Path) -> None:
    proxies = FakeProxies([])
    identity, reg = service(tmp_path, proxies)
    token = identity.enrol(reg.get(BOOKS))["joinToken"]  # type: ignore[arg-type]
    signed = asyncio.run(identity.sign(request(), Caller(join_token=token)))
    assert not signed.acked and not proxies.waits


def test_a_new_join_token_needs_a_live_session(tmp_path: Path) -> None:
    identity, reg = service(tmp_path)
    assert identity.join_token_for(BOOKS)
    reg.session_ended(BOOKS, 1)
    with pytest.raises(NotFoundError):
        identity.join_token_for(BOOKS)
