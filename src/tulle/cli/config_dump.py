"""Reading Envoy's /config_dump: the sections `tulle proxy-config` shows, as plain rows.

Pure functions over the parsed JSON, so they are tested without an Envoy. Private keys never
leave this module: Envoy already redacts them, and ``strip_private_keys`` drops the field
anyway, in case a build or a future field does not.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_DUMP_TYPES = {
    "bootstrap": "BootstrapConfigDump", "clusters": "ClustersConfigDump",
    "endpoints": "EndpointsConfigDump", "listeners": "ListenersConfigDump",
    "routes": "RoutesConfigDump", "scoped_routes": "ScopedRoutesConfigDump",
    "secrets": "SecretsConfigDump",
}


def strip_private_keys(value: Any) -> Any:
    """``value`` without any ``private_key`` field, at any depth."""
    if isinstance(value, dict):
        return {k: strip_private_keys(v) for k, v in value.items() if k != "private_key"}
    if isinstance(value, list):
        return [strip_private_keys(v) for v in value]
    return value


def section(dump: dict[str, Any], name: str) -> dict[str, Any]:
    """One of config_dump's configs (``clusters``, ``listeners``...), or {} when absent."""
    suffix = "." + _DUMP_TYPES[name]
    for config in dump.get("configs", []):
        if str(config.get("@type", "")).endswith(suffix):
            return dict(config)
    return {}


def dynamic_resources(dump: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """What the proxy got over xDS, per type and name: the other side of `--diff`."""
    listeners = {}
    for entry in section(dump, "listeners").get("dynamic_listeners", []):
        state = entry.get("active_state") or entry.get("warming_state") or {}
        if "listener" in state:
            listeners[entry.get("name", "")] = state["listener"]
    clusters = _by(section(dump, "clusters").get("dynamic_active_clusters", []), "cluster",
                   "name")
    # With include_eds Envoy also lists the inline endpoints of non-EDS clusters here; those
    # came with their cluster, not over EDS.
    inline = {name for name, cluster in clusters.items() if "load_assignment" in cluster}
    endpoints = _by(section(dump, "endpoints").get("dynamic_endpoint_configs", []),
                    "endpoint_config", "cluster_name")
    return {
        "CDS": clusters,
        "EDS": {name: e for name, e in endpoints.items() if name not in inline},
        "LDS": listeners,
        "SRDS": _scopes(section(dump, "scoped_routes")),
        "RDS": _by(section(dump, "routes").get("dynamic_route_configs", []), "route_config",
                   "name"),
        "SDS": _by(section(dump, "secrets").get("dynamic_active_secrets", []), "secret", "name"),
    }


def _scopes(scoped: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Scopes (SRDS) by name; config_dump groups them by the listener's scoped routes."""
    out = {}
    for group in scoped.get("dynamic_scoped_route_configs", []):
        for scope in group.get("scoped_route_configs", []):
            if isinstance(scope, dict):
                out[str(scope.get("name", ""))] = {k: v for k, v in scope.items() if k != "@type"}
    return out


def _by(entries: list[dict[str, Any]], field: str, key: str) -> dict[str, dict[str, Any]]:
    out = {}
    for entry in entries:
        resource = entry.get(field)
        if isinstance(resource, dict):
            out[str(resource.get(key, ""))] = resource
    return out


def _all(sec: dict[str, Any], static: str, dynamic: str, field: str) -> Iterator[dict[str, Any]]:
    for entry in [*sec.get(static, []), *sec.get(dynamic, [])]:
        if isinstance(entry.get(field), dict):
            yield entry[field]


def _address(address: dict[str, Any]) -> str:
    socket = address.get("socket_address", {})
    if socket:
        return f"{socket.get('address', '')}:{socket.get('port_value', 0)}"
    pipe = address.get("pipe", {})
    return f"unix:{pipe['path']}" if "path" in pipe else "-"


def _type_name(config: dict[str, Any]) -> str:
    return str(config.get("typed_config", {}).get("@type", "")).rsplit(".", 1)[-1]


# -- listeners ---------------------------------------------------------------------------------

def listener_rows(dump: dict[str, Any]) -> list[dict[str, Any]]:
    sec = section(dump, "listeners")
    listeners = [*(e["listener"] for e in sec.get("static_listeners", []) if "listener" in e)]
    for entry in sec.get("dynamic_listeners", []):
        state = entry.get("active_state") or entry.get("warming_state") or {}
        if "listener" in state:
            listeners.append(state["listener"])
    rows = []
    for listener in listeners:
        chains = listener.get("filter_chains", [])
        kinds, routes = [], []
        for chain in chains:
            for network_filter in chain.get("filters", []):
                kind = _type_name(network_filter)
                if kind == "HttpConnectionManager":
                    kinds.append("HCM")
                    hcm = network_filter["typed_config"]
                    scoped = hcm.get("scoped_routes", {}).get("name")
                    routes.append(hcm.get("rds", {}).get("route_config_name")
                                  or (f"scoped:{scoped}" if scoped else None)
                                  or ("inline" if "route_config" in hcm else "-"))
                elif kind == "TcpProxy":
                    kinds.append("TCP")
        rows.append({"name": listener.get("name", ""),
                     "address": _address(listener.get("address", {})),
                     "filterChains": len(chains), "filters": sorted(set(kinds)),
                     "routeConfigs": sorted(set(routes))})
    return rows


# -- routes ------------------------------------------------------------------------------------

def _match(match: dict[str, Any]) -> str:
    for key in ("prefix", "path", "path_separated_prefix"):
        if key in match:
            return f"{key}={match[key]}"
    if "safe_regex" in match:
        return f"regex={match['safe_regex'].get('regex', '')}"
    return "-"


def _action(route: dict[str, Any]) -> str:
    action = route.get("route", {})
    if "cluster" in action:
        return str(action["cluster"])
    if "weighted_clusters" in action:
        return ", ".join(f"{c.get('name')}:{c.get('weight', 0)}"
                         for c in action["weighted_clusters"].get("clusters", []))
    if "redirect" in route:
        return "redirect"
    if "direct_response" in route:
        return f"direct {route['direct_response'].get('status', '')}"
    return "-"


def route_rows(dump: dict[str, Any]) -> list[dict[str, Any]]:
    # A table a scope picks (SRDS) matches the hosts of its scopes' keys, not its "*".
    hosts: dict[str, list[str]] = {}
    for scope in _scopes(section(dump, "scoped_routes")).values():
        keys = [f.get("string_key", "") for f in scope.get("key", {}).get("fragments", [])]
        hosts.setdefault(str(scope.get("route_configuration_name", "")), []).extend(keys)
    rows = []
    for config in _all(section(dump, "routes"), "static_route_configs", "dynamic_route_configs",
                       "route_config"):
        scoped = sorted(hosts.get(config.get("name", ""), []), key=len)
        for host in config.get("virtual_hosts", []):
            for route in host.get("routes", []):
                rows.append({"routeConfig": config.get("name", ""),
                             "virtualHost": host.get("name", ""),
                             "domains": scoped or host.get("domains", []),
                             "match": _match(route.get("match", {})),
                             "action": _action(route)})
    return rows


# -- clusters and endpoints --------------------------------------------------------------------

_HEALTHY = {"UNKNOWN", "HEALTHY"}


@dataclass(frozen=True)
class AppReadiness:
    """What the control plane's registry knows of the proxy's own application: its port and
    the workload's state, from its agent's probe of that port. Envoy's static inbound
    endpoint has no health check, so Envoy calls it healthy whether anything listens or not;
    the agent's probe is the truth (the same that `tulle diagnose` reads for TUL1002)."""

    port: int
    state: str  # a WorkloadState value: starting, ready, not-ready, draining
    reason: str = ""  # why not ready, when the probe said more than "does not accept"


def _app_health(app: AppReadiness) -> tuple[str, str] | None:
    """(health, detail) of the inbound endpoint when the application is not ready."""
    if app.state in ("not-ready", "starting") and "health check" in app.reason:
        return "NOT READY", f"{app.reason} (see `tulle diagnose`, TUL1002)"
    if app.state == "not-ready":
        return "NOT READY", (f"app not listening on {app.port} (it stopped accepting "
                             "connections; see `tulle diagnose`, TUL1002)")
    if app.state == "starting":
        return "NOT READY", (f"app not listening on {app.port} (yet: the workload is "
                             "starting; see `tulle diagnose`, TUL1002)")
    if app.state == "draining":
        return "DRAINING", "the workload is shutting down"
    return None


def endpoint_rows(dump: dict[str, Any], app: AppReadiness | None = None
                  ) -> list[dict[str, Any]]:
    """Every endpoint with Envoy's health; with ``app``, the inbound endpoint's health is the
    application's readiness when it is not ready (Envoy's own word is kept in
    ``envoyHealth``)."""
    assignments = list(_all(section(dump, "endpoints"), "static_endpoint_configs",
                            "dynamic_endpoint_configs", "endpoint_config"))
    # Non-EDS clusters carry their endpoints inline; without include_eds only there.
    listed = {a.get("cluster_name") for a in assignments}
    for cluster in _all(section(dump, "clusters"), "static_clusters", "dynamic_active_clusters",
                        "cluster"):
        if "load_assignment" in cluster and cluster.get("name") not in listed:
            assignments.append({"cluster_name": cluster.get("name", ""),
                                **cluster["load_assignment"]})
    inbound = f"inbound|{app.port}" if app is not None else None
    app_health = _app_health(app) if app is not None else None
    rows = []
    for assignment in assignments:
        for locality in assignment.get("endpoints", []):
            for lb in locality.get("lb_endpoints", []):
                address = lb.get("endpoint", {}).get("address", {})
                envoy_health = lb.get("health_status", "UNKNOWN")
                health, detail = envoy_health, ""
                if app_health is not None and assignment.get("cluster_name") == inbound:
                    health, detail = app_health
                rows.append({"cluster": assignment.get("cluster_name", ""),
                             "address": _address(address), "health": health,
                             "envoyHealth": envoy_health, "detail": detail})
    return rows


def cluster_rows(dump: dict[str, Any], app: AppReadiness | None = None
                 ) -> list[dict[str, Any]]:
    endpoints = endpoint_rows(dump, app)
    rows = []
    for cluster in _all(section(dump, "clusters"), "static_clusters", "dynamic_active_clusters",
                        "cluster"):
        name = cluster.get("name", "")
        mine = [e for e in endpoints if e["cluster"] == name]
        kind = cluster.get("type") or cluster.get("cluster_type", {}).get("name") or "STATIC"
        rows.append({"name": name, "type": kind,
                     "healthy": sum(1 for e in mine if e["health"] in _HEALTHY),
                     "endpoints": len(mine),
                     "tls": _type_name(cluster.get("transport_socket", {}))
                     == "UpstreamTlsContext"})
    return rows


# -- secrets and bootstrap ---------------------------------------------------------------------

def _pems(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _pems(v)
    elif isinstance(value, list):
        for v in value:
            yield from _pems(v)
    elif isinstance(value, str) and "-----BEGIN CERTIFICATE-----" in value:
        yield value


def _certificate(pem: str) -> dict[str, Any]:
    from cryptography import x509  # only here: every CLI command imports this module

    cert = x509.load_pem_x509_certificate(pem.encode())
    try:
        sans = [str(v) for v in cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier)]
    except x509.ExtensionNotFound:
        sans = []
    expiry = cert.not_valid_after_utc
    return {"subject": cert.subject.rfc4514_string(), "sans": sans,
            "notAfter": expiry.isoformat(),
            "daysLeft": (expiry - datetime.datetime.now(datetime.UTC)).days}


def secret_rows(dump: dict[str, Any]) -> list[dict[str, Any]]:
    sec = strip_private_keys(section(dump, "secrets"))
    rows = []
    for entry in [*sec.get("static_secrets", []), *sec.get("dynamic_active_secrets", [])]:
        secret = entry.get("secret", {})
        kind = next((k for k in ("tls_certificate", "validation_context",
                                 "session_ticket_keys", "generic_secret") if k in secret), "-")
        first = next(iter(_pems(secret)), None)
        rows.append({"name": entry.get("name") or secret.get("name", ""), "type": kind,
                     "certificates": len(list(_pems(secret))),
                     **(_certificate(first) if first else
                        {"subject": "", "sans": [], "notAfter": "", "daysLeft": None})})
    return rows


def bootstrap_view(dump: dict[str, Any]) -> dict[str, Any]:
    bootstrap = strip_private_keys(section(dump, "bootstrap").get("bootstrap", {}))
    services = bootstrap.get("dynamic_resources", {}).get("ads_config", {}).get(
        "grpc_services", [])
    xds = services[0].get("envoy_grpc", {}).get("cluster_name", "-") if services else "-"
    return {"node": bootstrap.get("node", {}).get("id", ""),
            "cluster": bootstrap.get("node", {}).get("cluster", ""),
            "admin": _address(bootstrap.get("admin", {}).get("address", {})),
            "xdsCluster": xds}
