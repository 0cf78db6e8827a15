"""The generators with workload identity: SDS secrets, mTLS clusters, mTLS inbound listeners."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from tests.unit.xds.consistency import tls_context
from tests.unit.xds.tls import (
    SDS_NAMES,
    max_connection_duration,
    network_filter,
    peer_ids,
    sds_names,
    upstream_tls,
)
from tulle.model.mesh import MeshService
from tulle.model.meta import ServiceRef
from tulle.model.service import MtlsMode, Protocol
from tulle.xds import names
from tulle.xds.generators import clusters, listeners, secrets

TD = "example.org"
BUNDLE = "-----BEGIN CERTIFICATE-----\nroot one\n-----END CERTIFICATE-----\n"
BOOKS = ServiceRef("shop", "books")
BOOKS_ID = f"spiffe://{TD}/ns/shop/sa/books"
ADMIN_ID = f"spiffe://{TD}/ns/shop/sa/books-admin"


def test_the_bundle_secret_holds_the_roots_and_checks_leaves_against_the_lists() -> None:
    """Envoy's default validator, not the SPIFFE one: the SPIFFE validator ignores CRLs."""
    secret = secrets.bundle_secret(BUNDLE, "LISTS PEM")
    assert secret.name == names.BUNDLE_SECRET
    context = secret.validation_context
    assert not context.HasField("custom_validator_config")
    assert context.trusted_ca.inline_string == BUNDLE
    assert context.crl.inline_string == "LISTS PEM"
    assert context.only_verify_leaf_cert_crl, "issuers are checked by signature, not lists"
    # SAN matchers here would merge into each side's own (a caller's exact identities).
    assert not context.match_typed_subject_alt_names


def test_without_lists_the_bundle_secret_checks_no_revocation() -> None:
    context = secrets.bundle_secret(BUNDLE).validation_context
    assert not context.HasField("crl") and not context.only_verify_leaf_cert_crl


def test_the_identity_secret_sends_the_chain_and_only_the_path_of_the_key() -> None:
    secret = secrets.identity_secret("CHAIN PEM", "/var/lib/tulle/books-1/key.pem")
    assert secret.name == names.IDENTITY_SECRET
    certificate = secret.tls_certificate
    assert certificate.certificate_chain.inline_string == "CHAIN PEM"
    assert certificate.private_key.WhichOneof("specifier") == "filename"
    assert certificate.private_key.filename == "/var/lib/tulle/books-1/key.pem"


# -- outbound clusters ---------------------------------------------------------------------------

# (case, the service's identities, the IDs its callers accept)
PEERS = [
    ("one account", (BOOKS_ID,), [BOOKS_ID]),
    ("two accounts", (ADMIN_ID, BOOKS_ID), [ADMIN_ID, BOOKS_ID]),
    # Never an empty list: Envoy would accept any identity of the trust domain.
    ("no instance yet: the default account", (), [BOOKS_ID]),
]


@pytest.mark.parametrize(("identities", "accepted"), [p[1:] for p in PEERS],
                         ids=[p[0] for p in PEERS])
@pytest.mark.parametrize("protocol", ["http", "tcp"])
def test_a_caller_accepts_only_the_services_identities(
        identities: tuple[str, ...], accepted: list[str], protocol: Protocol) -> None:
    service = MeshService(BOOKS, protocol, declared=True, identities=identities)
    context = upstream_tls(clusters.outbound_cluster(service, TD, 1800.0))
    assert context is not None
    assert context.sni == "books.shop"
    assert peer_ids(context) == accepted
    assert sds_names(context) == SDS_NAMES


# (protocol, trust domain, connection lifetime, expected max_connection_duration)
LIFETIMES: list[tuple[Protocol, str, float | None, float | None]] = [
    ("http", TD, 3600.0, 3600.0),
    ("http", TD, 1.5, 1.5),
    ("tcp", TD, 3600.0, None),  # TCP connections are not pooled requests: no HTTP options
    ("http", "", None, None),
]


@pytest.mark.parametrize(("protocol", "trust_domain", "lifetime", "expected"), LIFETIMES)
def test_pooled_http_connections_do_not_outlive_their_certificates(
        protocol: Protocol, trust_domain: str, lifetime: float | None,
        expected: float | None) -> None:
    service = MeshService(BOOKS, protocol, declared=True, identities=(BOOKS_ID,))
    cluster = clusters.outbound_cluster(service, trust_domain, lifetime)
    assert max_connection_duration(cluster) == expected
    assert (upstream_tls(cluster) is None) == (not trust_domain)


# -- the inbound listener ------------------------------------------------------------------------

def inbound(protocol: Protocol, mode: MtlsMode | None) -> Any:
    return listeners.inbound_listener("10.0.0.1", 15006, 8080, protocol, mode,
                                      trust_domain=TD)


def downstream(chain: Any) -> tls_pb2.DownstreamTlsContext:
    assert chain.transport_socket.name == "envoy.transport_sockets.tls"
    context = tls_context(chain.transport_socket)
    assert isinstance(context, tls_pb2.DownstreamTlsContext)
    return context


@pytest.mark.parametrize("protocol", ["http", "tcp"])
def test_strict_accepts_only_mtls(protocol: Protocol) -> None:
    listener = inbound(protocol, "STRICT")
    [chain] = listener.filter_chains
    context = downstream(chain)
    assert context.require_client_certificate.value is True
    assert sds_names(context) == SDS_NAMES
    assert not listener.listener_filters
    assert not chain.HasField("filter_chain_match"), "no plaintext fallback"


@pytest.mark.parametrize("mode", ["STRICT", "PERMISSIVE"])
def test_a_callee_accepts_any_identity_of_the_trust_domain_and_nothing_else(
        mode: MtlsMode) -> None:
    context = downstream(inbound("http", mode).filter_chains[0])
    default = context.common_tls_context.combined_validation_context.default_validation_context
    [matcher] = default.match_typed_subject_alt_names
    assert matcher.san_type == matcher.URI
    assert matcher.matcher.prefix == f"spiffe://{TD}/", "the slash: not example.org.evil"


def test_a_revocation_changes_the_mtls_filter_chain_so_envoy_drains_its_connections() -> None:
    def chains(mark: str) -> Any:
        return listeners.inbound_listener("10.0.0.1", 15006, 8080, "http", "PERMISSIVE",
                                          trust_domain=TD, revocations=mark).filter_chains
    (secure, plain), (revoked, plain_after) = chains(""), chains("0123abcd")
    assert secure != revoked and plain == plain_after, "only mTLS callers are drained"
    assert revoked.metadata.filter_metadata["tulle"]["revocations"] == "0123abcd"
    assert chains("0123abcd") == chains("0123abcd"), "the same mark, the same chain"


@pytest.mark.parametrize("protocol", ["http", "tcp"])
def test_permissive_sniffs_tls_and_also_accepts_plaintext(protocol: Protocol) -> None:
    listener = inbound(protocol, "PERMISSIVE")
    [inspector] = listener.listener_filters
    assert inspector.name == "envoy.filters.listener.tls_inspector"
    secure, plain = listener.filter_chains
    assert secure.filter_chain_match.transport_protocol == "tls"
    assert downstream(secure).require_client_certificate.value is True
    assert plain.filter_chain_match.transport_protocol == "raw_buffer"
    assert not plain.HasField("transport_socket")
    # Both lead to the application; only the stat prefix differs, so telemetry can tell
    # plaintext callers from mesh callers.
    secure_filter, plain_filter = network_filter(secure), network_filter(plain)
    assert (secure_filter.stat_prefix, plain_filter.stat_prefix) == ("inbound",
                                                                      "inbound_plaintext")
    plain_filter.stat_prefix = secure_filter.stat_prefix
    assert plain_filter == secure_filter, "both lead to the application"


@pytest.mark.parametrize("protocol", ["http", "tcp"])
def test_without_a_trust_domain_the_inbound_listener_is_plaintext(protocol: Protocol) -> None:
    listener = inbound(protocol, None)
    [chain] = listener.filter_chains
    assert not chain.HasField("transport_socket")
    assert not listener.listener_filters


@pytest.mark.parametrize("mode", ["STRICT", "PERMISSIVE"])
def test_the_application_learns_the_callers_verified_id_and_only_that(mode: MtlsMode) -> None:
    for chain in inbound("http", mode).filter_chains:
        manager = network_filter(chain)
        assert isinstance(manager, hcm.HttpConnectionManager)
        # SANITIZE_SET: a header arriving from outside is never passed on.
        assert manager.forward_client_cert_details == hcm.HttpConnectionManager.SANITIZE_SET
        details = manager.set_current_client_cert_details
        assert details.uri
        assert not (details.subject.value or details.cert or details.chain or details.dns)


def test_plaintext_http_drops_any_client_cert_header() -> None:
    manager = network_filter(inbound("http", None).filter_chains[0])
    assert isinstance(manager, hcm.HttpConnectionManager)
    assert manager.forward_client_cert_details == hcm.HttpConnectionManager.SANITIZE


@pytest.mark.parametrize("mode", ["STRICT", "PERMISSIVE", None])
def test_tcp_services_get_no_http_options(mode: MtlsMode | None) -> None:
    for chain in inbound("tcp", mode).filter_chains:
        proxy = network_filter(chain)
        assert isinstance(proxy, tcp_proxy_pb2.TcpProxy)
        assert proxy.cluster == "inbound|8080"
