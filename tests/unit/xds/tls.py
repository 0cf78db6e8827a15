"""Read back the TLS parts of generated Envoy config: transport sockets, SAN matchers, XFCC."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from tests.unit.xds.consistency import tls_context
from tulle.xds import names

HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
SDS_NAMES = (names.IDENTITY_SECRET, names.BUNDLE_SECRET)


def upstream_tls(cluster: cluster_pb2.Cluster) -> tls_pb2.UpstreamTlsContext | None:
    if not cluster.HasField("transport_socket"):
        return None
    assert cluster.transport_socket.name == "envoy.transport_sockets.tls"
    context = tls_context(cluster.transport_socket)
    assert isinstance(context, tls_pb2.UpstreamTlsContext)
    return context


def peer_ids(context: tls_pb2.UpstreamTlsContext) -> list[str]:
    """The SPIFFE IDs a caller accepts; fails on any matcher that is not an exact URI."""
    validation = context.common_tls_context.combined_validation_context
    assert not validation.default_validation_context.match_subject_alt_names, "deprecated field"
    out = []
    for matcher in validation.default_validation_context.match_typed_subject_alt_names:
        assert matcher.san_type == common_pb2.SubjectAltNameMatcher.URI
        assert matcher.matcher.WhichOneof("match_pattern") == "exact"
        out.append(matcher.matcher.exact)
    return out


def sds_names(context: Any) -> tuple[str, str]:
    """(certificate secret, validation secret) a TLS context reads over SDS."""
    common = context.common_tls_context
    [certificate] = common.tls_certificate_sds_secret_configs
    assert certificate.sds_config.HasField("ads")
    if common.HasField("combined_validation_context"):
        validation = common.combined_validation_context.validation_context_sds_secret_config
    else:
        validation = common.validation_context_sds_secret_config
    assert validation.sds_config.HasField("ads")
    return certificate.name, validation.name


def max_connection_duration(cluster: cluster_pb2.Cluster) -> float | None:
    """Seconds a pooled HTTP connection may live, or None when the cluster sets no limit."""
    if HTTP_OPTIONS not in cluster.typed_extension_protocol_options:
        return None
    options = http_protocol_options_pb2.HttpProtocolOptions()
    cluster.typed_extension_protocol_options[HTTP_OPTIONS].Unpack(options)
    if not options.common_http_protocol_options.HasField("max_connection_duration"):
        return None  # protocol options only (HTTP/2, or the caller's version)
    duration = options.common_http_protocol_options.max_connection_duration
    return float(duration.seconds + duration.nanos / 1e9)


def network_filter(chain: Any) -> hcm.HttpConnectionManager | tcp_proxy_pb2.TcpProxy:
    [only] = chain.filters
    message: Any
    if only.name == "envoy.filters.network.http_connection_manager":
        message = hcm.HttpConnectionManager()
    else:
        assert only.name == "envoy.filters.network.tcp_proxy"
        message = tcp_proxy_pb2.TcpProxy()
    assert only.typed_config.Unpack(message)
    return message
