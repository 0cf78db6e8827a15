"""Findings about a gRPC service speak gRPC: the failing grpc-status by name and number
("gRPC status UNAVAILABLE (14)"), calls rather than requests; an HTTP service keeps "5xx"."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from tests.unit.model.workloads import workload
from tulle.diagnose.engine import diagnose
from tulle.diagnose.evidence import Evidence
from tulle.diagnose.model import Finding
from tulle.diagnose.rules._grpc import speaks_grpc, status_counts, status_text
from tulle.model.mesh import build_mesh
from tulle.model.meta import ServiceRef
from tulle.model.parse import resource_from_manifest
from tulle.telemetry.query import NodeInfo
from tulle.telemetry.schema import SeriesKey
from tulle.telemetry.windows import Window

CLIENT, G1, G2 = "client-1.default", "greeter-1.default", "greeter-2.default"
IN, OUT = SeriesKey("in"), SeriesKey("out", "greeter.default")
GREETER = ServiceRef("default", "greeter")


def service(protocol: str | None) -> dict[str, Any]:
    spec = {"protocol": protocol} if protocol else {}
    return {"apiVersion": "tulle.io/v1alpha1", "kind": "Service",
            "metadata": {"name": "greeter"}, "spec": spec}


RETRIES = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
           "metadata": {"name": "greeter"},
           "spec": {"parentRefs": [{"name": "greeter"}], "rules": [{
               "name": "retries", "backendRefs": [{"name": "greeter"}],
               "retry": {"attempts": 3, "grpcCodes": ["unavailable"]}}]}}


def evidence(counters: dict[tuple[str, SeriesKey], dict[str, int]],
             *manifests: dict[str, Any]) -> Evidence:
    registered = (workload("client-1", "client", upstreams=(("default", "greeter"),)),
                  workload("greeter-1", "greeter"), workload("greeter-2", "greeter"))
    mesh = build_mesh(2, [resource_from_manifest(m) for m in manifests], registered)
    nodes = {w.node_id: NodeInfo(w.name, w.namespace, w.service, "") for w in registered}
    window = Window(60.0, 60.0, MappingProxyType(counters), MappingProxyType({}),
                    MappingProxyType({}))
    return Evidence(mesh=mesh, window=window, nodes=MappingProxyType(nodes), now=1e6)


def grpc(ok: int, failed: dict[int, int] | None = None) -> dict[str, int]:
    """gRPC calls as telemetry keeps them: failures in HTTP 200 counted as 5xx, and by code."""
    codes = failed or {}
    bad = sum(codes.values())
    return {"rq2": ok, "rq5": bad, "grpc": ok + bad, "grpc_fail": bad, "lat5": ok + bad,
            **{f"g{code}": n for code, n in codes.items()}}


def first(found: Evidence, code: str) -> Finding:
    return next(f for f in diagnose(found).findings if f.code == code)


# Retries on unavailable hide greeter-2's failures: callers saw none.
HIDDEN = {(CLIENT, OUT): {**grpc(300), "retry": 50}, (G1, IN): grpc(175),
          (G2, IN): grpc(125, {14: 50})}


@pytest.mark.parametrize("manifests", [(service("grpc"), RETRIES), (RETRIES,)],
                         ids=["declared grpc", "calls seen as gRPC only"])
def test_masked_failures_name_the_grpc_status(manifests: tuple[dict[str, Any], ...]) -> None:
    found = first(evidence(HIDDEN, *manifests), "TUL1019")
    assert found.subject == "proxy/greeter-2.default"
    assert found.cause.startswith(
        "greeter-2.default fails 29% of its gRPC calls with gRPC status UNAVAILABLE (14), "
        "but callers' retries hide it: they see 0.0% failures."), found.cause
    assert found.evidence[0] == ("greeter-2.default failed 50 of 175 gRPC calls (28.6%): "
                                 "UNAVAILABLE (14): 50, p50 8.8 ms"), found.evidence
    assert found.evidence[1].startswith("callers of greeter.default saw 0 of 300 calls fail")


def test_an_http_service_keeps_http_words() -> None:
    http = {(CLIENT, OUT): {"rq2": 300, "lat5": 300, "retry": 50},
            (G1, IN): {"rq2": 175, "lat5": 175},
            (G2, IN): {"rq2": 125, "rq5": 50, "c503": 50, "lat5": 175}}
    found = first(evidence(http, service("http"), RETRIES | {"spec": {
        **RETRIES["spec"], "rules": [{"backendRefs": [{"name": "greeter"}],
                                      "retry": {"attempts": 3, "codes": [503]}}]}}), "TUL1019")
    assert "of its requests, but callers' retries hide it" in found.cause, found.cause
    assert found.evidence[0].startswith("greeter-2.default answered 50 of 175 requests with 5xx")


def test_failed_calls_seen_by_callers_name_the_status() -> None:
    failing = {(CLIENT, OUT): grpc(150, {14: 40, 13: 10}), (G1, IN): grpc(100),
               (G2, IN): grpc(50, {14: 40, 13: 10})}
    found = first(evidence(failing, service("grpc")), "TUL1013")
    assert found.subject == "proxy/greeter-2.default"
    assert found.cause.startswith(
        "greeter-2.default answers 50% of its gRPC calls with gRPC statuses UNAVAILABLE (14), "
        "INTERNAL (13) while its peers do not, so 50 of 200 calls to greeter.default failed."
    ), found.cause
    assert ("client-1.default -> greeter.default: 50 of 200 gRPC calls failed "
            "(UNAVAILABLE (14): 40, INTERNAL (13): 10)") in found.evidence, found.evidence
    assert ("greeter-2 failed 50 of 100 gRPC calls (UNAVAILABLE (14): 40, INTERNAL (13): 10), "
            "p99 9.975 ms") in found.evidence, found.evidence


WORDS: list[tuple[dict[str, int], str, str]] = [
    ({"g14": 3}, "gRPC status UNAVAILABLE (14)", "UNAVAILABLE (14): 3"),
    ({"g13": 1, "g14": 3, "g4": 3}, "gRPC statuses DEADLINE_EXCEEDED (4), UNAVAILABLE (14), "
     "INTERNAL (13)", "DEADLINE_EXCEEDED (4): 3, UNAVAILABLE (14): 3, INTERNAL (13): 1"),
    ({"g14": 0, "grpc_fail": 2}, "gRPC errors", ""),  # no status counted: no name invented
    ({"g99": 1}, "gRPC status 99", "99: 1"),
]


@pytest.mark.parametrize(("values", "text", "counts"), WORDS, ids=[w[1] for w in WORDS])
def test_status_words(values: dict[str, int], text: str, counts: str) -> None:
    assert (status_text(values), status_counts(values)) == (text, counts)


def test_speaks_grpc_by_declaration_or_by_its_calls() -> None:
    assert speaks_grpc(evidence({}, service("grpc")), [GREETER])
    assert not speaks_grpc(evidence({}, service("http")), [GREETER], {"rq2": 5, "grpc": 2})
    assert speaks_grpc(evidence({}), [GREETER], {"rq2": 5, "grpc": 5})
    assert not speaks_grpc(evidence({}), [GREETER], {"rq2": 5})
