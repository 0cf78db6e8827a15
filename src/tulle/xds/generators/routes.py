"""RDS: how a sidecar picks the service, and the instance set, for each HTTP request.

Each service has an outbound route table of its own, shared by every client: the outbound
listener's scoped routes (SRDS) pick it by the request's host with the port stripped: ``books``
(same namespace), ``books.default`` (any namespace). A change to one service's routes therefore
sends that service's table alone. HTTPRoutes attached to a service replace its default
catch-all route. Why scopes rather than VHDS: docs/architecture.md.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.config.route.v3 import scoped_route_pb2 as srds_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from tulle.model.mesh import AttachedRoute, MeshService
from tulle.model.meta import ServiceRef
from tulle.model.paths import match_precedence
from tulle.model.policy import FaultInjection
from tulle.telemetry.schema import route_dry_run_prefix, route_stat_prefix
from tulle.xds import names
from tulle.xds.generators.access_logs import no_scope_filter
from tulle.xds.generators.common import seconds
from tulle.xds.generators.egress import outbound_vhost_marker
from tulle.xds.generators.http_filters import DRY_RUN_RATE_LIMIT, FAULT, RATE_LIMIT
from tulle.xds.generators.matchers import route_match
from tulle.xds.generators.route_actions import (
    SAFE_RETRIES,
    SAFE_RETRY_ON,
    default_route,
    rule_route,
    safe_retries,
)

__all__ = ["SAFE_RETRIES", "SAFE_RETRY_ON", "attached_routes", "inbound_route_config",
           "optional_filters",
           "outbound_route_config", "outbound_scope", "outbound_scope_hosts", "rule_filters",
           "scope",
           "scope_key_builder", "service_routes", "unknown_host_replies",
           "upstream_route_config"]

ServiceRoutes = tuple[tuple[MeshService, tuple[AttachedRoute, ...]], ...]

UNKNOWN_HOST_STATUS = 502
_UNKNOWN_HOST_BODY = (
    "tulle: %REQ(:AUTHORITY)% is neither a mesh service nor an ExternalService, and the "
    "mesh's outbound mode is REGISTRY_ONLY, so the call was not sent.\n"
    "A mesh service: use NAME or NAME.NAMESPACE as the host (`tulle get services`). "
    "A host outside the mesh: declare it as an ExternalService, or set the Mesh's "
    "spec.outbound.mode: ALLOW_ANY.\n"
)


def outbound_route_config(service: MeshService, attached: tuple[AttachedRoute, ...]
                          ) -> route_pb2.RouteConfiguration:
    """One service's outbound route table: the same for every client in every namespace (the
    scopes pick it by host), so a change to the service's routes sends this table alone."""
    return route_pb2.RouteConfiguration(
        name=names.outbound_route_config(service.ref),
        virtual_hosts=[rc.VirtualHost(name=service.ref.host, domains=["*"],
                                      routes=[_connect(service),
                                              *service_routes(service, attached)],
                                      metadata=outbound_vhost_marker())],
        # Routes may name clusters of services that have just gone; requests then fail with a
        # clear 503 instead of the table being rejected.
        validate_clusters=wrappers_pb2.BoolValue(value=False),
    )


def outbound_scope(host: str, service: ServiceRef) -> srds_pb2.ScopedRouteConfiguration:
    """Requests whose host is ``host`` (port stripped: the key is the ``:authority`` header up
    to its first ``:``, see ``scope_key_builder``) use ``service``'s route table."""
    return scope(host, names.outbound_route_config(service))


def scope(host: str, route_config: str) -> srds_pb2.ScopedRouteConfiguration:
    """Requests whose host is ``host`` use the route table ``route_config``."""
    return srds_pb2.ScopedRouteConfiguration(
        name=names.outbound_scope(host),
        route_configuration_name=route_config,
        key=srds_pb2.ScopedRouteConfiguration.Key(fragments=[
            srds_pb2.ScopedRouteConfiguration.Key.Fragment(string_key=host)]))


def outbound_scope_hosts(client_namespace: str, service: ServiceRef) -> tuple[str, ...]:
    """The hosts by which a client of ``client_namespace`` names ``service``: ``books`` (same
    namespace only) and ``books.default``."""
    return service.hosts_from(client_namespace)


def scope_key_builder() -> hcm.ScopedRoutes.ScopeKeyBuilder:
    """The scope key: the request's host, without its port (``books:7002`` -> ``books``).
    Envoy matches it exactly (case included), unlike virtual host domains."""
    extractor = hcm.ScopedRoutes.ScopeKeyBuilder.FragmentBuilder.HeaderValueExtractor(
        name=":authority", element_separator=":", index=0)
    return hcm.ScopedRoutes.ScopeKeyBuilder(fragments=[
        hcm.ScopedRoutes.ScopeKeyBuilder.FragmentBuilder(header_value_extractor=extractor)])


def unknown_host_replies() -> hcm.LocalReplyConfig:
    """What the outbound listener answers a host no scope matches (under REGISTRY_ONLY; under
    ALLOW_ANY such a host is passed through, egress.py): 502, naming the host and the mode,
    with how to name a service or declare the host. Envoy has no catch-all scope: such a
    request gets Envoy's own 404 (NR), which this rewrites (access_logs.no_scope_filter)."""
    body = substitution_format_string_pb2.SubstitutionFormatString(
        text_format_source=base_pb2.DataSource(inline_string=_UNKNOWN_HOST_BODY),
        content_type="text/plain; charset=utf-8")
    return hcm.LocalReplyConfig(mappers=[hcm.ResponseMapper(
        filter=no_scope_filter(),
        status_code=wrappers_pb2.UInt32Value(value=UNKNOWN_HOST_STATUS),
        body_format_override=body)])


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
    """Every request to the local application; WebSocket upgrades through a cluster of their
    own (its connection stats are the upgraded connections' figures)."""
    upgrade = rc.Route(
        name="inbound/upgrade",
        match=rc.RouteMatch(prefix="/", headers=[_header_equals(
            "upgrade", "websocket")]),
        route=rc.RouteAction(cluster=names.inbound_upgrade_cluster(app_port),
                             timeout=seconds(0)))  # a session lasts as long as it is used
    return route_pb2.RouteConfiguration(
        name=names.INBOUND_LISTENER,
        virtual_hosts=[rc.VirtualHost(name="inbound", domains=["*"], routes=[upgrade, rc.Route(
            name="inbound",
            match=rc.RouteMatch(prefix="/"),
            route=rc.RouteAction(
                cluster=names.inbound_cluster(app_port),
                # The caller's sidecar enforces the request timeout; a second one here would
                # only produce confusing double timeouts.
                timeout=seconds(0),
                retry_policy=safe_retries(),
            ),
        )])],
    )


DEFAULT_ROUTE_TIMEOUT_S = 15.0  # Envoy's, for a route that sets none


def service_routes(service: MeshService, attached: tuple[AttachedRoute, ...]) -> list[rc.Route]:
    routes = _service_routes(service, attached)
    if service.protocol == "grpc":
        for route in routes:
            if route.HasField("route"):
                _honour_grpc_timeout(route.route)
    return routes


def _honour_grpc_timeout(action: rc.RouteAction) -> None:
    """A gRPC caller's deadline (its ``grpc-timeout`` header) bounds the call at the sidecar:
    past it, the sidecar ends the stream (upstream too) and answers DEADLINE_EXCEEDED itself.

    Trap (verified on Envoy 1.40): with ``max_stream_duration`` on a route, the route's
    ``timeout`` no longer applies at all, to calls with or without the header. So the route's
    request timeout becomes the stream's maximum duration (calls without a deadline), and caps
    the header (calls with one): the shorter of the two ends a call. A timeout of 0 (none, for
    streams) leaves both unbounded: the deadline alone decides."""
    limit = action.timeout if action.HasField("timeout") else seconds(DEFAULT_ROUTE_TIMEOUT_S)
    action.max_stream_duration.grpc_timeout_header_max.CopyFrom(limit)
    if limit.seconds or limit.nanos:
        action.max_stream_duration.max_stream_duration.CopyFrom(limit)


def _service_routes(service: MeshService, attached: tuple[AttachedRoute, ...]
                    ) -> list[rc.Route]:
    if service.protocol == "tcp":
        return [_direct(400, f"tulle: {service.ref.host} speaks tcp, not http; reach it with "
                             f"CONNECT {service.ref.host}:PORT through the proxy, or "
                             f"`tulle run --upstream {service.ref.host}:LOCAL_PORT`.\n")]
    policy = service.policy
    balancer = policy.load_balancer
    if not attached:
        hash_key = balancer.hash_key if balancer and balancer.algorithm == "RingHash" else None
        return [default_route(f"{service.ref.host}/default",
                              names.outbound_cluster(service.ref), policy.fault_injection,
                              hash_key)]
    return attached_routes(attached, policy.fault_injection, host=service.ref.host)


def attached_routes(attached: tuple[AttachedRoute, ...],
                    fault_default: FaultInjection | None = None,
                    stats: bool = True, host: str = "") -> list[rc.Route]:
    """Every match of every rule of ``attached``, in Gateway API precedence. ``stats``: each
    rule's own stats (`tulle routes`), named for the service the routes are attached to
    (``host``; a gateway's routes have none)."""
    entries: list[tuple[tuple[int, ...], int, rc.Route]] = []
    for attached_route in attached:
        key = attached_route.key
        for r, rule in enumerate(attached_route.spec.rules):
            rule_policy = attached_route.rule_policy(r)
            fault = rule_policy.fault_injection or fault_default
            for m, match in enumerate(rule.matches):
                name = f"{key.namespace}/{key.name}/{rule.name or f'rule{r}'}/match{m}"
                route = rule_route(name, match, route_match(match), rule, key.namespace, fault,
                                   rule_policy.rate_limit, attached_route.hash_key(r),
                                   rule_policy.dry_run_rate_limit,
                                   route_dry_run_prefix(host, key.namespace, key.name, r,
                                                        rule.name))
                if stats:  # every match of a rule shares its stats
                    route.stat_prefix = route_stat_prefix(key.namespace, key.name, r,
                                                          rule.name)
                entries.append((match_precedence(match), len(entries), route))
    # Gateway API precedence; ties keep their order (route name, then rule, then match).
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    return [route for _, _, route in entries]


def optional_filters(services: ServiceRoutes) -> frozenset[str]:
    """The HTTP filters that routes built by ``service_routes`` for ``services`` configure
    (typed_per_filter_config): the listeners serving them must carry these filters, or Envoy
    ignores the routes' configs. Keep it in step with ``service_routes``."""
    used: set[str] = set()
    for service, attached in services:
        if service.protocol == "tcp":
            continue
        if service.policy.fault_injection is not None:
            used.add(FAULT)  # the default route, or every rule that sets no fault of its own
        used |= rule_filters(attached)
        if len(used) == 3:
            break
    return frozenset(used)


def rule_filters(attached: tuple[AttachedRoute, ...]) -> frozenset[str]:
    """The HTTP filters the rules of ``attached`` configure (their TrafficPolicies)."""
    used: set[str] = set()
    for attached_route in attached:
        for r in range(len(attached_route.spec.rules)):
            rule_policy = attached_route.rule_policy(r)
            if rule_policy.fault_injection is not None:
                used.add(FAULT)
            if rule_policy.rate_limit is not None:
                used.add(RATE_LIMIT)
            if rule_policy.dry_run_rate_limit is not None:
                used.add(DRY_RUN_RATE_LIMIT)
    return frozenset(used)


def _connect(service: MeshService) -> rc.Route:
    """``CONNECT books:PORT`` (what gRPC, HTTPS and many SDKs send to an HTTP proxy): the
    sidecar answers 200 and carries the tunnel's bytes to an instance's sidecar inside mTLS,
    which parses them as its service's protocol (HTTP/1.1, HTTP/2, or bytes for tcp). A tunnel
    is one connection: its requests all go to the instance it reached."""
    return rc.Route(
        name=f"{service.ref.host}/connect",
        match=rc.RouteMatch(connect_matcher=rc.RouteMatch.ConnectMatcher()),
        route=rc.RouteAction(
            cluster=names.outbound_cluster(service.ref),
            timeout=seconds(0),  # a tunnel lasts as long as its client keeps it
            upgrade_configs=[rc.RouteAction.UpgradeConfig(
                upgrade_type="CONNECT",
                connect_config=rc.RouteAction.UpgradeConfig.ConnectConfig())]))


def _header_equals(name: str, value: str) -> rc.HeaderMatcher:
    """``name`` equal to ``value``, ignoring case (Upgrade: WebSocket is valid too)."""
    return rc.HeaderMatcher(name=name, string_match=string_pb2.StringMatcher(
        exact=value, ignore_case=True))


def _direct(status: int, body: str) -> rc.Route:
    return rc.Route(
        name=f"direct-{status}",
        match=rc.RouteMatch(prefix="/"),
        direct_response=rc.DirectResponseAction(
            status=status, body=base_pb2.DataSource(inline_string=body)),
    )
