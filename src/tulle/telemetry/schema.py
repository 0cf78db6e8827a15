"""What tulle measures, shared by the agent (which extracts it from Envoy) and the control plane
(which keeps windows of it). Standard library only: the agent imports this.

A *series* is one thing measured in one proxy: its inbound side, its calls to one service,
or one route rule. Its values are counters (requests per status class, bytes, retries...),
a latency histogram over fixed buckets, and a few gauges (active connections, healthy
endpoints). Agents send per-interval deltas of counters and the latest gauges.
"""

from __future__ import annotations

from dataclasses import dataclass

# Latency bucket upper bounds in milliseconds; one more bucket holds everything slower.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
    1000, 1500, 2000, 3000, 5000, 10000, 30000, 60000)
LATENCY_FIELDS: tuple[str, ...] = tuple(f"lat{i}" for i in range(len(LATENCY_BOUNDS_MS) + 1))
LATENCY_SUM = "latsum"  # milliseconds, approximated from Envoy's histogram bins

CODE_CLASSES: tuple[str, ...] = ("1xx", "2xx", "3xx", "4xx", "5xx")
REQUEST_FIELDS: tuple[str, ...] = tuple(f"rq{c[0]}" for c in CODE_CLASSES)

# Series kinds.
INBOUND = "in"              # requests this workload received over mTLS
INBOUND_PLAINTEXT = "in_plain"  # ...and in plaintext (PERMISSIVE services only)
OUTBOUND = "out"            # this workload's calls to one service, as the caller saw them
ROUTE = "route"             # this workload's calls matched by one HTTPRoute rule
PROXY = "proxy"             # the sidecar itself
# This workload's calls out of the mesh: to one ExternalService port (destination
# "HOST:PORT"), or to any other host passed through under ALLOW_ANY (PASSTHROUGH).
EGRESS = "egress"
PASSTHROUGH = "*"
# This workload's calls to a host in no scope, refused under REGISTRY_ONLY (502): destination
# is the host as the application named it. Counted by the control plane from the refusals'
# access log, not by the agent.
REFUSED = "refused"
# One RBAC policy of the inbound side's AuthorizationPolicy filter: SeriesKey.rule is its ID
# ("AuthorizationPolicy:NS/NAME:RULE", "no-ALLOW-rule-matched:...", "default-deny:NS/NAME").
AUTHZ = "authz"
# Requests (connections, for tcp services) it denied, and those it would deny in dry run.
AUTHZ_DENIED = "denied"
AUTHZ_WOULD_DENY = "would_deny"
# The same, for AuthorizationPolicies on ExternalServices: one RBAC policy of a caller's own
# egress filter (in its outbound listener), what it denied this caller and would deny.
EGRESS_AUTHZ = "egress_authz"
# This workload's calls to a service with a DryRun HTTPRoute, by where the trial would have
# sent them: destination is the service, route and rule what would have taken them ("" and
# "": no rule). Counted by the control plane from the callers' trial logs, not by the agent.
TRIAL = "trial"
TRIAL_TO = "to:"  # + where: a TRIAL series' requests that would have gone there
# The rule of a TRIAL series counting requests the control plane did not decide (over its
# budget): no rule is named so (rule names are DNS labels).
TRIAL_SKIPPED = "~skipped"

# The sidecar's own health (PROXY series): Envoy's server state (0 LIVE, 1 DRAINING, 2
# PRE_INITIALIZING, 3 INITIALIZING), how many listeners its admin stopped since it started
# (`/drain_listeners`; tulle never calls it), and how often the agent restarted it.
SERVER_STATE = "state"
SERVER_LIVE = 0
LISTENERS_STOPPED = "lstopped"
RESTARTS = "restarts"

# gRPC calls, and those that failed by their grpc-status (counted as 5xx too when a series
# carries only gRPC: see envoy_stats).
GRPC_CALLS = "grpc"
GRPC_FAILED = "grpc_fail"
# ...and the failed calls by grpc-status, "g14" for UNAVAILABLE: at most 16 fields a series.
GRPC_CODE_PREFIX = "g"

# Upgraded connections (WebSocket) an instance's sidecar carried to its application (INBOUND
# series): how many opened, how many are open, the bytes each way (received from callers,
# sent to them) and, for those that closed, their durations over fixed buckets (seconds).
UPGRADES = "upg"
UPGRADES_ACTIVE = "upg_cx"
UPGRADE_RX = "upg_rx"
UPGRADE_TX = "upg_tx"
UPGRADE_BOUNDS_S: tuple[float, ...] = (0.1, 1, 10, 60, 600, 3600)
UPGRADE_DURATION_FIELDS: tuple[str, ...] = tuple(
    f"upgd{i}" for i in range(len(UPGRADE_BOUNDS_S) + 1))
UPGRADE_DURATION_SUM = "upgdsum"  # milliseconds

# Gauges are sent as their latest value; everything else is a counter sent as a delta.
GAUGES = frozenset({"cx", "healthy", "members", "ejected", "mem", "stats", "uptime",
                    "xds", SERVER_STATE, LISTENERS_STOPPED, UPGRADES_ACTIVE})

# Route rules name their Envoy stats "rt|NAMESPACE|ROUTE|INDEX|RULE" (no dots: Envoy splits
# stat names on them). RULE is the rule's name with dots replaced, or "" when unnamed.
ROUTE_STAT_PREFIX = "rt"


@dataclass(frozen=True, order=True)
class SeriesKey:
    kind: str
    # The service called (OUTBOUND; for ROUTE the virtual host, the same), as
    # "name.namespace"; "" otherwise.
    destination: str = ""
    # ROUTE only: "namespace/name" of the HTTPRoute, and the rule's index and name.
    route: str = ""
    rule: str = ""  # AUTHZ: the RBAC policy's ID

    def to_wire(self) -> dict[str, str]:
        out = {"k": self.kind}
        for field, value in (("dst", self.destination), ("route", self.route),
                             ("rule", self.rule)):
            if value:
                out[field] = value
        return out

    @classmethod
    def from_wire(cls, data: dict[str, object]) -> SeriesKey:
        return cls(str(data["k"]), str(data.get("dst", "")), str(data.get("route", "")),
                   str(data.get("rule", "")))


def _safe(name: str) -> str:
    return name.replace(".", "_").replace("|", "_")


def route_stat_prefix(namespace: str, route: str, index: int, rule_name: str | None) -> str:
    return f"{ROUTE_STAT_PREFIX}|{namespace}|{route}|{index}|{_safe(rule_name or '')}"


def rule_key(index: int, rule_name: str | None) -> str:
    """How a rule is named in route series: what parse_route_stat_prefix gives back."""
    return _safe(rule_name) if rule_name else str(index)


# A route rule's dry-run rate limit (a DryRun TrafficPolicy on the rule) names its stats
# "rtdry|HOST|NAMESPACE|ROUTE|INDEX|RULE", HOST the service the rule routes for with "_" for
# its dots (names have no "_" of their own): one bucket, and one count, per rule and service.
ROUTE_DRY_RUN_PREFIX = "rtdry"


def route_dry_run_prefix(host: str, namespace: str, route: str, index: int,
                         rule_name: str | None) -> str:
    return (f"{ROUTE_DRY_RUN_PREFIX}|{_safe(host)}|{namespace}|{route}|{index}"
            f"|{_safe(rule_name or '')}")


def parse_route_dry_run_prefix(prefix: str) -> tuple[str, str, str] | None:
    """(service host, "namespace/route", rule) for a dry-run limit's stat prefix, or None."""
    parts = prefix.split("|")
    if len(parts) != 6 or parts[0] != ROUTE_DRY_RUN_PREFIX:
        return None
    _, host, namespace, route, index, name = parts
    return host.replace("_", "."), f"{namespace}/{route}", name or index


def parse_route_stat_prefix(prefix: str) -> tuple[str, str] | None:
    """("namespace/route", "rule") for a route stat prefix, or None. The rule is its name, or
    its index when it has none."""
    parts = prefix.split("|")
    if len(parts) != 5 or parts[0] != ROUTE_STAT_PREFIX:
        return None
    _, namespace, route, index, name = parts
    return f"{namespace}/{route}", name or index


# The only Envoy stats a sidecar keeps (its stats matcher): what tulle reads, nothing more.
# Without it a sidecar in a 100-service mesh carries tens of thousands of stats.
_CLUSTER_STATS = (
    r"upstream_rq_([1-5]xx|[1-5][0-9][0-9]|time|retry|retry_overflow|retry_success"
    r"|retry_limit_exceeded|timeout|per_try_timeout|pending_overflow|rx_reset|tx_reset)"
    r"|upstream_cx_(active|total|connect_fail|connect_timeout|rx_bytes_total|tx_bytes_total"
    r"|destroy_remote_with_active_rq|overflow|none_healthy)"
    r"|membership_(healthy|total)"
    r"|outlier_detection\.ejections_(active|enforced_total)"
    r"|ssl\.(handshake|connection_error|fail_verify_[a-z_]+|no_certificate)"
    r"|grpc\.(success|failure|total|[1-9]|1[0-6])")
STATS_INCLUSION: tuple[str, ...] = (
    rf"^cluster\.(outbound|inbound|external)\|[^.]+\.({_CLUSTER_STATS})$",
    rf"^cluster\.passthrough\.({_CLUSTER_STATS})$",
    # The durations of upgraded connections (a histogram): the cluster carries nothing else.
    r"^cluster\.inbound\|[0-9]+\|upgrade\.upstream_cx_length_ms$",
    r"^http\.(inbound|inbound_plaintext|outbound|upstream_[0-9]+)\.downstream_(rq_[1-5]xx"
    r"|rq_time|cx_active|cx_total|cx_rx_bytes_total|cx_tx_bytes_total)$",
    r"^http\.[a-z_0-9]+\.(fault\.(aborts_injected|delays_injected)|no_route)$",
    r"^http\.outbound\.rq_direct_response$",
    r"^vhost\..+\.route\.rt\|[^.]+\.upstream_rq_([1-5]xx|[1-5][0-9][0-9]|time|retry"
    r"|timeout)$",
    r"^[a-z_]+_ratelimit(er|_dry_run)?\.http_local_rate_limit\.rate_limited$",
    r"^rtdry\|[^.]+\.http_local_rate_limit\.rate_limited$",
    # AuthorizationPolicy: the inbound RBAC filter's decisions, enforced and dry-run (shadow),
    # in all and per RBAC policy (one per rule: bounded by the policies, not by traffic).
    r"^http\.(inbound|inbound_plaintext)\.rbac\..+$",
    r"^(inbound|inbound_plaintext)\.rbac\..+$",
    # ...and a caller's egress RBAC filter (AuthorizationPolicies on ExternalServices).
    r"^http\.outbound\.[a-z_.]*policy\..+\.(denied|shadow_denied)$",
    r"^tcp\.(inbound|inbound_plaintext|upstream_[0-9]+)\.downstream_cx_(total|rx_bytes_total|tx_bytes_total)$",
    # The inbound listener's TLS stats, named by address ("listener.10.0.0.1_15006.ssl...").
    r"^listener\.[0-9a-f.:\[\]]+_[0-9]+\.ssl\.(handshake|connection_error|fail_verify_[a-z_]+"
    r"|no_certificate)$",
    r"^server\.(live|state|uptime|memory_allocated|memory_heap_size|total_connections"
    r"|days_until_first_cert_expiring)$",
    r"^control_plane\.connected_state$",
    r"^cluster_manager\.(cds\.update_(success|rejected)|active_clusters|warming_clusters)$",
    r"^listener_manager\.(lds\.update_(success|rejected)|total_listeners_active"
    r"|listener_stopped)$",
    # Not the route tables' rds.*.update_* stats: one pair per service in every sidecar since
    # outbound routes are per service (SRDS), and the control plane sees every ACK and NACK.
    r"^sds\.[^.]+\.update_(success|rejected)$",
    r"^tracing\.opentelemetry\.[a-z_.]+$",
    r"^access_logs\.[a-z_.]+$",
)
