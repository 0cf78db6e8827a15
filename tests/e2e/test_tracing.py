"""Distributed tracing through real sidecars: W3C trace context from one sidecar to the next,
and spans exported to a real OTLP/gRPC collector that the test runs.

Envoy's OpenTelemetry tracer exports when it holds 5 spans, otherwise every 5 s (runtime
``tracing.opentelemetry.min_flush_spans`` and ``flush_interval_ms``): waits for spans allow
for the timer, and tests that want spans quickly send 5 requests.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.http import request
from tests.support.mesh import Mesh, Workload, wait_for
from tests.support.otlp import OtlpCollector, ReceivedSpan
from tulle.xds import names

pytestmark = pytest.mark.envoy

TRACING = """\
apiVersion: tulle.io/v1alpha1
kind: Mesh
metadata: {{name: default}}
spec:
  tracing:
    otlp: {{address: "{address}"}}
    samplingPercent: {percent}
"""
NO_TRACING = """\
apiVersion: tulle.io/v1alpha1
kind: Mesh
metadata: {name: default}
spec: {}
"""
SIDECARS = ("web-1", "books-1")
SPANS_TIMEOUT = 30.0  # the 5 s export timer, with room for a slow machine
HCM = "envoy.filters.network.http_connection_manager"
BOOKS_CONNECTIONS = "cluster.outbound|books|default.upstream_cx_active"


@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    instance = OtlpCollector()
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@dataclass(frozen=True)
class TraceParent:
    trace_id: str
    parent_id: str
    sampled: bool

    @classmethod
    def parse(cls, header: str) -> TraceParent:
        version, trace_id, parent_id, flags = header.split("-")
        assert version == "00" and len(trace_id) == 32 and len(parent_id) == 16, header
        return cls(trace_id, parent_id, int(flags, 16) & 1 == 1)


def start(mesh: Mesh) -> Workload:
    mesh.run("books", name="books-1")
    web = mesh.run("web", name="web-1")
    mesh.wait_endpoints("web-1", "books", {"books-1"})
    return web


def tracing_mesh(address: str, percent: float = 100) -> str:
    return TRACING.format(address=address, percent=percent)


def set_tracing(mesh: Mesh, collector: OtlpCollector | None) -> None:
    """Apply the Mesh, and wait until both sidecars serve with it (no listener warming)."""
    mesh.cli("apply", "-f", "-",
             stdin=tracing_mesh(collector.address) if collector else NO_TRACING)
    mesh.sync()
    on = collector is not None
    for name in SIDECARS:
        wait_for(f"{name} to serve with tracing {'on' if on else 'off'}",
                 functools.partial(serves_with_tracing, mesh, name, on))
    # A connection keeps the listener config it was accepted with: web's pooled connections
    # to books still end in books' old config until its drain time closes them.
    wait_for("web's connections to books from before the change to close",
             lambda: mesh.stats("web-1").get(BOOKS_CONNECTIONS, 0) == 0)


def serves_with_tracing(mesh: Mesh, name: str, on: bool) -> bool:
    return sidecar_traces(mesh, name) is on


def sidecar_traces(mesh: Mesh, name: str) -> bool | None:
    """True when every HTTP listener of the sidecar traces and the collector's cluster is
    there; False when no tracing config is anywhere (listeners, clusters, bootstrap); None in
    between, or while a listener warms."""
    dump = json.loads(mesh.admin(name, "config_dump"))
    sections = dump["configs"]
    listeners = [listener for section in sections
                 for listener in section.get("dynamic_listeners", [])]
    if any("active_state" not in listener or "warming_state" in listener
           for listener in listeners):
        return None
    managers = [network_filter["typed_config"] for listener in listeners
                for chain in listener["active_state"]["listener"]["filter_chains"]
                for network_filter in chain["filters"] if network_filter["name"] == HCM]
    clusters = {cluster["cluster"]["name"] for section in sections
                for cluster in (*section.get("static_clusters", []),
                                *section.get("dynamic_active_clusters", []),
                                *section.get("dynamic_warming_clusters", []))}
    has_collector = names.TRACING_COLLECTOR_CLUSTER in clusters
    tracers = [manager.get("tracing", {}).get("provider", {}).get("name")
               for manager in managers]
    in_bootstrap = any("tracing" in section.get("bootstrap", {}) for section in sections)
    if not has_collector and not any(tracers) and not in_bootstrap:
        return False
    if managers and has_collector and all(t == "envoy.tracers.opentelemetry" for t in tracers):
        return True
    return None


def traceparent_at_books(mesh: Mesh, web: Workload, path: str) -> TraceParent | None:
    """Make web's application call books; the traceparent books' application received."""
    reply = mesh.call(web, f"http://books{path}")
    assert reply["status"] == 200 and reply["body"]["workload"] == "books-1", reply
    header = reply["body"]["headers"].get("traceparent")
    return TraceParent.parse(header) if header else None


def spans_of(collector: OtlpCollector, trace_id: str) -> list[ReceivedSpan]:
    return [span for span in collector.spans() if span.trace_id == trace_id]


def client_and_server(collector: OtlpCollector,
                      trace_id: str) -> tuple[ReceivedSpan, ReceivedSpan] | None:
    """web's CLIENT span and books' SERVER span of one trace, once both have arrived."""
    spans = spans_of(collector, trace_id)
    clients = [s for s in spans if s.service == "web" and s.kind == "CLIENT"]
    servers = [s for s in spans if s.service == "books" and s.kind == "SERVER"]
    if not clients or not servers:
        return None
    assert len(spans) == 2, spans
    return clients[0], servers[0]


def test_a_request_through_two_sidecars_is_one_trace(mesh: Mesh,
                                                     collector: OtlpCollector) -> None:
    web = start(mesh)
    set_tracing(mesh, collector)
    contexts = [traceparent_at_books(mesh, web, f"/books/{i}") for i in range(5)]
    assert all(contexts), contexts
    first = contexts[0]
    assert first is not None and first.sampled
    assert len({c.trace_id for c in contexts if c}) == 5, "every request starts its own trace"

    client, server = wait_for("web's client span and books' server span",
                              lambda: client_and_server(collector, first.trace_id),
                              SPANS_TIMEOUT)
    # web's application sent no traceparent: web's sidecar started the trace.
    assert client.parent_span_id == ""
    assert server.parent_span_id == client.span_id
    # The application behind books is a child of books' server span.
    assert first.parent_id == server.span_id
    assert client.attributes["node_id"] == "web-1.default"
    assert server.attributes["node_id"] == "books-1.default"
    assert client.attributes["http.url"] == server.attributes["http.url"] == "http://books/books/0"
    assert client.attributes["guid:x-request-id"] == server.attributes["guid:x-request-id"]
    assert client.resource["service.namespace"] == server.resource["service.namespace"] == \
        "default"


def test_an_application_that_forwards_traceparent_joins_its_trace(
        mesh: Mesh, collector: OtlpCollector) -> None:
    """What docs/observability.md asks of applications: web's application, itself called
    with a traceparent, forwards it on its own call to books."""
    start(mesh)
    set_tracing(mesh, collector)
    outbound = mesh.workload("web-1")["outboundPort"]
    trace_id, app_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    replies = [request(outbound, f"http://books/joined/{i}", headers={
        "traceparent": f"00-{trace_id if i == 0 else f'{i:032x}'}-{app_span}-01",
        "tracestate": "vendor=value"}) for i in range(5)]
    assert all(r.status == 200 for r in replies), replies
    received = replies[0].body["headers"]
    assert TraceParent.parse(received["traceparent"]).trace_id == trace_id
    assert received["tracestate"] == "vendor=value"

    client, server = wait_for("the spans of the application's trace",
                              lambda: client_and_server(collector, trace_id), SPANS_TIMEOUT)
    assert client.parent_span_id == app_span
    assert server.parent_span_id == client.span_id


def test_tracing_is_off_by_default_and_follows_the_mesh_live(mesh: Mesh,
                                                             collector: OtlpCollector) -> None:
    web = start(mesh)
    pids = {w["name"]: w["pid"] for w in mesh.api.get("/v1/workloads")}
    for name in SIDECARS:
        assert sidecar_traces(mesh, name) is False, "no tracing config at all by default"
    assert traceparent_at_books(mesh, web, "/untraced/before") is None

    set_tracing(mesh, collector)
    traced = traceparent_at_books(mesh, web, "/traced")
    assert traced is not None
    wait_for("the traced request's spans",
             lambda: client_and_server(collector, traced.trace_id), SPANS_TIMEOUT)

    set_tracing(mesh, None)
    assert traceparent_at_books(mesh, web, "/untraced/after") is None

    # Had either untraced request made spans, they would have been exported before or with
    # the spans of a request made after them: turn tracing on again and wait for those.
    set_tracing(mesh, collector)
    marker = traceparent_at_books(mesh, web, "/marker")
    assert marker is not None
    wait_for("the marker request's spans",
             lambda: client_and_server(collector, marker.trace_id), SPANS_TIMEOUT)
    urls = {span.attributes["http.url"] for span in collector.spans()}
    assert urls == {"http://books/traced", "http://books/marker"}
    # Applied live: no sidecar or application was restarted.
    assert {w["name"]: w["pid"] for w in mesh.api.get("/v1/workloads")} == pids


def test_envoy_accepts_every_form_of_the_setting(mesh: Mesh) -> None:
    """What tulle accepts, Envoy accepts: IP and DNS collectors, odd percentages."""
    mesh.run("books", name="books-1")
    for address, percent in [("127.0.0.1:4317", 100), ("[::1]:4317", 0),
                             ("localhost:65535", 0.001), ("otel-collector.invalid:4317", 33.3)]:
        mesh.cli("apply", "-f", "-", stdin=tracing_mesh(address, percent))
        mesh.sync()
        assert not mesh.nacks(), (address, percent)
        wait_for(f"books-1 to serve with a collector at {address}",
                 functools.partial(serves_with_tracing, mesh, "books-1", True))
