"""A request from one application to another crosses both sidecars."""

from __future__ import annotations

import pytest

from tests.support.mesh import Mesh

pytestmark = pytest.mark.envoy


@pytest.mark.parametrize("protocol", ["delta", "sotw"])
def test_request_crosses_both_sidecars(mesh: Mesh, protocol: str) -> None:
    extra = ("--xds-protocol", protocol)
    mesh.run("books", name="books-1", extra=extra)
    client = mesh.run("web", name="web-1", extra=extra)
    mesh.wait_endpoints("web-1", "books", {"books-1"})
    before_out = mesh.stats("web-1").get("cluster.outbound|books|default.upstream_rq_200", 0)
    before_in = mesh.stats("books-1").get("http.inbound.downstream_rq_2xx", 0)

    for url in ("http://books/a", "http://books:7002/b", "http://books.default/c"):
        result = mesh.call(client, url)
        assert result["status"] == 200, result
        body = result["body"]
        assert body["workload"] == "books-1"
        # Envoy on the path stamps a request id; the application saw the call come through it.
        assert "X-Request-Id" in body["headers"] or "x-request-id" in body["headers"]

    out_stats = mesh.stats("web-1")
    in_stats = mesh.stats("books-1")
    assert out_stats["cluster.outbound|books|default.upstream_rq_200"] - before_out == 3
    assert in_stats["http.inbound.downstream_rq_2xx"] - before_in == 3
    assert in_stats[f"cluster.inbound|{mesh.workloads[0].app_port}.upstream_rq_200"] >= 3


def test_unknown_host_gets_a_helpful_502(mesh: Mesh) -> None:
    client = mesh.run("web", name="web-1")
    result = mesh.call(client, "http://nosuch/")
    assert result["status"] == 502
    assert "nosuch is neither a mesh service nor an ExternalService" in result["body"]
