"""An ingress gateway's generators: its route table from the HTTPRoutes that name its Gateway,
and its listener (TLS from files on its host, the edge's client address)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from google.protobuf import symbol_database

from tests.unit.xds.meshes import Manifest, mesh, proxy, workload
from tulle.model.gateway import GatewayBinding
from tulle.model.meta import ResourceKey
from tulle.xds.compiler import ConfigCompiler
from tulle.xds.generators import gateway

EDGE = ResourceKey("Gateway", "default", "edge")


def unpack(packed: Any) -> Any:
    message = symbol_database.Default().GetSymbol(packed.type_url.rsplit("/", 1)[1])()
    assert packed.Unpack(message), packed.type_url
    return message


def gateway_doc(hostname: str | None = None) -> Manifest:
    listener: dict[str, Any] = {"name": "https", "port": 8443, "protocol": "HTTPS"}
    if hostname:
        listener["hostname"] = hostname
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "edge"}, "spec": {"listeners": [listener]}}


def route_doc(name: str, *hostnames: str, prefix: str = "/") -> Manifest:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name},
            "spec": {"parentRefs": [{"kind": "Gateway", "name": "edge"}],
                     "hostnames": list(hostnames),
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                                "backendRefs": [{"name": "books"}]}]}}


def table(*manifests: Manifest) -> Any:
    snapshot = mesh(1, [workload("books-1")], manifests)
    found = snapshot.resources.get(EDGE)
    return gateway.gateway_route_config(EDGE, found.spec if found else None, 8443,
                                        snapshot.gateway_routes.get(EDGE, ()))


@pytest.mark.parametrize(("listener_host", "routes", "vhosts"), [
    (None, [route_doc("a", "shop.example.com"), route_doc("b")],
     {"shop.example.com": ["default/a/rule0/match0"], "*": ["default/b/rule0/match0"]}),
    (None, [route_doc("a", "shop.example.com", prefix="/api"),
            route_doc("b", "shop.example.com", prefix="/api/v2")],
     {"shop.example.com": ["default/b/rule0/match0", "default/a/rule0/match0"]}),
    ("*.example.com", [route_doc("a", "shop.example.com"), route_doc("b", "evil.test"),
                       route_doc("c")],
     {"shop.example.com": ["default/a/rule0/match0"],
      "*.example.com": ["default/c/rule0/match0"]}),
], ids=["a host per route, * without", "precedence within a host", "listener hostname"])
def test_virtual_hosts_by_hostname(listener_host: str | None, routes: list[Manifest],
                                   vhosts: dict[str, list[str]]) -> None:
    config = table(gateway_doc(listener_host), *routes)
    found = {vhost.domains[0]: [r.name for r in vhost.routes] for vhost in config.virtual_hosts}
    assert found == vhosts
    for vhost in config.virtual_hosts:
        for route in vhost.routes:
            assert route.route.cluster == "outbound|books.default"
            assert not route.stat_prefix  # `tulle routes` counts a service's own callers


@pytest.mark.parametrize(("manifests", "says"), [
    ((), "there is no Gateway default/edge"),
    ((gateway_doc(),), "no HTTPRoute is attached to Gateway default/edge"),
], ids=["no gateway", "no route"])
def test_nothing_to_serve_says_why(manifests: tuple[Manifest, ...], says: str) -> None:
    (vhost,) = table(*manifests).virtual_hosts
    (route,) = vhost.routes
    assert route.direct_response.status == 404
    assert says in route.direct_response.body.inline_string


def test_the_listener_terminates_tls_with_the_files_on_its_host() -> None:
    binding = GatewayBinding(8443, "127.0.0.1", "/etc/edge/tls.crt", "/etc/edge/tls.key")
    listener = gateway.gateway_listener(binding, EDGE, frozenset())
    assert listener.name == "gateway|8443"
    address = listener.address.socket_address
    assert (address.address, address.port_value) == ("127.0.0.1", 8443)
    (chain,) = listener.filter_chains
    context = unpack(chain.transport_socket.typed_config)
    (certificate,) = context.common_tls_context.tls_certificates
    assert certificate.certificate_chain.filename == "/etc/edge/tls.crt"
    assert certificate.private_key.filename == "/etc/edge/tls.key"
    assert not certificate.private_key.inline_string  # the key never leaves the host
    manager = unpack(chain.filters[0].typed_config)
    assert manager.use_remote_address.value is True
    assert manager.rds.route_config_name == "gateway|default/edge"
    plain = gateway.gateway_listener(GatewayBinding(8080), EDGE, frozenset())
    assert not plain.filter_chains[0].HasField("transport_socket")


def test_a_gateway_proxy_gets_its_listener_and_table() -> None:
    edge = dataclasses.replace(workload("edge-gw", service="edge", app_port=None),
                               gateway=GatewayBinding(8443))
    snapshot = mesh(1, [edge, workload("books-1")], [gateway_doc(), route_doc("a")])
    config = ConfigCompiler().compile(snapshot, proxy(snapshot, "edge-gw.default"))
    names = set(config.resources["type.googleapis.com/envoy.config.listener.v3.Listener"])
    assert "gateway|8443" in names
    routes = set(config.resources["type.googleapis.com/envoy.config.route.v3."
                                  "RouteConfiguration"])
    assert "gateway|default/edge" in routes
