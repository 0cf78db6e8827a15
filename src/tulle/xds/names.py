"""Names of the Envoy resources tulle generates. Tools and tests read them too."""

from __future__ import annotations

from tulle.model.meta import ResourceKey, ServiceRef

INBOUND_LISTENER = "inbound"
OUTBOUND_LISTENER = "outbound"
XDS_CLUSTER = "tulle-xds"
# The OTLP/gRPC collector sidecars export spans to, when the Mesh turns tracing on.
TRACING_COLLECTOR_CLUSTER = "tulle-otlp-collector"


def outbound_cluster(service: ServiceRef) -> str:
    return f"outbound|{service.host}"


def outbound_stat_name(service: ServiceRef) -> str:
    # Envoy splits stat names on dots; keep them out of the cluster's stat name.
    return f"outbound|{service.name}|{service.namespace}"


def inbound_cluster(app_port: int) -> str:
    return f"inbound|{app_port}"


def inbound_upgrade_cluster(app_port: int) -> str:
    """The local application again, for upgraded connections (WebSocket) only: a cluster of
    their own gives their count, bytes and durations (`tulle stat`)."""
    return f"inbound|{app_port}|upgrade"


# The outbound listener's scoped routes: a request's host (port stripped) picks a scope, and
# the scope names one service's route table.
OUTBOUND_SCOPES = "outbound"


def outbound_route_config(service: ServiceRef) -> str:
    """One service's outbound route table, the same for every client."""
    return f"outbound|{service.host}"


def outbound_scope(host: str) -> str:
    """The scope of requests whose host is ``host`` (``books`` or ``books.default``)."""
    return f"scope|{host}"


def upstream_route_config(service: ServiceRef) -> str:
    return f"upstream|{service.host}"


def upstream_listener(local_port: int) -> str:
    return f"upstream|{local_port}"


# SDS secrets, both served over ADS. The identity secret carries the certificate chain inline
# and only the *path* of the private key, which never leaves the workload's host.
IDENTITY_SECRET = "tulle-identity"
BUNDLE_SECRET = "tulle-trust-bundle"


# Egress: ExternalServices, and (Mesh spec.outbound.mode ALLOW_ANY) any other host.
def external_cluster(host: str, port: int) -> str:
    return f"external|{host}|{port}"


def external_stat_name(host: str, port: int) -> str:
    """Dots become underscores (Envoy splits stat names on dots): reversible, since a valid
    external host has no underscore."""
    return f"external|{host.replace('.', '_')}|{port}"


def external_route_config(host: str) -> str:
    return f"external|{host}"


PASSTHROUGH_CLUSTER = "passthrough"
PASSTHROUGH_ROUTE_CONFIG = "passthrough"
# The scope key of requests to hosts outside the registry under ALLOW_ANY: no valid host can
# be it (underscores), so no request names it by mistake.
PASSTHROUGH_SCOPE_KEY = "_tulle_passthrough_"


# An ingress gateway (`tulle gateway run`): its listener, and its Gateway's route table.
def gateway_listener(port: int) -> str:
    return f"gateway|{port}"


def gateway_route_config(gateway: ResourceKey) -> str:
    return f"gateway|{gateway.namespace}/{gateway.name}"
