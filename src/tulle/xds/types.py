"""xDS resource types, and the order in which pushes must reach a proxy."""

from __future__ import annotations

_PREFIX = "type.googleapis.com/"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
# The outbound listener's routing scopes (SRDS): host -> the route table of one service.
SCOPED_ROUTE = _PREFIX + "envoy.config.route.v3.ScopedRouteConfiguration"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

# Make-before-break: secrets exist before the clusters and listeners that use them, a cluster
# exists (with its endpoints) before a route can point at it, a listener exists before its
# scopes are sent, and a scope before the route table it names (Envoy asks for that table by
# name once it holds the scope). Removed clusters go last (see stream.py).
PUSH_ORDER: tuple[str, ...] = (SECRET, CLUSTER, ENDPOINT, LISTENER, SCOPED_ROUTE, ROUTE)

# Envoy subscribes to every listener, cluster and scope (wildcard); routes and endpoints by
# name.
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER, SCOPED_ROUTE})

SHORT_NAMES = {CLUSTER: "CDS", ENDPOINT: "EDS", LISTENER: "LDS", SCOPED_ROUTE: "SRDS",
               ROUTE: "RDS", SECRET: "SDS"}
BY_SHORT_NAME = {short: url for url, short in SHORT_NAMES.items()}


def short_name(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])
