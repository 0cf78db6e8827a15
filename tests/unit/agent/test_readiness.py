"""The agent's readiness probe: the grpc.health.v1 messages it encodes by hand, checked
against the generated ones of grpcio-health-checking, and how each answer is judged."""

from __future__ import annotations

import asyncio

import pytest
from grpc_health.v1 import health_pb2

from tulle.agent.readiness import Readiness, decode_status, encode_request, judge, probe

Response = health_pb2.HealthCheckResponse


@pytest.mark.parametrize("service", ["", "tulle.test.Greeter", "é" * 100])
def test_the_request_is_what_the_generated_code_encodes(service: str) -> None:
    assert encode_request(service) == \
        health_pb2.HealthCheckRequest(service=service).SerializeToString()


@pytest.mark.parametrize("status", [Response.UNKNOWN, Response.SERVING, Response.NOT_SERVING,
                                    Response.SERVICE_UNKNOWN, 300])
def test_the_status_is_read_as_the_generated_code_writes_it(status: int) -> None:
    assert decode_status(Response(status=status).SerializeToString()) == status  # type: ignore[arg-type]


def test_unknown_fields_are_skipped() -> None:
    message = b"\x12\x03abc" + Response(status=Response.SERVING).SerializeToString()
    assert decode_status(message) == Response.SERVING


@pytest.mark.parametrize(("status", "expected"), [
    (1, Readiness(True)),
    (2, Readiness(False, "the gRPC health check (grpc.health.v1) says NOT_SERVING")),
    (0, Readiness(False, "the gRPC health check (grpc.health.v1) says UNKNOWN")),
    (3, Readiness(False, "the gRPC health check (grpc.health.v1) says SERVICE_UNKNOWN")),
])
def test_only_serving_is_ready(status: int, expected: Readiness) -> None:
    assert judge(status) == expected


def test_a_port_that_does_not_accept_is_not_ready_whatever_the_probe() -> None:
    from tests.support.ports import free_port

    port = free_port()  # nothing listens there
    for kind in ("connect", "grpc"):
        found = asyncio.run(probe(kind, port))  # type: ignore[arg-type]
        assert found == Readiness(
            False, f"the application does not accept connections on port {port}")
