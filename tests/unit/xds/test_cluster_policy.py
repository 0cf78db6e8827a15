"""A service's TrafficPolicy in its callers' cluster (clusters.py): circuit breakers, retry
budget, outlier detection, load balancing, connect and idle timeouts."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from tests.unit.model.traffic import to_service, traffic_policy
from tests.unit.xds.meshes import mesh, service
from tulle.model.mesh import MeshService
from tulle.model.meta import ServiceRef
from tulle.model.policies import NO_POLICY, ServicePolicy
from tulle.model.policy import (
    ConnectionPool,
    LoadBalancer,
    OutlierDetection,
    PolicyTimeouts,
    RetryBudget,
)
from tulle.model.service import Protocol
from tulle.xds.generators.clusters import CONNECT_TIMEOUT_S, outbound_cluster

BOOKS = ServiceRef("default", "books")
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def cluster(policy: ServicePolicy = NO_POLICY, protocol: Protocol = "http",
            lifetime: float | None = None) -> cluster_pb2.Cluster:
    """Plaintext (no trust domain): only the policy's parts are under test."""
    return outbound_cluster(MeshService(BOOKS, protocol, True, policy=policy), "", lifetime)


def http_options(built: cluster_pb2.Cluster) -> http_protocol_options_pb2.HttpProtocolOptions:
    options = http_protocol_options_pb2.HttpProtocolOptions()
    assert built.typed_extension_protocol_options[HTTP_OPTIONS].Unpack(options)
    return options


def test_no_policy_keeps_envoy_defaults() -> None:
    built = cluster()
    assert built.name == "outbound|books.default"
    assert built.connect_timeout.seconds == CONNECT_TIMEOUT_S
    assert built.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    assert list(built.circuit_breakers.thresholds) == []
    assert not built.HasField("outlier_detection")
    assert dict(built.typed_extension_protocol_options) == {}


@pytest.mark.parametrize(("algorithm", "lb_policy"), [
    ("LeastRequest", cluster_pb2.Cluster.LEAST_REQUEST),
    ("RingHash", cluster_pb2.Cluster.RING_HASH),
])
def test_load_balancer(algorithm: str, lb_policy: int) -> None:
    policy = ServicePolicy(load_balancer=LoadBalancer(algorithm))  # type: ignore[arg-type]
    assert cluster(policy).lb_policy == lb_policy


@pytest.mark.parametrize(("pool", "expected"), [
    (ConnectionPool(max_connections=100), {"max_connections": 100}),
    (ConnectionPool(max_pending_requests=5, max_requests=7),
     {"max_pending_requests": 5, "max_requests": 7}),
], ids=["connections", "pending and requests"])
def test_circuit_breakers_set_only_what_the_policy_sets(pool: ConnectionPool,
                                                        expected: dict[str, int]) -> None:
    (thresholds,) = cluster(ServicePolicy(connection_pool=pool)).circuit_breakers.thresholds
    set_fields = {f.name: v.value for f, v in thresholds.ListFields()}
    assert set_fields == expected  # Envoy's 1,024 stays for the others
    assert not thresholds.HasField("retry_budget")


def test_retry_budget_alone_makes_thresholds() -> None:
    policy = ServicePolicy(retry_budget=RetryBudget(percent=12.5, min_retry_concurrency=0))
    (thresholds,) = cluster(policy).circuit_breakers.thresholds
    assert thresholds.retry_budget.budget_percent.value == 12.5
    assert thresholds.retry_budget.HasField("min_retry_concurrency")
    assert thresholds.retry_budget.min_retry_concurrency.value == 0
    assert not thresholds.HasField("max_connections")


def test_outlier_detection_defaults() -> None:
    detection = cluster(ServicePolicy(outlier_detection=OutlierDetection())).outlier_detection
    assert detection.consecutive_5xx.value == 5
    assert detection.interval.seconds == 10
    assert detection.base_ejection_time.seconds == 30
    assert detection.max_ejection_percent.value == 10
    assert not detection.HasField("enforcing_consecutive_5xx")  # Envoy's 100 %
    assert not detection.HasField("consecutive_gateway_failure")
    assert not detection.HasField("enforcing_consecutive_gateway_failure")


def test_outlier_detection_on_gateway_errors_only() -> None:
    detection = cluster(ServicePolicy(outlier_detection=OutlierDetection(
        consecutive_5xx=None, consecutive_gateway_errors=3, interval="500ms",
        base_ejection_time="1m", max_ejection_percent=100))).outlier_detection
    assert detection.consecutive_gateway_failure.value == 3
    # Envoy counts gateway failures but enforces them at 0 % unless told otherwise.
    assert detection.HasField("enforcing_consecutive_gateway_failure")
    assert detection.enforcing_consecutive_gateway_failure.value == 100
    # 5xx in a row switched off: counted at Envoy's default of 5, never enforced.
    assert not detection.HasField("consecutive_5xx")
    assert detection.HasField("enforcing_consecutive_5xx")
    assert detection.enforcing_consecutive_5xx.value == 0
    assert (detection.interval.seconds, detection.interval.nanos) == (0, 500_000_000)
    assert detection.base_ejection_time.seconds == 60
    assert detection.max_ejection_percent.value == 100


@pytest.mark.parametrize(("timeouts", "connect"), [
    (PolicyTimeouts(connect="250ms"), (0, 250_000_000)),
    (PolicyTimeouts(idle="5m"), (2, 0)),  # idle only: the default connect timeout
], ids=["ms", "idle only"])
def test_connect_timeout(timeouts: PolicyTimeouts, connect: tuple[int, int]) -> None:
    built = cluster(ServicePolicy(timeouts=timeouts))
    assert (built.connect_timeout.seconds, built.connect_timeout.nanos) == connect


@pytest.mark.parametrize(("idle", "lifetime", "expected"), [
    ("5m", None, {"idle_timeout": 300}),
    ("90s", 600.0, {"idle_timeout": 90, "max_connection_duration": 600}),
], ids=["idle", "idle and certificate lifetime"])
def test_http_connection_options(idle: str | None, lifetime: float | None,
                                 expected: dict[str, int]) -> None:
    options = http_options(cluster(ServicePolicy(timeouts=PolicyTimeouts(idle=idle)),
                                   lifetime=lifetime))
    assert options.explicit_http_config.HasField("http_protocol_options")
    common = options.common_http_protocol_options
    assert {f.name: v.seconds for f, v in common.ListFields()} == expected


@pytest.mark.parametrize(("idle", "protocol", "lifetime"), [
    ("0s", "http", None),  # 0: Envoy's default stays
    (None, "tcp", 600.0),  # HTTP options mean nothing to a TCP service
], ids=["idle 0s", "tcp"])
def test_no_http_connection_options(idle: str | None, protocol: Protocol,
                                    lifetime: float | None) -> None:
    built = cluster(ServicePolicy(timeouts=PolicyTimeouts(idle=idle)), protocol, lifetime)
    assert dict(built.typed_extension_protocol_options) == {}


def test_policy_from_a_manifest_reaches_the_cluster() -> None:
    snapshot = mesh(1, [], [service("books"), traffic_policy(
        "books", to_service(), connectionPool={"maxRequests": 9},
        outlierDetection={"consecutiveGatewayErrors": 2},
        loadBalancer={"algorithm": "RingHash", "hashKey": {"cookie": "s"}},
        timeouts={"connect": "3s"})])
    built = outbound_cluster(snapshot.services[BOOKS], "")
    assert built.lb_policy == cluster_pb2.Cluster.RING_HASH
    assert built.connect_timeout.seconds == 3
    assert built.circuit_breakers.thresholds[0].max_requests.value == 9
    assert built.outlier_detection.consecutive_5xx.value == 5
    assert built.outlier_detection.enforcing_consecutive_gateway_failure.value == 100


@pytest.mark.parametrize(("protocol", "lifetime", "upstream"), [
    ("http", None, None),  # Envoy's default: HTTP/1.1, nothing to say
    ("http", 60.0, "http_protocol_options"),
    ("http2", None, "http2_protocol_options"),
    ("grpc", None, "http2_protocol_options"),
    ("grpc", 60.0, "http2_protocol_options"),
    ("tcp", 60.0, None),
])
def test_the_protocol_between_sidecars(protocol: Protocol, lifetime: float | None,
                                       upstream: str | None) -> None:
    built = cluster(protocol=protocol, lifetime=lifetime)
    if upstream is None:
        assert HTTP_OPTIONS not in built.typed_extension_protocol_options
        return
    options = http_options(built)
    assert options.explicit_http_config.WhichOneof("protocol_config") == upstream
    if lifetime:
        assert options.common_http_protocol_options.max_connection_duration.seconds == lifetime


@pytest.mark.parametrize(("protocol", "detected", "config"), [
    ("http", False, None),  # declared http: Envoy's default, HTTP/1.1
    ("http", True, "use_downstream_protocol_config"),  # undeclared: the caller's version
    ("http2", False, "explicit_http_config"),
    ("grpc", False, "explicit_http_config"),
    ("tcp", True, None),
])
def test_the_protocol_to_the_application(protocol: Protocol, detected: bool,
                                         config: str | None) -> None:
    from tulle.xds.generators.clusters import inbound_cluster

    built = inbound_cluster(8080, protocol, detected)
    assert (HTTP_OPTIONS in built.typed_extension_protocol_options) is (config is not None)
    if config is not None:
        options = http_options(built)
        assert options.WhichOneof("upstream_protocol_options") == config
        if config == "explicit_http_config":
            assert options.explicit_http_config.HasField("http2_protocol_options")


def test_an_undeclared_protocol_follows_the_callers_http_version() -> None:
    built = outbound_cluster(MeshService(BOOKS, "http", False, detected=True), "")
    follow = http_options(built).use_downstream_protocol_config
    assert follow.HasField("http_protocol_options") and follow.HasField("http2_protocol_options")
