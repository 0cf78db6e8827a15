"""RDS: how a sidecar picks the service, and the instance set, for each HTTP request.

A client's outbound route table has one virtual host per HTTP service, matched on the request's
host with the port stripped: ``books`` (same namespace), ``books.default`` (any namespace).
HTTPRoutes attached to a service replace its default catch-all route.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from google.protobuf import wrappers_pb2

from tulle.model.httproute import PathMatch, RouteRule
from tulle.model.mesh import AttachedRoute, MeshService
from tulle.model.meta import ServiceRef
from tulle.xds import names
from tulle.xds.generators.common import pack, seconds

# Retries that are always safe: the request never reached the application.
SAFE_RETRY_ON = "connect-failure,refused-stream,reset-before-request"
SAFE_RETRIES = 2

ServiceRoutes = tuple[tuple[MeshService, tuple[AttachedRoute, ...]], ...]

_UNKNOWN_HOST_BODY = (
    "tulle: no service in the mesh matches this request's host.\n"
    "List services with `tulle get services`; use NAME or NAME.NAMESPACE as the host.\n"
)


def outbound_route_config(client_namespace: str,
                          services: ServiceRoutes) -> route_pb2.RouteConfiguration:
    virtual_hosts = []
    for service, attached in services:
        domains = [service.ref.host]
        if service.ref.namespace == client_namespace:
            domains.insert(0, service.ref.name)
        virtual_hosts.append(rc.VirtualHost(
            name=service.ref.host, domains=domains, routes=service_routes(service, attached)))
    virtual_hosts.append(rc.VirtualHost(
        name="unknown-host", domains=["*"],
        routes=[_direct(404, _UNKNOWN_HOST_BODY)]))
    return route_pb2.RouteConfiguration(
        name=names.outbound_route_config(client_namespace),
        virtual_hosts=virtual_hosts,
        # Routes may name clusters of services that have just gone; requests then fail with a
        # clear 503 instead of the whole table being rejected.
        validate_clusters=wrappers_pb2.BoolValue(value=False),
    )


def upstream_route_config(service: MeshService,
                          attached: tuple[AttachedRoute, ...]) -> route_pb2.RouteConfiguration:
    """For ``--upstream SERVICE:PORT``: every request on that port goes to one service."""
    return route_pb2.RouteConfiguration(
        name=names.upstream_route_config(service.ref),
        virtual_hosts=[rc.VirtualHost(name=service.ref.host, domains=["*"],
                                      routes=service_routes(service, attached))],
        validate_clusters=wrappers_pb2.BoolValue(value=False),
    )


def inbound_route_config(app_port: int) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(
        name=names.INBOUND_LISTENER,
        virtual_hosts=[rc.VirtualHost(name="inbound", domains=["*"], routes=[rc.Route(
            name="inbound",
            match=rc.RouteMatch(prefix="/"),
            route=rc.RouteAction(
                cluster=names.inbound_cluster(app_port),
                # The caller's sidecar enforces the request timeout; a second one here would
                # only produce confusing double timeouts.
                timeout=seconds(0),
                retry_policy=_safe_retries(),
            ),
        )])],
    )


def service_routes(service: MeshService, attached: tuple[AttachedRoute, ...]) -> list[rc.Route]:
    if service.protocol == "tcp":
        return [_direct(400, f"tulle: {service.ref.host} speaks tcp, not http; reach it with "
                             f"`tulle run --upstream {service.ref.host}:LOCAL_PORT`.\n")]
    if not attached:
        return [rc.Route(name=f"{service.ref.host}/default", match=rc.RouteMatch(prefix="/"),
                         route=_action(((names.outbound_cluster(service.ref), 1),)))]
    entries: list[tuple[tuple[int, int], int, rc.Route]] = []
    for attached_route in attached:
        key = attached_route.key
        for r, rule in enumerate(attached_route.spec.rules):
            action = _action(_weighted_backends(rule, key.namespace))
            for m, match in enumerate(rule.matches):
                route = rc.Route(name=f"{key.namespace}/{key.name}/rule{r}/match{m}",
                                 match=_path_match(match.path), route=action)
                entries.append((_precedence(match.path), len(entries), route))
    # Gateway API precedence: exact paths first, then longer prefixes; ties keep their order.
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    return [route for _, _, route in entries]


def _weighted_backends(rule: RouteRule, route_namespace: str) -> tuple[tuple[str, int], ...]:
    return tuple(
        (names.outbound_cluster(ServiceRef(b.namespace or route_namespace, b.name)), b.weight)
        for b in rule.backend_refs if b.weight > 0
    )


def _action(backends: tuple[tuple[str, int], ...]) -> rc.RouteAction:
    if len(backends) == 1:
        return rc.RouteAction(cluster=backends[0][0], retry_policy=_safe_retries())
    return rc.RouteAction(
        weighted_clusters=rc.WeightedCluster(clusters=[
            rc.WeightedCluster.ClusterWeight(name=cluster,
                                             weight=wrappers_pb2.UInt32Value(value=weight))
            for cluster, weight in backends
        ]),
        retry_policy=_safe_retries(),
    )


def _path_match(path: PathMatch) -> rc.RouteMatch:
    if path.type == "Exact":
        return rc.RouteMatch(path=path.value)
    prefix = _segment_prefix(path.value)
    if prefix == "/":
        return rc.RouteMatch(prefix="/")
    # Gateway API prefixes match whole path segments: /books matches /books/1, not /booksx.
    return rc.RouteMatch(path_separated_prefix=prefix)


def _segment_prefix(value: str) -> str:
    """Gateway API ignores a trailing "/" in a prefix: /books/ matches /books too. Envoy's
    path_separated_prefix must not end with "/" anyway."""
    return value.rstrip("/") or "/"


def _precedence(path: PathMatch) -> tuple[int, int]:
    if path.type == "Exact":
        return (0, -len(path.value))
    return (1, -len(_segment_prefix(path.value)))


def _safe_retries() -> rc.RetryPolicy:
    return rc.RetryPolicy(
        retry_on=SAFE_RETRY_ON,
        num_retries=wrappers_pb2.UInt32Value(value=SAFE_RETRIES),
        retry_host_predicate=[rc.RetryPolicy.RetryHostPredicate(
            name="envoy.retry_host_predicates.previous_hosts",
            typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()))],
        host_selection_retry_max_attempts=3,
    )


def _direct(status: int, body: str) -> rc.Route:
    return rc.Route(
        name=f"direct-{status}",
        match=rc.RouteMatch(prefix="/"),
        direct_response=rc.DirectResponseAction(
            status=status, body=base_pb2.DataSource(inline_string=body)),
    )
