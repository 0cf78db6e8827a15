"""SDS: a workload's certificate, and the trust bundle every proxy validates peers against."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import (
    common_pb2,
    secret_pb2,
    tls_pb2,
)
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from tulle.xds import names
from tulle.xds.generators.common import ads_source


def identity_secret(chain_pem: str, key_path: str) -> secret_pb2.Secret:
    certificate = common_pb2.TlsCertificate(
        certificate_chain=base_pb2.DataSource(inline_string=chain_pem),
        # A path on the workload's host: Envoy reads the key there. It is never sent.
        private_key=base_pb2.DataSource(filename=key_path))
    return secret_pb2.Secret(name=names.IDENTITY_SECRET, tls_certificate=certificate)


def bundle_secret(bundle_pem: str, crl_pem: str = "") -> secret_pb2.Secret:
    """Peers must chain to the bundle, and their certificate must not be on the issuer's
    revocation list (``crl_pem``: one list per issuer of live workload certificates; see
    tulle.identity.crl). Which SPIFFE IDs are accepted is each side's to say: the callee
    accepts the trust domain (:func:`downstream_tls`), a caller only the service's own
    identities (:func:`upstream_tls`). Envoy's SPIFFE validator would check the trust domain
    here, but it ignores revocation lists."""
    context = common_pb2.CertificateValidationContext(
        trusted_ca=base_pb2.DataSource(inline_string=bundle_pem))
    if crl_pem:
        context.crl.inline_string = crl_pem
        context.only_verify_leaf_cert_crl = True
    return secret_pb2.Secret(name=names.BUNDLE_SECRET, validation_context=context)


_combined = tls_pb2.CommonTlsContext.CombinedCertificateValidationContext


def _sds(name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads_source())


def upstream_tls(sni: str, peer_ids: tuple[str, ...]) -> tls_pb2.UpstreamTlsContext:
    """A caller's side: present our identity, accept only ``peer_ids``."""
    matchers = [common_pb2.SubjectAltNameMatcher(
        san_type=common_pb2.SubjectAltNameMatcher.URI,
        matcher=string_pb2.StringMatcher(exact=peer)) for peer in peer_ids]
    return tls_pb2.UpstreamTlsContext(sni=sni, common_tls_context=tls_pb2.CommonTlsContext(
        tls_certificate_sds_secret_configs=[_sds(names.IDENTITY_SECRET)],
        combined_validation_context=_combined(
            default_validation_context=common_pb2.CertificateValidationContext(
                match_typed_subject_alt_names=matchers),
            validation_context_sds_secret_config=_sds(names.BUNDLE_SECRET))))


def downstream_tls(trust_domain: str) -> tls_pb2.DownstreamTlsContext:
    """A callee's side: present our identity, require a client certificate that chains to
    the bundle and carries a SPIFFE ID of the trust domain."""
    of_the_domain = common_pb2.SubjectAltNameMatcher(
        san_type=common_pb2.SubjectAltNameMatcher.URI,
        matcher=string_pb2.StringMatcher(prefix=f"spiffe://{trust_domain}/"))
    return tls_pb2.DownstreamTlsContext(
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificate_sds_secret_configs=[_sds(names.IDENTITY_SECRET)],
            combined_validation_context=_combined(
                default_validation_context=common_pb2.CertificateValidationContext(
                    match_typed_subject_alt_names=[of_the_domain]),
                validation_context_sds_secret_config=_sds(names.BUNDLE_SECRET))))
