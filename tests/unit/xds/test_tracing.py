"""Tracing (generators/tracing.py): the OpenTelemetry tracer on every HTTP connection manager,
the collector's cluster over CDS, and how the compiler switches both with the Mesh."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.trace.v3 import opentelemetry_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.tracers.opentelemetry.resource_detectors.v3 import (
    static_config_resource_detector_pb2 as static_detector,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from tests.unit.xds import consistency
from tests.unit.xds.envoy_side import CDS, LDS
from tests.unit.xds.meshes import Manifest, mesh, proxy, service, workload
from tulle.model.meta import ServiceRef
from tulle.model.tracing import OtlpExporter, TracingSettings
from tulle.xds import names
from tulle.xds.compiler import ConfigCompiler
from tulle.xds.config import ProxyConfig
from tulle.xds.generators import listeners
from tulle.xds.generators.tracing import (
    ProxyTracing,
    collector_cluster,
    http_tracing,
    proxy_tracing,
)

BOOKS = ServiceRef("shop", "books")
COLLECTOR = names.TRACING_COLLECTOR_CLUSTER


def tracer_of(tracing: hcm.HttpConnectionManager.Tracing) -> opentelemetry_pb2.OpenTelemetryConfig:
    assert tracing.provider.name == "envoy.tracers.opentelemetry"
    config = opentelemetry_pb2.OpenTelemetryConfig()
    assert tracing.provider.typed_config.Unpack(config)
    return config


@pytest.mark.parametrize("percent", [100.0, 25.0, 0.1, 0.0])
def test_http_tracing(percent: float) -> None:
    tracing = http_tracing(ProxyTracing(BOOKS, percent))
    assert tracing.random_sampling.value == percent
    # Envoy's defaults stay: a request with x-client-trace-id or x-envoy-force-trace is traced.
    assert not tracing.HasField("client_sampling") and not tracing.HasField("overall_sampling")
    assert not tracing.HasField("spawn_upstream_span")  # one span per sidecar and request
    tracer = tracer_of(tracing)
    assert tracer.grpc_service.envoy_grpc.cluster_name == COLLECTOR
    assert tracer.service_name == "books"
    [detector] = tracer.resource_detectors
    attributes = static_detector.StaticConfigResourceDetectorConfig()
    assert detector.typed_config.Unpack(attributes)
    assert dict(attributes.attributes) == {"service.namespace": "shop"}


def test_proxy_tracing_is_none_when_the_mesh_does_not_trace() -> None:
    assert proxy_tracing(None, BOOKS) is None
    assert proxy_tracing(TracingSettings(OtlpExporter("otel:4317"), 5), BOOKS) == \
        ProxyTracing(BOOKS, 5)


HTTP2 = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
STATIC, STRICT_DNS = cluster_pb2.Cluster.STATIC, cluster_pb2.Cluster.STRICT_DNS


@pytest.mark.parametrize(("address", "kind", "host", "port"), [
    ("127.0.0.1:4317", STATIC, "127.0.0.1", 4317),
    ("[::1]:4318", STATIC, "::1", 4318),
    ("otel-collector.observability:4317", STRICT_DNS, "otel-collector.observability", 4317),
    ("localhost:55680", STRICT_DNS, "localhost", 55680),
], ids=["IPv4", "IPv6", "DNS name", "localhost"])
def test_collector_cluster(address: str, kind: Any, host: str, port: int) -> None:
    cluster = collector_cluster(address)
    assert cluster.name == COLLECTOR and cluster.type == kind
    assert cluster.load_assignment.cluster_name == COLLECTOR
    [locality] = cluster.load_assignment.endpoints
    [endpoint] = locality.lb_endpoints
    socket = endpoint.endpoint.address.socket_address
    assert (socket.address, socket.port_value) == (host, port)
    # A name resolves to IPv4 first: Envoy's default would try ::1 for localhost.
    assert cluster.dns_lookup_family == (cluster_pb2.Cluster.V4_PREFERRED if kind == STRICT_DNS
                                         else cluster_pb2.Cluster.AUTO)
    options = http_protocol_options_pb2.HttpProtocolOptions()
    assert cluster.typed_extension_protocol_options[HTTP2].Unpack(options)
    assert options.explicit_http_config.HasField("http2_protocol_options")  # gRPC
    assert not cluster.HasField("transport_socket")  # plaintext


# -- in the listeners ----------------------------------------------------------------------------

def managers(listener: Any) -> list[hcm.HttpConnectionManager]:
    found = []
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            manager = hcm.HttpConnectionManager()
            if network_filter.typed_config.Unpack(manager):
                found.append(manager)
    return found


TRACED = ProxyTracing(BOOKS, 10.0)
LISTENERS = [
    ("outbound", lambda t: listeners.outbound_listener(15001, t), 1),
    ("inbound, STRICT", lambda t: listeners.inbound_listener(
        "10.0.0.1", 15006, 8080, "http", "STRICT", None, t), 1),
    ("inbound, PERMISSIVE: both chains", lambda t: listeners.inbound_listener(
        "10.0.0.1", 15006, 8080, "http", "PERMISSIVE", None, t), 2),
    ("inbound without a CA", lambda t: listeners.inbound_listener(
        "10.0.0.1", 15006, 8080, "http", None, None, t), 1),
    ("--upstream", lambda t: listeners.upstream_listener(9000, BOOKS, "http", t), 1),
    ("inbound tcp: no HTTP", lambda t: listeners.inbound_listener(
        "10.0.0.1", 15006, 8080, "tcp", "STRICT", None, t), 0),
]


@pytest.mark.parametrize(("build", "count"), [c[1:] for c in LISTENERS],
                         ids=[c[0] for c in LISTENERS])
def test_every_http_manager_traces_only_when_asked(build: Any, count: int) -> None:
    traced = managers(build(TRACED))
    assert len(traced) == count
    assert all(m.tracing == http_tracing(TRACED) for m in traced)
    untraced = managers(build(None))
    assert len(untraced) == count
    assert not any(m.HasField("tracing") for m in untraced)


# -- compiled ------------------------------------------------------------------------------------

def mesh_settings(spec: dict[str, Any]) -> Manifest:
    return {"apiVersion": "tulle.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "default"},
            "spec": spec}


def traced(address: str = "127.0.0.1:4317", percent: float = 100) -> Manifest:
    return mesh_settings({"tracing": {"otlp": {"address": address}, "samplingPercent": percent}})


WORKLOADS = [workload("books-1"), workload("web-1", app_port=None, upstreams={"books": 9000})]


def compile_for(node_id: str, manifests: list[Manifest], version: int = 1,
                compiler: ConfigCompiler | None = None) -> ProxyConfig:
    snapshot = mesh(version, WORKLOADS, [service("books"), *manifests])
    return (compiler or ConfigCompiler()).compile(snapshot, proxy(snapshot, node_id))


def all_managers(compiled: ProxyConfig) -> list[hcm.HttpConnectionManager]:
    return [m for listener in consistency.decoded(compiled, LDS).values()
            for m in managers(listener)]


@pytest.mark.parametrize("node_id", ["books-1.default", "web-1.default"])
def test_off_by_default_nothing_about_tracing(node_id: str) -> None:
    for manifests in ([], [mesh_settings({})]):
        compiled = compile_for(node_id, manifests)
        assert COLLECTOR not in compiled.of_type(CDS)
        assert not any(m.HasField("tracing") for m in all_managers(compiled))


@pytest.mark.parametrize(("node_id", "service_name", "listener_names"), [
    ("books-1.default", "books", {"outbound", "inbound"}),
    ("web-1.default", "web", {"outbound", "upstream|9000"}),
])
def test_on_every_http_listener_traces_as_its_service(node_id: str, service_name: str,
                                                      listener_names: set[str]) -> None:
    compiled = compile_for(node_id, [traced(percent=12.5)])
    assert consistency.problems(compiled) == []
    assert set(compiled.of_type(LDS)) == listener_names
    assert consistency.decoded(compiled, CDS)[COLLECTOR] == collector_cluster("127.0.0.1:4317")
    found = all_managers(compiled)
    assert len(found) == len(listener_names)
    expected = http_tracing(ProxyTracing(ServiceRef("default", service_name), 12.5))
    assert all(m.tracing == expected for m in found)


def changed(before: ProxyConfig, after: ProxyConfig) -> set[tuple[str, str]]:
    return {(t, n) for t in (CDS, LDS) for n in set(before.of_type(t)) | set(after.of_type(t))
            if before.of_type(t).get(n) is not after.of_type(t).get(n)}


CHANGES = [
    ("switched on", [], [traced()],
     {(CDS, COLLECTOR), (LDS, "outbound"), (LDS, "upstream|9000")}),
    ("switched off", [traced()], [],
     {(CDS, COLLECTOR), (LDS, "outbound"), (LDS, "upstream|9000")}),
    ("collector moved: only its cluster", [traced()], [traced("otel.example:4317")],
     {(CDS, COLLECTOR)}),
    ("sampling changed: only the listeners", [traced()], [traced(percent=1)],
     {(LDS, "outbound"), (LDS, "upstream|9000")}),
    ("unchanged", [traced()], [traced()], set()),
]


@pytest.mark.parametrize(("before", "after", "expected"), [c[1:] for c in CHANGES],
                         ids=[c[0] for c in CHANGES])
def test_a_mesh_change_rebuilds_only_what_it_touches(before: list[Manifest],
                                                     after: list[Manifest],
                                                     expected: set[tuple[str, str]]) -> None:
    compiler = ConfigCompiler()
    first = compile_for("web-1.default", before, 1, compiler)
    second = compile_for("web-1.default", after, 2, compiler)
    assert changed(first, second) == expected
    assert consistency.problems(second) == []


def test_sidecars_of_one_service_share_their_traced_listeners() -> None:
    compiler = ConfigCompiler()
    snapshot = mesh(1, [workload("web-1", app_port=None), workload("web-2", app_port=None),
                        workload("admin-1", service="admin", app_port=None)], [traced()])
    web_1, web_2, admin = (compiler.compile(snapshot, proxy(snapshot, f"{name}.default"))
                           for name in ("web-1", "web-2", "admin-1"))
    assert web_1.of_type(LDS)["outbound"] is web_2.of_type(LDS)["outbound"]
    # service.name differs, so the listener does too.
    assert web_1.of_type(LDS)["outbound"] is not admin.of_type(LDS)["outbound"]
    assert web_1.of_type(CDS)[COLLECTOR] is admin.of_type(CDS)[COLLECTOR]
