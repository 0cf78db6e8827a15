"""CDS: one EDS cluster per mesh service, and one static cluster for the local application."""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import wrappers_pb2

from tulle.identity.spiffe import spiffe_id
from tulle.model.durations import parse_duration
from tulle.model.mesh import MeshService
from tulle.model.policies import ServicePolicy
from tulle.model.policy import OutlierDetection
from tulle.model.service import Protocol, is_http, is_http2
from tulle.xds import names
from tulle.xds.generators.common import ads_source, pack, seconds, socket_address, tls_socket
from tulle.xds.generators.secrets import upstream_tls

CONNECT_TIMEOUT_S = 2.0
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
LOCAL_APP_HOST = "127.0.0.1"


def outbound_cluster(service: MeshService, trust_domain: str,
                     connection_lifetime_s: float | None = None) -> cluster_pb2.Cluster:
    """Without a trust domain (no CA, as in some unit tests) sidecars speak plaintext.

    ``connection_lifetime_s`` bounds how long a pooled HTTP connection lives: a new
    certificate or trust bundle applies to new handshakes only, so no connection may outlive
    the certificates it was made with by much.

    The service's TrafficPolicy sets the pool limits, retry budget, outlier detection, load
    balancing and timeouts.
    """
    policy = service.policy
    timeouts = policy.timeouts
    connect = parse_duration(timeouts.connect) if timeouts and timeouts.connect else None
    balancer = policy.load_balancer
    cluster = cluster_pb2.Cluster(
        name=names.outbound_cluster(service.ref),
        alt_stat_name=names.outbound_stat_name(service.ref),
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=ads_source()),
        connect_timeout=seconds(connect or CONNECT_TIMEOUT_S),
        lb_policy=_LB[balancer.algorithm if balancer else "RoundRobin"],
    )
    if trust_domain:
        # Before any instance registers, expect the identity of the default service account:
        # an empty list would accept any identity of the trust domain.
        peers = service.identities or (
            spiffe_id(trust_domain, service.ref.namespace, service.ref.name),)
        cluster.transport_socket.CopyFrom(tls_socket(upstream_tls(service.ref.host, peers)))
    if policy.connection_pool is not None or policy.retry_budget is not None:
        cluster.circuit_breakers.thresholds.append(_thresholds(policy))
    if policy.outlier_detection is not None:
        cluster.outlier_detection.CopyFrom(_outlier(policy.outlier_detection))
    idle = parse_duration(timeouts.idle) if timeouts and timeouts.idle else None
    if service.detected or is_http2(service.protocol) or (
            is_http(service.protocol) and (connection_lifetime_s or idle)):
        common = protocol_pb2.HttpProtocolOptions()
        if connection_lifetime_s:
            common.max_connection_duration.CopyFrom(seconds(connection_lifetime_s))
        if idle:
            common.idle_timeout.CopyFrom(seconds(idle))
        cluster.typed_extension_protocol_options[_HTTP_OPTIONS].CopyFrom(
            pack(_http_options(is_http2(service.protocol), common, service.detected)))
    return cluster


def _http_options(http2: bool, common: protocol_pb2.HttpProtocolOptions | None = None,
                  detected: bool = False) -> http_protocol_options_pb2.HttpProtocolOptions:
    """HTTP/1.1 or HTTP/2 to the upstream, or (``detected``) whichever the request came in
    with. Over HTTP/2 each request is balanced on its own: one client connection spreads
    over every instance."""
    options = http_protocol_options_pb2.HttpProtocolOptions()
    if detected:
        follow = options.use_downstream_protocol_config
        follow.http_protocol_options.CopyFrom(protocol_pb2.Http1ProtocolOptions())
        follow.http2_protocol_options.CopyFrom(protocol_pb2.Http2ProtocolOptions())
    elif http2:
        options.explicit_http_config.http2_protocol_options.CopyFrom(
            protocol_pb2.Http2ProtocolOptions())
    else:
        options.explicit_http_config.http_protocol_options.CopyFrom(
            protocol_pb2.Http1ProtocolOptions())
    if common is not None:
        options.common_http_protocol_options.CopyFrom(common)
    return options


_LB = {"RoundRobin": cluster_pb2.Cluster.ROUND_ROBIN,
       "LeastRequest": cluster_pb2.Cluster.LEAST_REQUEST,
       "Random": cluster_pb2.Cluster.RANDOM, "RingHash": cluster_pb2.Cluster.RING_HASH}


def _thresholds(policy: ServicePolicy) -> circuit_breaker_pb2.CircuitBreakers.Thresholds:
    """Only what the policy sets; Envoy's defaults (1,024 each) stay for the rest."""
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds()
    pool = policy.connection_pool
    if pool is not None:
        for field, value in (("max_connections", pool.max_connections),
                             ("max_pending_requests", pool.max_pending_requests),
                             ("max_requests", pool.max_requests)):
            if value is not None:
                getattr(thresholds, field).value = value
    budget = policy.retry_budget
    if budget is not None:
        # A budget replaces the fixed cap of 3 concurrent retries.
        thresholds.retry_budget.budget_percent.value = budget.percent
        thresholds.retry_budget.min_retry_concurrency.value = budget.min_retry_concurrency
    return thresholds


def _outlier(detection: OutlierDetection) -> outlier_detection_pb2.OutlierDetection:
    out = outlier_detection_pb2.OutlierDetection(
        interval=seconds(parse_duration(detection.interval) or 10.0),
        base_ejection_time=seconds(parse_duration(detection.base_ejection_time) or 30.0),
        max_ejection_percent=wrappers_pb2.UInt32Value(value=detection.max_ejection_percent),
    )
    if detection.consecutive_5xx is not None:
        out.consecutive_5xx.value = detection.consecutive_5xx
    else:
        out.enforcing_consecutive_5xx.value = 0
    if detection.consecutive_gateway_errors is not None:
        # Counted but not enforced unless asked: say so explicitly.
        out.consecutive_gateway_failure.value = detection.consecutive_gateway_errors
        out.enforcing_consecutive_gateway_failure.value = 100
    return out


def inbound_cluster(app_port: int, protocol: Protocol = "http", detected: bool = True,
                    upgrades: bool = False) -> cluster_pb2.Cluster:
    """The application behind this sidecar, always on loopback: HTTP/2 without TLS (h2c)
    for http2 and grpc services; for a service without a declared protocol, the HTTP
    version of each request (HTTP/1.1, or h2c when the caller spoke h2c).

    ``upgrades``: the same application under the name upgraded connections (WebSocket) are
    routed to, so that Envoy counts their connections, bytes and durations apart."""
    name = names.inbound_upgrade_cluster(app_port) if upgrades else \
        names.inbound_cluster(app_port)
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=socket_address(LOCAL_APP_HOST,
                                                                         app_port)))
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=seconds(CONNECT_TIMEOUT_S),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
    )
    if is_http2(protocol) or (detected and is_http(protocol)):
        cluster.typed_extension_protocol_options[_HTTP_OPTIONS].CopyFrom(
            pack(_http_options(is_http2(protocol), detected=detected and not is_http2(protocol))))
    return cluster
