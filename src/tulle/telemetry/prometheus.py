"""The Prometheus text format (version 0.0.4) for tulle's metrics. Standard library only: the
agent serves a sidecar's metrics with it, and the control plane its own.

Names and labels are a public contract, documented in docs/observability.md: change them only
with a deprecation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tulle.telemetry.schema import (
    AUTHZ,
    AUTHZ_DENIED,
    AUTHZ_WOULD_DENY,
    CODE_CLASSES,
    EGRESS,
    INBOUND,
    INBOUND_PLAINTEXT,
    LATENCY_BOUNDS_MS,
    LATENCY_FIELDS,
    LATENCY_SUM,
    OUTBOUND,
    PROXY,
    REQUEST_FIELDS,
    ROUTE,
    UPGRADE_BOUNDS_S,
    UPGRADE_DURATION_FIELDS,
    UPGRADE_DURATION_SUM,
    UPGRADE_RX,
    UPGRADE_TX,
    UPGRADES,
    UPGRADES_ACTIVE,
    SeriesKey,
)

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, labels: Labels, value: float, suffix: str = "") -> None:
        self.samples.append((self.name + suffix, labels, value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == int(value):
        return str(int(value))
    return repr(value)


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for family in families:
        if not family.samples:
            continue
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for name, labels, value in family.samples:
            text = ",".join(f'{key}="{_escape(val)}"' for key, val in labels)
            lines.append(f"{name}{{{text}}} {_number(value)}" if text else
                         f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


class _Families:
    """The sidecar's families, created on first use, kept in a stable order."""

    HELP: Mapping[str, tuple[str, str]] = {
        "tulle_requests_total": ("counter", "HTTP requests completed, by response code class."),
        "tulle_request_duration_seconds": (
            "histogram", "HTTP request duration, from the first byte received to the last "
                         "byte sent."),
        "tulle_bytes_received_total": ("counter", "Bytes received on connections."),
        "tulle_bytes_sent_total": ("counter", "Bytes sent on connections."),
        "tulle_connections_active": ("gauge", "Open connections."),
        "tulle_connections_total": ("counter", "Connections opened."),
        "tulle_retries_total": ("counter", "Retries of requests to a service."),
        "tulle_retry_overflows_total": (
            "counter", "Retries not attempted because the retry budget was spent."),
        "tulle_timeouts_total": ("counter", "Requests that reached their route timeout."),
        "tulle_circuit_breaker_overflows_total": (
            "counter", "Requests rejected by connection-pool limits (Envoy flag UO)."),
        "tulle_connect_failures_total": ("counter", "Failed connection attempts."),
        "tulle_outlier_ejections_total": ("counter", "Instances ejected by outlier detection."),
        "tulle_endpoints_healthy": ("gauge", "Healthy instances of the destination service."),
        "tulle_endpoints": ("gauge", "Known instances of the destination service."),
        "tulle_rate_limited_total": ("counter", "Requests refused by a rate limit (429)."),
        "tulle_tls_errors_total": ("counter", "Failed TLS handshakes."),
        "tulle_upgraded_connections_total": (
            "counter", "Upgraded connections (WebSocket) opened to the application."),
        "tulle_upgraded_connections_active": (
            "gauge", "Upgraded connections (WebSocket) open to the application."),
        "tulle_upgraded_connection_duration_seconds": (
            "histogram", "How long upgraded connections (WebSocket) lasted, once closed."),
        "tulle_upgraded_bytes_received_total": (
            "counter", "Bytes callers sent on upgraded connections (WebSocket)."),
        "tulle_upgraded_bytes_sent_total": (
            "counter", "Bytes sent to callers on upgraded connections (WebSocket)."),
        "tulle_route_requests_total": (
            "counter", "HTTP requests matched by an HTTPRoute rule, by response code class."),
        "tulle_route_request_duration_seconds": (
            "histogram", "Duration of requests matched by an HTTPRoute rule."),
        "tulle_authorization_denied_total": (
            "counter", "HTTP requests an AuthorizationPolicy denied, by RBAC policy."),
        "tulle_authorization_would_deny_total": (
            "counter", "HTTP requests a dry-run AuthorizationPolicy would deny, by RBAC "
                       "policy."),
        "tulle_proxy_memory_bytes": ("gauge", "Memory allocated by the sidecar's Envoy."),
        "tulle_proxy_stats": ("gauge", "Envoy stats kept by the sidecar (cardinality)."),
        "tulle_proxy_uptime_seconds": ("gauge", "Seconds since the sidecar's Envoy started."),
        "tulle_proxy_xds_connected": (
            "gauge", "1 while the sidecar is connected to the control plane."),
    }

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}

    def __getitem__(self, name: str) -> Family:
        if name not in self.families:
            kind, text = self.HELP[name]
            self.families[name] = Family(name, kind, text)
        return self.families[name]


# Series field -> (family, extra labels) for plain counters and gauges.
_SIMPLE: Mapping[str, str] = {
    "rx": "tulle_bytes_received_total", "tx": "tulle_bytes_sent_total",
    "cx": "tulle_connections_active", "cxt": "tulle_connections_total",
    "retry": "tulle_retries_total", "retry_overflow": "tulle_retry_overflows_total",
    "timeout": "tulle_timeouts_total", "overflow": "tulle_circuit_breaker_overflows_total",
    "cfail": "tulle_connect_failures_total", "app_cfail": "tulle_connect_failures_total",
    "eject": "tulle_outlier_ejections_total", "healthy": "tulle_endpoints_healthy",
    "members": "tulle_endpoints", "limited": "tulle_rate_limited_total",
    "tls_err": "tulle_tls_errors_total", UPGRADES: "tulle_upgraded_connections_total",
    UPGRADES_ACTIVE: "tulle_upgraded_connections_active",
    UPGRADE_RX: "tulle_upgraded_bytes_received_total",
    UPGRADE_TX: "tulle_upgraded_bytes_sent_total",
}
_PROXY: Mapping[str, str] = {"mem": "tulle_proxy_memory_bytes", "stats": "tulle_proxy_stats",
                             "uptime": "tulle_proxy_uptime_seconds",
                             "xds": "tulle_proxy_xds_connected"}


_LATENCY_BOUNDS_S = tuple(bound / 1000 for bound in LATENCY_BOUNDS_MS)


def _histogram(family: Family, labels: Labels, values: Mapping[str, int],
               bounds_s: tuple[float, ...] = _LATENCY_BOUNDS_S,
               fields: tuple[str, ...] = LATENCY_FIELDS, sum_ms: str = LATENCY_SUM) -> None:
    cumulative = 0
    for bound, name in zip((*bounds_s, None), fields, strict=True):
        cumulative += values.get(name, 0)
        le = "+Inf" if bound is None else _number(bound)
        family.add((*labels, ("le", le)), cumulative, "_bucket")
    family.add(labels, values.get(sum_ms, 0) / 1000, "_sum")
    family.add(labels, cumulative, "_count")


def _series_labels(key: SeriesKey, proxy: Labels) -> Labels | None:
    if key.kind in (INBOUND, INBOUND_PLAINTEXT):
        tls = "plaintext" if key.kind == INBOUND_PLAINTEXT else "mtls"
        return (("direction", "inbound"), *proxy, ("tls", tls))
    name, _, namespace = key.destination.partition(".")
    if key.kind == OUTBOUND:
        return (("direction", "outbound"), *proxy, ("dst_service", name),
                ("dst_namespace", namespace))
    if key.kind == EGRESS:
        host, _, port = key.destination.rpartition(":") if ":" in key.destination \
            else (key.destination, "", "")  # the passthrough: any host
        return (("direction", "egress"), *proxy, ("dst_host", host), ("dst_port", port))
    if key.kind == ROUTE:
        return (("direction", "outbound"), *proxy, ("dst_service", name),
                ("dst_namespace", namespace), ("route", key.route), ("rule", key.rule))
    return None


def _authorization(families: _Families, key: SeriesKey, values: Mapping[str, int],
                   proxy: Labels) -> None:
    """An AUTHZ series: one RBAC policy's denials, enforced and in dry run."""
    labels = (("direction", "inbound"), *proxy, ("policy", key.rule))
    for field_name, family_name in ((AUTHZ_DENIED, "tulle_authorization_denied_total"),
                                    (AUTHZ_WOULD_DENY, "tulle_authorization_would_deny_total")):
        if field_name in values:
            families[family_name].add(labels, values[field_name])


def sidecar_families(series: Mapping[SeriesKey, Mapping[str, int]],
                     proxy: Labels) -> list[Family]:
    """``proxy``: the labels of the workload (namespace, workload, service)."""
    families = _Families()
    for key in sorted(series):
        values = series[key]
        if key.kind == PROXY:
            for field_name, family_name in _PROXY.items():
                if field_name in values:
                    families[family_name].add(proxy, values[field_name])
            continue
        if key.kind == AUTHZ:
            _authorization(families, key, values, proxy)
            continue
        labels = _series_labels(key, proxy)
        if labels is None:
            continue
        prefix = "tulle_route_" if key.kind == ROUTE else "tulle_"
        for code_class, field_name in zip(CODE_CLASSES, REQUEST_FIELDS, strict=True):
            families[f"{prefix}requests_total"].add((*labels, ("code_class", code_class)),
                                                    values.get(field_name, 0))
        if any(name in values for name in LATENCY_FIELDS):
            _histogram(families[f"{prefix}request_duration_seconds"], labels, values)
        if key.kind == ROUTE:
            continue
        for field_name, family_name in _SIMPLE.items():
            if field_name in values:
                families[family_name].add(labels, values[field_name])
        if any(name in values for name in UPGRADE_DURATION_FIELDS):
            _histogram(families["tulle_upgraded_connection_duration_seconds"], labels, values,
                       UPGRADE_BOUNDS_S, UPGRADE_DURATION_FIELDS, UPGRADE_DURATION_SUM)
    return list(families.families.values())
