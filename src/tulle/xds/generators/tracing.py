"""Tracing: the OpenTelemetry tracer of every HTTP connection manager, and the cluster of the
OTLP/gRPC collector it exports spans to.

The span kind follows the listener's traffic direction: the outbound and ``--upstream``
listeners (OUTBOUND) make CLIENT spans, the inbound listener (INBOUND) makes SERVER spans. Each
span's context goes on as a W3C ``traceparent``/``tracestate`` header, so one request through
two sidecars is one trace: the caller's CLIENT span is the parent of the callee's SERVER span.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import extension_pb2, grpc_service_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.trace.v3 import http_tracer_pb2, opentelemetry_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.tracers.opentelemetry.resource_detectors.v3 import (
    static_config_resource_detector_pb2 as static_detector,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import percent_pb2

from tulle.model.meta import ServiceRef
from tulle.model.tracing import TracingSettings, parse_host_port
from tulle.xds import names
from tulle.xds.generators.common import pack, seconds, socket_address

OPENTELEMETRY_TRACER = "envoy.tracers.opentelemetry"
STATIC_RESOURCE_DETECTOR = "envoy.tracers.opentelemetry.resource_detectors.static_config"
CONNECT_TIMEOUT_S = 2.0
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@dataclass(frozen=True)
class ProxyTracing:
    """What one sidecar's tracer needs: whose spans they are, and how many requests to trace."""

    service: ServiceRef
    sampling_percent: float


def proxy_tracing(settings: TracingSettings | None, service: ServiceRef) -> ProxyTracing | None:
    """The tracer of a sidecar of ``service``, or None when the mesh does not trace."""
    if settings is None:
        return None
    return ProxyTracing(service, settings.sampling_percent)


def http_tracing(tracing: ProxyTracing) -> hcm.HttpConnectionManager.Tracing:
    """The ``tracing`` of an HTTP connection manager."""
    tracer = opentelemetry_pb2.OpenTelemetryConfig(
        grpc_service=grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                cluster_name=names.TRACING_COLLECTOR_CLUSTER)),
        # The resource attribute service.name of every span this sidecar exports.
        service_name=tracing.service.name,
        resource_detectors=[extension_pb2.TypedExtensionConfig(
            name=STATIC_RESOURCE_DETECTOR,
            typed_config=pack(static_detector.StaticConfigResourceDetectorConfig(
                attributes={"service.namespace": tracing.service.namespace})))],
    )
    return hcm.HttpConnectionManager.Tracing(
        provider=http_tracer_pb2.Tracing.Http(name=OPENTELEMETRY_TRACER,
                                              typed_config=pack(tracer)),
        # Envoy draws this from the x-request-id, so a request that keeps its id gets the same
        # decision in every sidecar. A span is kept when the decision says so and the incoming
        # traceparent, if any, is sampled.
        random_sampling=percent_pb2.Percent(value=tracing.sampling_percent),
    )


def collector_cluster(address: str) -> cluster_pb2.Cluster:
    """The OTLP/gRPC collector at ``address`` (host:port, already validated): gRPC needs
    HTTP/2, and a DNS name is resolved (and re-resolved) by Envoy."""
    target = parse_host_port(address)
    name = names.TRACING_COLLECTOR_CLUSTER
    endpoint = endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(
        address=socket_address(target.host, target.port)))
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC if target.is_ip else cluster_pb2.Cluster.STRICT_DNS,
        connect_timeout=seconds(CONNECT_TIMEOUT_S),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])]),
    )
    if not target.is_ip:
        # Envoy's default (AUTO) tries IPv6 first: "localhost" would become ::1, where a
        # collector listening on 127.0.0.1 is not.
        cluster.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
    options = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()))
    cluster.typed_extension_protocol_options[_HTTP_OPTIONS].CopyFrom(pack(options))
    return cluster
