"""Egress generators: an ExternalService's clusters, route table and scope; the passthrough
of ALLOW_ANY; what a change sends."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import symbol_database

from tests.support.outside import server_cert
from tests.unit.xds.envoy_side import CDS, EDS, LDS, RDS, SRDS, message_of
from tests.unit.xds.meshes import Manifest, mesh, proxy, workload
from tulle.xds.compiler import ConfigCompiler
from tulle.xds.generators import egress

CA = server_cert("api.example.com").ca_pem


def unpack(packed: Any) -> Any:
    """Any packed message whose module is loaded (the generators import theirs)."""
    message = symbol_database.Default().GetSymbol(packed.type_url.rsplit("/", 1)[1])()
    assert packed.Unpack(message), packed.type_url
    return message


def external(host: str = "api.example.com", ports: Any = None, **spec: Any) -> Manifest:
    return {"apiVersion": "tulle.io/v1alpha1", "kind": "ExternalService",
            "metadata": {"name": "api", "namespace": "default"},
            "spec": {"host": host, "ports": ports or [{"port": 443, "protocol": "tls"},
                                                      {"port": 80, "protocol": "http"}],
                     **spec}}


def outbound(mode: str) -> Manifest:
    return {"apiVersion": "tulle.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "default"},
            "spec": {"outbound": {"mode": mode}}}


def the_external(*manifests: Manifest) -> Any:
    return next(iter(mesh(1, [], manifests).externals.values()))


@pytest.mark.parametrize(("spec", "kind", "address"), [
    ({}, "STRICT_DNS", "api.example.com"),
    ({"address": "10.0.0.9"}, "STATIC", "10.0.0.9"),
    ({"address": "proxy.corp.example"}, "STRICT_DNS", "proxy.corp.example"),
])
def test_a_cluster_per_port_dials_the_address_or_the_host(spec: dict[str, Any], kind: str,
                                                          address: str) -> None:
    found = the_external(external(**spec))
    for port in found.spec.ports:
        cluster = egress.external_cluster(found, port)
        assert cluster.name == f"external|api.example.com|{port.port}"
        assert cluster.alt_stat_name == f"external|api_example_com|{port.port}"
        assert type(cluster).DiscoveryType.Name(cluster.type) == kind
        socket = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
        assert (socket.socket_address.address, socket.socket_address.port_value) == (
            address, port.port)
        assert not cluster.HasField("transport_socket")


@pytest.mark.parametrize(("sni", "expected_sni", "san_type"), [
    (None, "api.example.com", "DNS"), ("edge.example.com", "edge.example.com", "DNS"),
    ("10.0.0.1", "", "IP_ADDRESS")])
def test_tls_origination_on_the_http_port_only(sni: str | None, expected_sni: str,
                                               san_type: str) -> None:
    tls: dict[str, Any] = {"caBundle": CA} | ({"sni": sni} if sni else {})
    found = the_external(external(tls=tls))
    plain, originated = (egress.external_cluster(found, port) for port in found.spec.ports)
    assert not plain.HasField("transport_socket")  # the tls port: the application's own TLS
    context = unpack(originated.transport_socket.typed_config)
    assert context.sni == expected_sni
    validation = context.common_tls_context.validation_context
    assert validation.trusted_ca.inline_string == CA
    (san,) = validation.match_typed_subject_alt_names
    assert type(san).SanType.Name(san.san_type) == san_type
    assert san.matcher.exact == (sni or "api.example.com")


def test_the_route_table_tunnels_by_port_and_sends_plain_requests_to_the_http_port() -> None:
    table = egress.external_route_config(the_external(external()))
    (vhost,) = table.virtual_hosts
    assert vhost.metadata.filter_metadata[egress.PASSTHROUGH_FILTER]["mesh"] is True
    summary = [(r.name, r.match.HasField("connect_matcher"),
                [h.string_match.exact for h in r.match.headers],
                r.route.cluster or r.direct_response.status) for r in vhost.routes]
    assert summary == [
        ("api.example.com/connect/443", True, ["api.example.com:443"],
         "external|api.example.com|443"),
        ("api.example.com/connect/80", True, ["api.example.com:80"],
         "external|api.example.com|80"),
        ("api.example.com/connect/other", True, [], 502),
        ("api.example.com/http", False, [], "external|api.example.com|80")]
    other = vhost.routes[2].direct_response.body.inline_string
    assert "(ports: 443, 80)" in other and "ExternalService default/api" in other


def test_without_an_http_port_a_plain_request_is_told_to_use_connect() -> None:
    table = egress.external_route_config(the_external(external(
        ports=[{"port": 5432, "protocol": "tcp"}])))
    last = table.virtual_hosts[0].routes[-1]
    assert last.direct_response.status == 400
    assert "CONNECT api.example.com:PORT" in last.direct_response.body.inline_string


def _filters(snapshot: Any) -> list[str]:
    config = ConfigCompiler().compile(snapshot, proxy(snapshot, "web-1.default"))
    listener = message_of(config.resources[LDS]["outbound"])
    manager = unpack(listener.filter_chains[0].filters[0].typed_config)
    assert manager.strip_any_host_port is False  # CONNECT and passthrough need the port
    return [f.name for f in manager.http_filters]


def test_allow_any_puts_the_fallback_first_and_the_forward_proxy_before_the_router() -> None:
    registry = mesh(1, [workload("web-1")], [])
    assert egress.PASSTHROUGH_FILTER not in _filters(registry)
    names = _filters(mesh(1, [workload("web-1")], [outbound("ALLOW_ANY")]))
    assert names[0] == egress.PASSTHROUGH_FILTER
    assert names[-2:] == [egress.DFP_FILTER, "envoy.filters.http.router"]


def test_the_passthrough_puts_the_host_back_and_removes_its_header() -> None:
    (vhost,) = egress.passthrough_route_config().virtual_hosts
    for route in vhost.routes:
        assert route.route.cluster == "passthrough"
        per_route = unpack(route.typed_per_filter_config[egress.DFP_FILTER])
        assert per_route.host_rewrite_header == egress.ORIGINAL_HOST_HEADER
        assert list(route.request_headers_to_remove) == [egress.ORIGINAL_HOST_HEADER]


CHANGES = [
    ("external added", [], [external()],
     {CDS: {"external|api.example.com|443", "external|api.example.com|80"},
      RDS: {"external|api.example.com"}, SRDS: {"scope|api.example.com"}}),
    ("origination added", [external()], [external(tls={"caBundle": CA})],
     {CDS: {"external|api.example.com|80"}}),
    ("allow any", [], [outbound("ALLOW_ANY")],
     {CDS: {"passthrough"}, RDS: {"passthrough"}, SRDS: {"scope|_tulle_passthrough_"}}),
]


@pytest.mark.parametrize(("case", "before", "after", "diff"), CHANGES,
                         ids=[c[0] for c in CHANGES])
def test_a_change_sends_only_its_resources(case: str, before: list[Manifest],
                                           after: list[Manifest],
                                           diff: dict[str, set[str]]) -> None:
    compiler = ConfigCompiler()
    workloads = [workload("web-1")]
    for version, manifests in ((1, before), (2, after)):
        snapshot = mesh(version, workloads, manifests)
        shared = compiler.compile(snapshot, proxy(snapshot, "web-1.default")).shared
    found = {t: set(shared.changed_names(t)) for t in (CDS, EDS, SRDS, RDS)}
    assert {t: n for t, n in found.items() if n} == diff
