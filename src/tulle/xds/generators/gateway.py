"""An ingress gateway's own listener and route table (`tulle gateway run`).

The gateway is a proxy like a sidecar: the namespace's shared clusters (mTLS to every mesh
service, with the gateway's own identity), its own tap and access log. It has no inbound
listener and no application; its one listener serves the outside world on the port it was
started with, TLS terminated with the certificate files on its host, and routes with the
HTTPRoutes attached to its Gateway: one virtual host per hostname they name ("*" for routes
that name none), each with those routes' rules in Gateway API precedence.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from google.protobuf import wrappers_pb2

from tulle.model.gateway import GatewayBinding, GatewaySpec
from tulle.model.mesh import AttachedRoute
from tulle.model.meta import ResourceKey
from tulle.xds import names
from tulle.xds.generators.access_logs import HttpLogging
from tulle.xds.generators.common import tls_socket
from tulle.xds.generators.listeners import gateway_manager, listener_with
from tulle.xds.generators.routes import attached_routes
from tulle.xds.generators.tracing import ProxyTracing


def gateway_listener(binding: GatewayBinding, gateway: ResourceKey,
                     optional: frozenset[str], tracing: ProxyTracing | None = None,
                     access_log: HttpLogging | None = None,
                     accept_http10: bool = True) -> listener_pb2.Listener:
    manager = gateway_manager(names.gateway_route_config(gateway), optional, tracing,
                              access_log, accept_http10)
    listener = listener_with(names.gateway_listener(binding.port), binding.listen_address,
                             binding.port, manager)
    if binding.tls_cert:
        # The files stay on the gateway's host: Envoy reads them there by path.
        certificate = common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(filename=binding.tls_cert),
            private_key=base_pb2.DataSource(filename=binding.tls_key))
        listener.filter_chains[0].transport_socket.CopyFrom(tls_socket(
            tls_pb2.DownstreamTlsContext(common_tls_context=tls_pb2.CommonTlsContext(
                tls_certificates=[certificate],
                alpn_protocols=["h2", "http/1.1"]))))
    return listener


def gateway_route_config(gateway: ResourceKey, spec: GatewaySpec | None, port: int,
                         attached: tuple[AttachedRoute, ...]) -> route_pb2.RouteConfiguration:
    name = names.gateway_route_config(gateway)
    where = f"{gateway.namespace}/{gateway.name}"
    if spec is None:
        return _only(name, 404, f"tulle: there is no Gateway {where}; apply one "
                                "(docs/resources.md#gateway), then HTTPRoutes that name it "
                                "in parentRefs.\n")
    listener = spec.listener_on(port)
    restricted = listener.hostname if listener is not None else None
    by_host: dict[str, list[AttachedRoute]] = {}
    for route in attached:
        hosts = route.spec.hostnames or ((restricted,) if restricted else ("*",))
        for host in hosts:
            if restricted is None or _within(host, restricted):
                by_host.setdefault(host, []).append(route)
    if not by_host:
        return _only(name, 404, f"tulle: no HTTPRoute is attached to Gateway {where} (for "
                                "this listener's hostname); name it in an HTTPRoute's "
                                "parentRefs (kind: Gateway).\n")
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[rc.VirtualHost(name=f"{where}|{host}", domains=[host],
                                      routes=attached_routes(tuple(routes), stats=False))
                       for host, routes in sorted(by_host.items())],
        validate_clusters=wrappers_pb2.BoolValue(value=False))


def _within(host: str, restricted: str) -> bool:
    """Whether a route's hostname falls under the listener's (exact, or *.domain)."""
    if restricted.startswith("*."):
        return host.endswith(restricted[1:]) and host != restricted[2:]
    return host == restricted


def _only(name: str, status: int, body: str) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=[rc.VirtualHost(
        name="none", domains=["*"], routes=[rc.Route(
            name="none", match=rc.RouteMatch(prefix="/"),
            direct_response=rc.DirectResponseAction(
                status=status, body=base_pb2.DataSource(inline_string=body)))])])
