"""From Envoy's admin stats to tulle series. Standard library only: the agent runs this.

The input is ``/stats?format=json&histogram_buckets=detailed``: counters and gauges by full
name, and for each histogram its cumulative bins (lower bound, width, count). Bins are folded
into tulle's fixed latency buckets, so every proxy reports the same shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tulle.telemetry.schema import (
    AUTHZ,
    AUTHZ_DENIED,
    AUTHZ_WOULD_DENY,
    EGRESS,
    EGRESS_AUTHZ,
    GAUGES,
    GRPC_CALLS,
    GRPC_CODE_PREFIX,
    GRPC_FAILED,
    INBOUND,
    INBOUND_PLAINTEXT,
    LATENCY_BOUNDS_MS,
    LATENCY_FIELDS,
    LATENCY_SUM,
    LISTENERS_STOPPED,
    OUTBOUND,
    PASSTHROUGH,
    PROXY,
    ROUTE,
    SERVER_STATE,
    UPGRADE_BOUNDS_S,
    UPGRADE_DURATION_FIELDS,
    UPGRADE_DURATION_SUM,
    UPGRADE_RX,
    UPGRADE_TX,
    UPGRADES,
    UPGRADES_ACTIVE,
    SeriesKey,
    parse_route_dry_run_prefix,
    parse_route_stat_prefix,
)

Values = dict[str, int]
Series = dict[SeriesKey, Values]


@dataclass(frozen=True)
class EnvoyStats:
    """One reading of a sidecar's stats."""

    values: Mapping[str, int]
    # Histogram name -> cumulative bins: (lower bound, width, count), in milliseconds.
    histograms: Mapping[str, tuple[tuple[float, float, int], ...]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.values) + len(self.histograms)


def parse(document: Mapping[str, Any]) -> EnvoyStats:
    values: dict[str, int] = {}
    histograms: dict[str, tuple[tuple[float, float, int], ...]] = {}
    for item in document.get("stats", ()):
        if "name" in item:
            value = item.get("value")
            if isinstance(value, int):
                values[item["name"]] = value
        elif isinstance(item.get("histograms"), dict):
            for detail in item["histograms"].get("details", ()):
                histograms[detail["name"]] = tuple(
                    (float(b["lower_bound"]), float(b["width"]), int(b["count"]))
                    for b in detail.get("totals", ()))
    return EnvoyStats(values, histograms)


def _bucketize(bins: Iterable[tuple[float, float, int]],
               bounds_ms: tuple[float, ...] = LATENCY_BOUNDS_MS,
               fields: tuple[str, ...] = LATENCY_FIELDS, sum_field: str = LATENCY_SUM) -> Values:
    out: Values = {}
    total_ms = 0.0
    for lower, width, count in bins:
        middle = lower + width / 2
        total_ms += middle * count
        index = next((i for i, bound in enumerate(bounds_ms) if middle <= bound),
                     len(bounds_ms))
        out[fields[index]] = out.get(fields[index], 0) + count
    if out:
        out[sum_field] = round(total_ms)
    return out


_UPGRADE_BOUNDS_MS = tuple(bound * 1000 for bound in UPGRADE_BOUNDS_S)


# The upgraded connections' own inbound cluster (see xds names.inbound_upgrade_cluster): its
# stats land in the INBOUND series under fields of their own.
_UPGRADE = "in_upgrade"
# The dry-run rate limit's stats: INBOUND series, a field of their own.
_DRY_RUN_LIMIT = "in_dry_run_limit"
# A route rule's dry-run rate limit: its ROUTE series, a field of its own.
_ROUTE_DRY_RUN_LIMIT = "route_dry_run_limit"
# Connections open from the sidecar to its application: the active connections of a tcp
# service's instance, whose inbound side has no HTTP connection manager to count them.
_APP_CX = "app_cx"

# (pattern, series kind, field) for counters and gauges; groups name the series.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), kind) for p, kind in (
    # AuthorizationPolicy decisions (RBAC), per RBAC policy, enforced and in dry run (shadow
    # rules); before the inbound listener's own rules, which would take "rbac.denied".
    (r"^http\.inbound(?:_plaintext)?\.rbac\.(?:dry_run_\.)?policy\.(?P<policy>.+)\."
     r"(?P<stat>denied|shadow_denied)$", AUTHZ),
    (r"^(?:http\.)?inbound(?:_plaintext)?\.rbac\.(?:dry_run_\.)?(?P<stat>denied|shadow_denied)$",
     INBOUND),
    # The caller's own egress filter, per RBAC policy (rules_stat_prefix "egress_").
    (r"^http\.outbound\.[a-z_.]*policy\.(?P<policy>.+)\.(?P<stat>denied|shadow_denied)$",
     EGRESS_AUTHZ),
    (r"^http\.inbound\.(?P<stat>downstream_.+)$", INBOUND),
    (r"^http\.inbound_plaintext\.(?P<stat>downstream_.+)$", INBOUND_PLAINTEXT),
    (r"^cluster\.outbound\|(?P<name>[^|.]+)\|(?P<ns>[^|.]+)\.(?P<stat>.+)$", OUTBOUND),
    # Egress: an ExternalService's port (its host's dots are underscores in stat names; a
    # valid host has none of its own), and the passthrough of ALLOW_ANY.
    (r"^cluster\.external\|(?P<host>[^|.]+)\|(?P<port>[0-9]+)\.(?P<stat>.+)$", EGRESS),
    (r"^cluster\.passthrough\.(?P<stat>.+)$", EGRESS),
    (r"^vhost\.(?P<vhost>.+)\.route\.(?P<route>rt\|[^.]+)\.(?P<stat>.+)$", ROUTE),
    (r"^cluster\.inbound\|[0-9]+\.(?P<stat>upstream_cx_connect_fail|upstream_cx_active"
     r"|grpc\.[a-z0-9]+)$", INBOUND),
    (r"^cluster\.inbound\|[0-9]+\|upgrade\.(?P<stat>upstream_cx_[a-z_]+)$", _UPGRADE),
    # A tcp service's inbound side (a TCP proxy): connections and bytes from its callers.
    (r"^tcp\.inbound\.(?P<stat>downstream_cx_[a-z_]+)$", INBOUND),
    (r"^tcp\.inbound_plaintext\.(?P<stat>downstream_cx_[a-z_]+)$", INBOUND_PLAINTEXT),
    (r"^inbound_ratelimit\.http_local_rate_limit\.(?P<stat>rate_limited)$", INBOUND),
    # A DryRun TrafficPolicy's limit: what it would have refused (it refuses nothing).
    (r"^inbound_ratelimit_dry_run\.http_local_rate_limit\.(?P<stat>rate_limited)$",
     _DRY_RUN_LIMIT),
    (r"^listener\..+\.ssl\.(?P<stat>connection_error|handshake|fail_verify_error"
     r"|fail_verify_no_cert|fail_verify_san)$", INBOUND),
    # Whole-sidecar counters `tulle diagnose` reads: requests that matched no route (NR, any
    # listener) and requests a route rule's rate limit refused in this caller (RL).
    (r"^http\.[a-z_0-9]+\.(?P<stat>no_route)$", PROXY),
    # Requests the outbound listener answered itself (400 for HTTP to a tcp service). A host
    # in no scope (refused with 502 under REGISTRY_ONLY) counts as no_route: no scope matched.
    (r"^http\.outbound\.(?P<stat>rq_direct_response)$", PROXY),
    # Requests a TrafficPolicy's fault injection aborted or delayed in this caller (FI, DI):
    # an aborted request never reaches a cluster, so no OUTBOUND series counts it.
    (r"^http\.(?:outbound|upstream_[0-9]+)\.fault\.(?P<stat>aborts_injected"
     r"|delays_injected)$", PROXY),
    (r"^route_ratelimit\.http_local_rate_limit\.(?P<stat>rate_limited)$", PROXY),
    # A rule's DryRun limit, in the caller: what it would have refused, per rule.
    (r"^(?P<route>rtdry\|[^.]+)\.http_local_rate_limit\.(?P<stat>rate_limited)$",
     _ROUTE_DRY_RUN_LIMIT),
))

# Envoy stat (after the series' prefix) -> tulle field.
_FIELDS: dict[str, dict[str, str]] = {
    INBOUND: {"downstream_cx_rx_bytes_total": "rx", "downstream_cx_tx_bytes_total": "tx",
              "downstream_cx_active": "cx", "downstream_cx_total": "cxt",
              "upstream_cx_connect_fail": "app_cfail", "upstream_cx_active": _APP_CX,
              "grpc.failure": GRPC_FAILED, "grpc.total": GRPC_CALLS,
              "rate_limited": "limited", "connection_error": "tls_err",
              "handshake": "tls_ok",
              # Callers refused at the handshake (`tulle diagnose` tells them apart): a
              # certificate that does not verify (untrusted, expired), none at all, and a SAN
              # that does not match.
              "fail_verify_error": "verify_fail", "fail_verify_no_cert": "no_cert",
              "fail_verify_san": "san_fail",
              # Requests (or tcp connections) AuthorizationPolicies denied, and would deny.
              "denied": "authz_denied", "shadow_denied": "authz_would_deny"},
    AUTHZ: {"denied": AUTHZ_DENIED, "shadow_denied": AUTHZ_WOULD_DENY},
    EGRESS_AUTHZ: {"denied": AUTHZ_DENIED, "shadow_denied": AUTHZ_WOULD_DENY},
    _DRY_RUN_LIMIT: {"rate_limited": "would_limit"},
    _ROUTE_DRY_RUN_LIMIT: {"rate_limited": "would_limit"},
    OUTBOUND: {"upstream_cx_rx_bytes_total": "rx", "upstream_cx_tx_bytes_total": "tx",
               "upstream_cx_active": "cx", "upstream_cx_total": "cxt",
               "upstream_rq_retry": "retry", "upstream_rq_retry_overflow": "retry_overflow",
               "upstream_rq_retry_limit_exceeded": "retry_exhausted",
               "upstream_rq_timeout": "timeout", "upstream_rq_per_try_timeout": "try_timeout",
               "upstream_rq_pending_overflow": "overflow", "upstream_cx_overflow": "cx_overflow",
               "upstream_cx_connect_fail": "cfail", "upstream_cx_connect_timeout": "ctimeout",
               "upstream_cx_none_healthy": "no_healthy",
               "upstream_rq_rx_reset": "reset", "upstream_rq_tx_reset": "reset",
               "outlier_detection.ejections_enforced_total": "eject",
               "outlier_detection.ejections_active": "ejected",
               "membership_healthy": "healthy", "membership_total": "members",
               "ssl.connection_error": "tls_err", "ssl.fail_verify_san": "san_fail",
               "ssl.fail_verify_error": "verify_fail",
               "grpc.failure": GRPC_FAILED, "grpc.total": GRPC_CALLS},
    ROUTE: {"upstream_rq_retry": "retry", "upstream_rq_timeout": "timeout"},
    # Upstream of the sidecar is the application: what it was sent, callers sent.
    _UPGRADE: {"upstream_cx_total": UPGRADES, "upstream_cx_active": UPGRADES_ACTIVE,
               "upstream_cx_tx_bytes_total": UPGRADE_RX, "upstream_cx_rx_bytes_total": UPGRADE_TX},
    PROXY: {"no_route": "noroute", "rq_direct_response": "nohost",
            "rate_limited": "route_limited",
            "aborts_injected": "fault_aborts", "delays_injected": "fault_delays"},
}
_FIELDS[INBOUND_PLAINTEXT] = _FIELDS[INBOUND]
_FIELDS[EGRESS] = _FIELDS[OUTBOUND]
_CODE = re.compile(r"^(?:downstream_|upstream_)rq_(?P<code>[1-5][0-9][0-9]|[1-5]xx)$")
# The grpc_stats filter's count of calls per grpc-status, per called cluster.
_GRPC_CODE = re.compile(r"^grpc\.(?P<code>[0-9]{1,2})$")
_LATENCY = {"downstream_rq_time", "upstream_rq_time"}

_PROXY_FIELDS = {"server.memory_allocated": "mem", "server.uptime": "uptime",
                 "control_plane.connected_state": "xds", "server.state": SERVER_STATE,
                 "listener_manager.listener_stopped": LISTENERS_STOPPED}


def _key(kind: str, match: re.Match[str]) -> SeriesKey | None:
    groups = match.groupdict()
    if kind in (_UPGRADE, _DRY_RUN_LIMIT):
        return SeriesKey(INBOUND)
    if kind == OUTBOUND:
        return SeriesKey(OUTBOUND, f"{groups['name']}.{groups['ns']}")
    if kind == EGRESS:
        host = groups.get("host")
        return SeriesKey(EGRESS, PASSTHROUGH if host is None else
                         f"{host.replace('_', '.')}:{groups['port']}")
    if kind in (AUTHZ, EGRESS_AUTHZ):
        return SeriesKey(kind, rule=groups["policy"])
    if kind == _ROUTE_DRY_RUN_LIMIT:
        dry = parse_route_dry_run_prefix(groups["route"])
        return None if dry is None else SeriesKey(ROUTE, *dry)
    if kind == ROUTE:
        parsed = parse_route_stat_prefix(groups["route"])
        if parsed is None:
            return None
        return SeriesKey(ROUTE, groups["vhost"], parsed[0], parsed[1])
    return SeriesKey(kind)


def _field(kind: str, stat: str) -> str | None:
    code = _CODE.match(stat)
    if code is not None:
        value = code.group("code")
        return f"rq{value[0]}" if value.endswith("xx") else f"c{value}"
    grpc_code = _GRPC_CODE.match(stat)
    if grpc_code is not None and kind in (INBOUND, INBOUND_PLAINTEXT, OUTBOUND):
        return f"{GRPC_CODE_PREFIX}{grpc_code.group('code')}"
    return _FIELDS.get(kind, {}).get(stat)


def extract(stats: EnvoyStats) -> Series:
    """Cumulative tulle series from one reading."""
    series: Series = {}
    for name, value in stats.values.items():
        if name in _PROXY_FIELDS:
            series.setdefault(SeriesKey(PROXY), {})[_PROXY_FIELDS[name]] = value
            continue
        for pattern, kind in _RULES:
            match = pattern.match(name)
            if match is None:
                continue
            key = _key(kind, match)
            field_name = _field(kind, match.group("stat"))
            if key is not None and field_name is not None:
                values = series.setdefault(key, {})
                values[field_name] = values.get(field_name, 0) + value
            break
    for name, bins in stats.histograms.items():
        for pattern, kind in _RULES:
            match = pattern.match(name)
            if match is None:
                continue
            key = _key(kind, match)
            if key is not None and match.group("stat") in _LATENCY:
                series.setdefault(key, {}).update(_bucketize(bins))
            elif key is not None and kind == _UPGRADE and \
                    match.group("stat") == "upstream_cx_length_ms":
                series.setdefault(key, {}).update(_bucketize(
                    bins, _UPGRADE_BOUNDS_MS, UPGRADE_DURATION_FIELDS, UPGRADE_DURATION_SUM))
            break
    series.setdefault(SeriesKey(PROXY), {})["stats"] = stats.count
    for values in series.values():
        _grpc_failures_are_failures(values)
        app_connections = values.pop(_APP_CX, None)
        if app_connections is not None and "cx" not in values:
            values["cx"] = app_connections  # no HTTP connection manager counted them
    return series


def _grpc_failures_are_failures(values: Values) -> None:
    """A gRPC call fails by its grpc-status, which arrives with HTTP 200: count those calls
    as 5xx, so that every view (stat, edges, Prometheus, diagnose) counts them as failures.

    Envoy's own answers to gRPC calls (no healthy upstream, timeouts) count in both the 5xx
    and the gRPC failures, so only the failures beyond the 5xx were hidden in 2xx. Done only
    when every request of the series was gRPC: with HTTP traffic beside it, the share of
    5xx that were gRPC is unknown, and the gRPC failures stay a field of their own."""
    failed = values.get(GRPC_FAILED, 0)
    if not failed or values.get(GRPC_CALLS, 0) < sum(values.get(f"rq{c}", 0)
                                                     for c in "12345"):
        return
    hidden = min(max(0, failed - values.get("rq5", 0)), values.get("rq2", 0))
    if hidden:
        values["rq2"] -= hidden
        values["rq5"] = values.get("rq5", 0) + hidden


def delta(before: Series, now: Series) -> Series:
    """What happened between two readings: counter differences (a counter that went down
    means Envoy restarted, so its whole value is new) and gauges as they are now. Series and
    fields with nothing to report are left out."""
    out: Series = {}
    for key, values in now.items():
        previous = before.get(key, {})
        changed: Values = {}
        for name, value in values.items():
            if name in GAUGES:
                if value != previous.get(name):
                    changed[name] = value
                continue
            old = previous.get(name, 0)
            difference = value - old if value >= old else value
            if difference:
                changed[name] = difference
        if changed:
            out[key] = changed
    return out
