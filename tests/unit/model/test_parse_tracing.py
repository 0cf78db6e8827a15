"""The Mesh's spec.tracing: the OTLP/gRPC collector's address and the sampling percentage."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.model.documents import Expected, assert_problems, parse, problems
from tulle.model.meshconfig import MeshSpec
from tulle.model.tracing import HostPort, OtlpExporter, TracingSettings, parse_host_port

ADDRESS = "spec.tracing.otlp.address"
PERCENT = "spec.tracing.samplingPercent"
HOST_HINT = "use an IP address or a DNS name"


def mesh_yaml(spec: Any) -> str:
    return ("apiVersion: tulle.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\n"
            "spec: " + json.dumps(spec) + "\n")


def tracing(address: Any = "127.0.0.1:4317", **more: Any) -> str:
    return mesh_yaml({"tracing": {"otlp": {"address": address}, **more}})


# (case, YAML, the parsed tracing settings)
VALID: list[tuple[str, str, TracingSettings | None]] = [
    ("off by default", mesh_yaml({}), None),
    ("null is off", mesh_yaml({"tracing": None}), None),
    ("samples everything by default", tracing(),
     TracingSettings(OtlpExporter("127.0.0.1:4317"), 100.0)),
    ("percent", tracing(samplingPercent=25), TracingSettings(OtlpExporter("127.0.0.1:4317"), 25)),
    ("fraction of a percent", tracing(samplingPercent=0.1),
     TracingSettings(OtlpExporter("127.0.0.1:4317"), 0.1)),
    ("zero: only requests that arrive sampled", tracing(samplingPercent=0),
     TracingSettings(OtlpExporter("127.0.0.1:4317"), 0.0)),
    ("a DNS name", tracing("otel-collector.observability.svc:4317"),
     TracingSettings(OtlpExporter("otel-collector.observability.svc:4317"))),
    ("localhost", tracing("localhost:4317"), TracingSettings(OtlpExporter("localhost:4317"))),
    ("IPv6 in brackets", tracing("[::1]:4317"), TracingSettings(OtlpExporter("[::1]:4317"))),
    ("highest port", tracing("10.0.0.7:65535"), TracingSettings(OtlpExporter("10.0.0.7:65535"))),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_valid(text: str, expected: TracingSettings | None) -> None:
    [resource] = parse(text)
    assert isinstance(resource.spec, MeshSpec)
    assert resource.spec.tracing == expected


BETWEEN = "must be between 0 and 100"
# (case, YAML, expected problems)
INVALID: list[tuple[str, str, list[Expected]]] = [
    ("no exporter", mesh_yaml({"tracing": {}}),
     [("spec.tracing.otlp", "required field is missing", "")]),
    ("no address", mesh_yaml({"tracing": {"otlp": {}}}),
     [(ADDRESS, "required field is missing", "")]),
    ("misspelt exporter", mesh_yaml({"tracing": {"otel": {"address": "a:1"}}}),
     [("spec.tracing.otlp", "required field is missing", ""),
      ("spec.tracing.otel", 'unknown field "otel"', 'did you mean "otlp"?')]),
    ("misspelt percent", tracing(samplingPercentage=5),
     [("spec.tracing.samplingPercentage", "unknown field", 'did you mean "samplingPercent"?')]),
    ("percent as a string", tracing(samplingPercent="5"),
     [(PERCENT, 'expected a number, got string "5"', "without quotes: 5")]),
    ("percent true", tracing(samplingPercent=True), [(PERCENT, "expected a number", "")]),
    ("address a number", tracing(4317), [(ADDRESS, "expected a string, got number 4317", "")]),
    ("percent above 100", tracing(samplingPercent=100.5),
     [(PERCENT, f"{BETWEEN}, got 100.5", "100 traces every request")]),
    ("percent negative", tracing(samplingPercent=-1), [(PERCENT, f"{BETWEEN}, got -1", "0.1")]),
    ("empty address", tracing(""), [(ADDRESS, "must not be empty", '"127.0.0.1:4317"')]),
    ("a scheme", tracing("http://otel:4317"),
     [(ADDRESS, '"http://otel:4317" has a scheme', 'write only host:port, such as "otel:4317"')]),
    ("a grpc scheme and path", tracing("grpc://otel:4317/v1/traces"),
     [(ADDRESS, "has a scheme", 'such as "otel:4317"')]),
    ("a path", tracing("otel:4317/v1/traces"),
     [(ADDRESS, '"otel:4317/v1/traces" has a path', 'such as "otel:4317"')]),
    ("no port", tracing("otel"), [(ADDRESS, '"otel" has no port', '"otel:4317"')]),
    ("empty port", tracing("otel:"), [(ADDRESS, 'the port must be a number from 1 to 65535, '
                                                'got ""', "4317")]),
    ("port zero", tracing("otel:0"), [(ADDRESS, 'got "0"', "4317")]),
    ("port too high", tracing("otel:65536"), [(ADDRESS, 'got "65536"', "4317")]),
    ("port not a number", tracing("otel:grpc"), [(ADDRESS, 'got "grpc"', "4317")]),
    ("port with a sign", tracing("otel:+4317"), [(ADDRESS, 'got "+4317"', "4317")]),
    ("no host", tracing(":4317"), [(ADDRESS, "the host is missing", HOST_HINT)]),
    ("bad IPv4", tracing("10.0.0.256:4317"),
     [(ADDRESS, '"10.0.0.256" is not a valid IPv4 address', HOST_HINT)]),
    ("underscore in a name", tracing("otel_collector:4317"),
     [(ADDRESS, '"otel_collector" is not an IP address or a DNS name', HOST_HINT)]),
    ("empty label", tracing("otel..svc:4317"), [(ADDRESS, "is not an IP address", HOST_HINT)]),
    ("label of 64 characters", tracing("a" * 64 + ":4317"),
     [(ADDRESS, "is not an IP address", HOST_HINT)]),
    ("whitespace", tracing(" otel:4317"), [(ADDRESS, "is not an IP address", HOST_HINT)]),
    ("IPv6 without brackets", tracing("::1:4317"),
     [(ADDRESS, "is ambiguous", 'brackets, such as "[::1]:4317"')]),
    ("IPv6 in brackets without a port", tracing("[::1]"), [(ADDRESS, "has no port", "[::1]:")]),
    ("a name in brackets", tracing("[otel]:4317"),
     [(ADDRESS, '"otel" in brackets is not an IPv6 address', "IPv6 addresses only")]),
    ("IPv6 with a zone", tracing("[fe80::1%eth0]:4317"),
     [(ADDRESS, "is not an IPv6 address", "IPv6 addresses only")]),
    ("both wrong, both reported", tracing("otel", samplingPercent=200),
     [(ADDRESS, "has no port", "4317"), (PERCENT, f"{BETWEEN}, got 200", "percentage")]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid(text: str, expected: list[Expected]) -> None:
    found = problems(text)
    assert_problems(found, expected)
    assert {p.resource for p in found} == {"Mesh default"}


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:4317", (HostPort("127.0.0.1", 4317), True)),
    ("[2001:db8::7]:4318", (HostPort("2001:db8::7", 4318), True)),
    ("otel-collector:4317", (HostPort("otel-collector", 4317), False)),
    ("Collector.Example.COM:443", (HostPort("Collector.Example.COM", 443), False)),
])
def test_host_port(text: str, expected: tuple[HostPort, bool]) -> None:
    parsed = parse_host_port(text)
    assert (parsed, parsed.is_ip) == expected
