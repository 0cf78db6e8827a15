"""Property: the rule `tulle what-if` says a request takes is the rule Envoy takes.

Hypothesis generates HTTPRoutes (path, header, query and method matches of every kind, in
overlapping values so that precedence decides) and requests; each route is applied to a live
mesh, and each request is sent through a caller's sidecar. Every rule stamps its index on the
response (a ResponseHeaderModifier), so Envoy's answer is read from the response: the rule, or
404 when none matched. tulle's answer is whatif.matching on the same route, as the snapshot
holds it. CI runs a fixed set of at least 1,000 (route, request) pairs; for a wider search:
TULLE_PROPERTY_EXAMPLES=200 pytest tests/e2e/test_whatif_matching.py
"""

from __future__ import annotations

import http.client
import os
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.mesh import Mesh
from tulle.model.mesh import build_mesh
from tulle.model.meta import ServiceRef
from tulle.model.parse import resource_from_manifest
from tulle.whatif.matching import Request, rule_for

pytestmark = pytest.mark.envoy

CONFIGS = int(os.environ.get("TULLE_PROPERTY_EXAMPLES", "50"))
REQUESTS_PER_CONFIG = 24  # 50 x 24 = 1,200 pairs in CI
WIDE = "TULLE_PROPERTY_EXAMPLES" in os.environ
BOOKS = ServiceRef("default", "books")

SEGMENTS = ["a", "b", "ab", "a.b", "A"]
segment = st.sampled_from(SEGMENTS)
path = st.lists(segment, min_size=0, max_size=3).map(lambda parts: "/" + "/".join(parts))
REGEXES = ["/a/.*", "/[ab]+", "/a(/b)?", "/.*b", "/(?i)a", "/a\\.b(/.*)?", "/[^/]+/b"]
HEADERS = ["x-a", "x-b"]
VALUES = ["1", "2", "1,2", ""]
VALUE_REGEXES = ["[12]", "1.*", ".*2", "(1|2),2"]
QUERY = ["q", "r"]
QUERY_VALUES = ["1", "2", ""]


@st.composite
def route_match(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["Exact", "PathPrefix", "RegularExpression"]))
    value = draw(st.sampled_from(REGEXES)) if kind == "RegularExpression" else draw(path)
    if kind == "PathPrefix" and draw(st.booleans()):
        value = value.rstrip("/") + "/"  # a trailing slash: ignored by the Gateway API
    out: dict[str, Any] = {"path": {"type": kind, "value": value}}
    headers = []
    for name in draw(st.lists(st.sampled_from(HEADERS), max_size=2, unique=True)):
        if draw(st.booleans()):
            headers.append({"name": name.upper() if draw(st.booleans()) else name,
                            "type": "RegularExpression",
                            "value": draw(st.sampled_from(VALUE_REGEXES))})
        else:
            headers.append({"name": name, "value": draw(st.sampled_from(VALUES[:3]))})
    if headers:
        out["headers"] = headers
    params = [{"name": name, "value": draw(st.sampled_from(QUERY_VALUES))}
              if draw(st.booleans()) else
              {"name": name, "type": "RegularExpression", "value": "[12]"}
              for name in draw(st.lists(st.sampled_from(QUERY), max_size=2, unique=True))]
    if params:
        out["queryParams"] = params
    if draw(st.booleans()):
        out["method"] = draw(st.sampled_from(["GET", "POST"]))
    return out


@st.composite
def http_route(draw: st.DrawFn) -> dict[str, Any]:
    rules = []
    for index in range(draw(st.integers(1, 4))):
        rules.append({
            "matches": draw(st.lists(route_match(), min_size=1, max_size=3)),
            "filters": [{"type": "ResponseHeaderModifier",
                         "responseHeaderModifier": {"set": [{"name": "x-rule",
                                                             "value": str(index)}]}}],
            "backendRefs": [{"name": "books"}]})
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "prop", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "books"}], "rules": rules}}


@st.composite
def request(draw: st.DrawFn) -> Request:
    target = draw(path)
    query = [f"{name}={draw(st.sampled_from(QUERY_VALUES))}"
             for name in draw(st.lists(st.sampled_from(QUERY), max_size=2))]
    if query:
        target += "?" + "&".join(query)
    headers = [(name, draw(st.sampled_from(VALUES[:2])))
               for name in draw(st.lists(st.sampled_from(HEADERS), max_size=3))]
    return Request(draw(st.sampled_from(["GET", "POST"])), target, tuple(headers))


def envoy_says(port: int, req: Request) -> str | None:
    """The rule index Envoy took (from the response), or None for its 404."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(req.method, f"http://books{req.path}", skip_host=True,
                              skip_accept_encoding=True)
        connection.putheader("Host", "books")
        for name, value in req.headers:
            connection.putheader(name, value)
        if req.method == "POST":
            connection.putheader("Content-Length", "0")
        connection.endheaders()
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    rule = response.getheader("x-rule")
    assert rule is not None or response.status == 404, (response.status, req)
    return rule


def test_what_if_takes_the_rule_envoy_takes(mesh: Mesh) -> None:
    mesh.run("books", name="books-1")
    mesh.run("web", name="web-1")
    port = int(mesh.workload("web-1")["outboundPort"])
    pairs = 0

    @settings(max_examples=CONFIGS, deadline=None, derandomize=not WIDE, database=None,
              suppress_health_check=list(HealthCheck),
              phases=(Phase.explicit, Phase.generate))
    @given(route=http_route(), requests=st.lists(request(), min_size=REQUESTS_PER_CONFIG,
                                                  max_size=REQUESTS_PER_CONFIG))
    def check(route: dict[str, Any], requests: list[Request]) -> None:
        nonlocal pairs
        mesh.cli("apply", "-f", "-", stdin=yaml.safe_dump(route))
        mesh.sync()
        snapshot = build_mesh(1, [resource_from_manifest(route)], [])
        attached = snapshot.routes[BOOKS]
        for req in requests:
            found = rule_for(attached, req)
            expected = None if found is None else str(found.rule)
            assert envoy_says(port, req) == expected, (
                f"tulle says rule {expected}, Envoy took {envoy_says(port, req)} for {req}\n"
                f"{yaml.safe_dump(route)}")
            pairs += 1

    check()
    assert pairs >= (1000 if not WIDE else 1)
