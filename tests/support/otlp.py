"""A real OTLP/gRPC trace collector for tests: a gRPC server on a free loopback port that
implements opentelemetry.proto.collector.trace.v1.TraceService/Export and keeps every span."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.trace.v1 import trace_pb2  # type: ignore[import-untyped]

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
# xds-protos ships an older OTLP, where ResourceSpans field 2 (scope_spans today, what Envoy
# sends) is still called instrumentation_library_spans. Same wire format, another name.
_SCOPE_SPANS = ("scope_spans" if "scope_spans" in trace_pb2.ResourceSpans.DESCRIPTOR.fields_by_name
                else "instrumentation_library_spans")


@dataclass(frozen=True)
class ReceivedSpan:
    service: str  # the exporter's resource attribute service.name
    resource: MappingProxyType[str, str]
    trace_id: str  # hex, as in traceparent
    span_id: str
    parent_span_id: str  # "" for a root span
    kind: str  # "CLIENT", "SERVER", ...
    name: str
    attributes: MappingProxyType[str, str]


class OtlpCollector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.exports = 0  # Export calls received
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
            "Export": grpc.unary_unary_rpc_method_handler(
                self._export,
                request_deserializer=trace_service_pb2.ExportTraceServiceRequest.FromString,
                response_serializer=trace_service_pb2.ExportTraceServiceResponse
                .SerializeToString),
        }),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=None)

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def _export(self, request: trace_service_pb2.ExportTraceServiceRequest,
                context: Any) -> trace_service_pb2.ExportTraceServiceResponse:
        received = list(_spans_of(request))
        with self._lock:
            self.exports += 1
            self._spans += received
        return trace_service_pb2.ExportTraceServiceResponse()


def _spans_of(request: trace_service_pb2.ExportTraceServiceRequest) -> Iterator[ReceivedSpan]:
    for resource_spans in request.resource_spans:
        resource = _strings(resource_spans.resource.attributes)
        for scope_spans in getattr(resource_spans, _SCOPE_SPANS):
            for span in scope_spans.spans:
                yield ReceivedSpan(
                    service=resource.get("service.name", ""),
                    resource=resource,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    kind=trace_pb2.Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                    name=span.name,
                    attributes=_strings(span.attributes),
                )


def _strings(attributes: Any) -> MappingProxyType[str, str]:
    return MappingProxyType({a.key: a.value.string_value or str(a.value.int_value)
                             for a in attributes})
