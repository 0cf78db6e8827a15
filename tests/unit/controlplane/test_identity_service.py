"""Signing workload certificates: who may ask (a join token for the node, spent by any request
that presents it; or the certificate the registry holds for that very node), what is signed
(only the registered identity), where the proxy is told the key is (the workload's identity
directory, never a caller's path), and the wait for the proxy's ACK."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.fakes import FakeProxies, FakePush
from tests.unit.controlplane.support import registry
from tests.unit.identity.certs import BOOKS_ID, csr, open_ca, uri
from tests.unit.model.workloads import workload
from tulle.controlplane.api.identity import signing_request
from tulle.controlplane.services.identity import Caller, IdentityService, Signed, SigningRequest
from tulle.errors import IdentityError, NotFoundError, UsageError
from tulle.identity.tokens import JoinTokens
from tulle.model.workload import WorkloadCertificate, WorkloadState
from tulle.registry.registry import Credentials, WorkloadRegistry
from tulle.store.sqlite import SqliteStore

BOOKS = "books-1.default"
BOOKS_2 = "books-2.default"  # a sibling: same service account, same SPIFFE ID
WEB_ID = BOOKS_ID.replace("/sa/books", "/sa/web")
KEYS = Path("/state/workloads")


def service(tmp_path: Path, proxies: FakeProxies | None = None,
            push: FakePush | None = None) -> tuple[IdentityService, WorkloadRegistry]:
    reg = registry(tmp_path, "books-1", "books-2", "web-1")
    proxies = proxies or FakeProxies()
    push = push or FakePush()
    return IdentityService(open_ca(tmp_path), JoinTokens(), reg, push_soon=push.soon,
                           wait_synced=proxies.wait_synced,
                           proxy_connected=proxies.is_connected,
                           workload_lifetime_s=lambda: 3600.0, ca_dir=tmp_path / "ca",
                           identity_port=lambda: 15712,
                           key_dir=lambda w: KEYS / w.node_id / "identity"), reg


def request(spiffe_id: str = BOOKS_ID, node: str = BOOKS, generation: int = 1
            ) -> SigningRequest:
    return SigningRequest(node, csr([uri(spiffe_id)]).decode(), generation)


def der(signed: Signed) -> bytes:
    """The leaf as the TLS layer hands it over."""
    return x509.load_pem_x509_certificates(signed.chain_pem.encode())[0].public_bytes(
        serialization.Encoding.DER)


def enrolled(identity: IdentityService, reg: WorkloadRegistry, node: str = BOOKS,
             spiffe_id: str = BOOKS_ID) -> Signed:
    """``node``'s first certificate, paid for with its join token."""
    token = identity.enrol(reg.get(node))["joinToken"]  # type: ignore[arg-type]
    return asyncio.run(identity.sign(request(spiffe_id, node), Caller(join_token=token)))


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
    assert held.key_path == "/state/workloads/books-1.default/identity/key-1.pem"
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
    web = enrolled(identity, reg, "web-1.default", WEB_ID)
    renewed = asyncio.run(identity.sign(request(WEB_ID, "web-1.default", 2),
                                        Caller(peer_certificate=der(web))))
    assert renewed.serial != web.serial
    with pytest.raises(IdentityError, match=r"client certificate is .*sa/web"):
        asyncio.run(identity.sign(request(), Caller(peer_certificate=der(renewed))))


def test_a_siblings_certificate_cannot_renew_another_instance(tmp_path: Path) -> None:
    identity, reg = service(tmp_path)
    books_1 = enrolled(identity, reg, BOOKS)
    books_2 = enrolled(identity, reg, BOOKS_2)
    # Same service account, same SPIFFE ID: still only books-1's own certificate renews it.
    with pytest.raises(IdentityError, match=r"not books-2\.default's"):
        asyncio.run(identity.sign(request(node=BOOKS_2, generation=7),
                                  Caller(peer_certificate=der(books_1))))
    held = reg.certificate(BOOKS_2)
    assert held is not None and held.serial == books_2.serial
    assert held.key_path.endswith("/books-2.default/identity/key-1.pem")


def test_the_certificate_before_the_current_one_still_renews(tmp_path: Path) -> None:
    """An agent that never got the answer carrying its new certificate tries again with the
    one it holds: that one still vouches, but not the one before it."""
    identity, reg = service(tmp_path)
    first = enrolled(identity, reg)
    second = asyncio.run(identity.sign(request(generation=2),
                                       Caller(peer_certificate=der(first))))
    third = asyncio.run(identity.sign(request(generation=2),
                                      Caller(peer_certificate=der(first))))
    assert len({first.serial, second.serial, third.serial}) == 3
    with pytest.raises(IdentityError, match=r"not books-1\.default's"):
        asyncio.run(identity.sign(request(generation=3), Caller(peer_certificate=der(first))))
    assert asyncio.run(identity.sign(request(generation=3),
                                     Caller(peer_certificate=der(second)))).serial


def test_a_certificate_of_an_earlier_registration_does_not_renew(tmp_path: Path) -> None:
    identity, reg = service(tmp_path)
    old = enrolled(identity, reg)
    # The agent restarted: a new session with new credentials, and no certificate yet.
    reg.session_ended(BOOKS, 1)
    reg.register(workload("books-1", "books", state=WorkloadState.READY),
                 Credentials(xds_token="y" * 20, agent_token="b" * 20))
    with pytest.raises(IdentityError, match=r"not books-1\.default's"):
        asyncio.run(identity.sign(request(generation=2), Caller(peer_certificate=der(old))))


def test_the_key_path_is_the_control_planes_never_the_callers(tmp_path: Path) -> None:
    identity, reg = service(tmp_path)
    first = enrolled(identity, reg)
    named = signing_request({"node": BOOKS, "csr": request().csr_pem, "keyGeneration": 2,
                             "keyPath": "/etc/hostname"})
    with pytest.raises(UsageError, match="keyPath is not accepted"):
        asyncio.run(identity.sign(named, Caller(peer_certificate=der(first))))
    for generation in (0, -1, 2**31, "../../etc/hostname", "2", 2.5, True, None):
        body = {"node": BOOKS, "csr": request().csr_pem, "keyGeneration": generation}
        with pytest.raises(UsageError, match="keyGeneration"):
            asyncio.run(identity.sign(signing_request(body),
                                      Caller(peer_certificate=der(first))))
    held = reg.certificate(BOOKS)
    assert held is not None and held.serial == first.serial
    renewed = asyncio.run(identity.sign(signing_request(
        {"node": BOOKS, "csr": request().csr_pem, "keyGeneration": 12}),
        Caller(peer_certificate=der(first))))
    held = reg.certificate(BOOKS)
    assert held is not None and held.serial == renewed.serial
    assert held.key_path == "/state/workloads/books-1.default/identity/key-12.pem"


def test_no_credential_is_refused(tmp_path: Path) -> None:
    identity, reg = service(tmp_path)
    with pytest.raises(IdentityError, match="join token or the workload's current"):
        asyncio.run(identity.sign(request(), Caller()))
    assert reg.certificate(BOOKS) is None


def test_unknown_nodes_and_missing_fields(tmp_path: Path) -> None:
    identity, reg = service(tmp_path)
    first = enrolled(identity, reg)
    with pytest.raises(NotFoundError):
        asyncio.run(identity.sign(request(node="ghost-1.default"),
                                  Caller(peer_certificate=der(first))))
    for incomplete in (SigningRequest("", "csr", 1), SigningRequest(BOOKS, "", 1)):
        with pytest.raises(UsageError, match="required"):
            asyncio.run(identity.sign(incomplete, Caller(peer_certificate=der(first))))
    held = reg.certificate(BOOKS)
    assert held is not None and held.serial == first.serial


def test_who_asks_is_checked_before_what_is_asked(tmp_path: Path) -> None:
    identity, _ = service(tmp_path)
    with pytest.raises(IdentityError, match="join token or the workload's current"):
        asyncio.run(identity.sign(signing_request({"node": BOOKS, "keyPath": "/etc/hostname"}),
                                  Caller()))


@pytest.mark.parametrize("refused", [
    request(node="ghost-1.default"),  # a node nobody registered
    SigningRequest(BOOKS, "", 1),  # no CSR
    SigningRequest(BOOKS, "csr", 0),  # no key generation
    signing_request({"node": BOOKS, "csr": "csr", "keyPath": "/etc/hostname"}),
], ids=["unknown node", "no csr", "no generation", "key path"])
def test_a_refused_request_spends_its_join_token(tmp_path: Path,
                                                 refused: SigningRequest) -> None:
    identity, reg = service(tmp_path)
    token = identity.enrol(reg.get(BOOKS))["joinToken"]  # type: ignore[arg-type]
    with pytest.raises((NotFoundError, UsageError)):
        asyncio.run(identity.sign(refused, Caller(join_token=token)))
    with pytest.raises(IdentityError, match="unknown or was already used"):
        asyncio.run(identity.sign(request(), Caller(join_token=token)))
    assert reg.certificate(BOOKS) is None


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


def test_an_unreadable_request_still_spends_its_token_and_refuses_strangers(tmp_path: Path
                                                                           ) -> None:
    identity, reg = service(tmp_path)
    token = identity.enrol(reg.get(BOOKS))["joinToken"]  # type: ignore[arg-type]
    identity.check_caller(Caller(join_token=token))  # the body was unreadable: 400 follows
    with pytest.raises(IdentityError, match="unknown or was already used"):
        identity.check_caller(Caller(join_token=token))
    with pytest.raises(IdentityError, match="join token or the workload's current"):
        identity.check_caller(Caller())
    with pytest.raises(IdentityError, match="cannot be parsed"):
        identity.check_caller(Caller(peer_certificate=b"not a certificate"))


def replica_b(tmp_path: Path, elsewhere: dict[str, tuple[WorkloadCertificate, ...]]
              ) -> tuple[IdentityService, WorkloadRegistry]:
    """Another replica on the same CA, which knows what the first holds for each node."""
    (tmp_path / "b").mkdir()
    reg = WorkloadRegistry(SqliteStore(tmp_path / "b" / "store.db"), lambda: None)
    return IdentityService(open_ca(tmp_path), JoinTokens(), reg, push_soon=FakePush().soon,
                           wait_synced=FakeProxies().wait_synced,
                           proxy_connected=FakeProxies().is_connected,
                           workload_lifetime_s=lambda: 3600.0, ca_dir=tmp_path / "ca",
                           identity_port=lambda: 15712,
                           key_dir=lambda w: KEYS / w.node_id / "identity",
                           certificates_elsewhere=lambda node: elsewhere.get(node, ())), reg


def test_an_agent_failing_over_brings_the_certificate_another_replica_issued(
        tmp_path: Path) -> None:
    a, reg_a = service(tmp_path)
    signed = enrolled(a, reg_a)
    b, reg_b = replica_b(tmp_path, {BOOKS: reg_a.renewal_certificates(BOOKS)})
    held = b.session_certificate(BOOKS, der(signed))
    assert held.serial == signed.serial
    reg_b.register(workload("books-1", "books", state=WorkloadState.READY),
                   Credentials(xds_token="y" * 20, agent_token="b" * 20))
    with pytest.raises(IdentityError, match=r"not books-1\.default's"):
        b.authorise_node(der(signed), BOOKS)  # registered here, the certificate not adopted
    b.adopt(BOOKS, held)
    b.authorise_node(der(signed), BOOKS)  # its xDS stream is taken now
    renewed = asyncio.run(b.sign(request(generation=2), Caller(peer_certificate=der(signed))))
    assert reg_b.certificate(BOOKS) is not None
    assert reg_b.certificate(BOOKS).serial == renewed.serial  # type: ignore[union-attr]


def test_a_failing_over_agent_cannot_take_a_siblings_or_an_unknown_certificate(
        tmp_path: Path) -> None:
    a, reg_a = service(tmp_path)
    books_1 = enrolled(a, reg_a, BOOKS)
    b, _ = replica_b(tmp_path, {BOOKS: reg_a.renewal_certificates(BOOKS)})
    # books-2 has the same SPIFFE ID, but books-1's certificate vouches for books-1 only.
    with pytest.raises(IdentityError, match=r"not books-2\.default's"):
        b.session_certificate(BOOKS_2, der(books_1))
    # A certificate the CA issued, but that no replica holds for the node (any more).
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "ca").symlink_to(tmp_path / "ca")
    b_forgot, _ = replica_b(tmp_path / "x", {})
    with pytest.raises(IdentityError, match=r"not books-1\.default's"):
        b_forgot.session_certificate(BOOKS, der(books_1))
