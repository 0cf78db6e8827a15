"""Every analyzer `tulle analyze` runs, as declared records: what each reads and reports."""

from __future__ import annotations

from tulle.analysis import codes
from tulle.analysis.analyzers import (
    authorization,
    capacity,
    mtls,
    policies,
    protocols,
    references,
    retries,
    routes,
    selectors,
    weights,
)
from tulle.analysis.engine import Analyzer, Need

WORKLOADS = frozenset({Need.WORKLOADS})
TELEMETRY = frozenset({Need.TELEMETRY})

ANALYZERS: tuple[Analyzer, ...] = (
    Analyzer("references", "references to services, HTTPRoutes, rules and Gateways that do "
             "not exist",
             references.KINDS, (codes.UNKNOWN_SERVICE, codes.UNKNOWN_ROUTE, codes.UNKNOWN_RULE,
                                codes.UNKNOWN_GATEWAY),
             references.unknown_references, uses=WORKLOADS),
    Analyzer("subset-selectors", "subsets (selector Services) that select no workload",
             selectors.KINDS, (codes.SUBSET_SELECTS_NOTHING,), selectors.empty_subsets,
             needs=WORKLOADS),
    Analyzer("backend-weights", "backend weights that send no traffic or odd shares",
             weights.KINDS, (codes.ZERO_WEIGHT_BACKEND, codes.DUPLICATE_BACKEND,
                             codes.WEIGHTS_NOT_PERCENT), weights.backend_weights),
    Analyzer("route-shadowing", "route rules and matches that an earlier match hides",
             routes.KINDS, (codes.RULE_NEVER_MATCHES, codes.MATCH_NEVER_MATCHES),
             routes.shadowed_rules),
    Analyzer("route-conflicts", "HTTPRoutes attached to one service with overlapping matches",
             routes.KINDS, (codes.CONFLICTING_ROUTES,), routes.conflicting_routes),
    Analyzer("retry-timeouts", "retries whose per-try timeouts do not fit the request timeout",
             retries.KINDS, (codes.RETRIES_EXCEED_TIMEOUT,), retries.retry_timeouts),
    Analyzer("retry-amplification", "retries that multiply along the observed call graph",
             retries.KINDS, (codes.RETRY_AMPLIFICATION,), retries.retry_amplification,
             needs=TELEMETRY),
    Analyzer("mtls-plaintext-callers", "plaintext callers of a service that would be STRICT",
             mtls.KINDS, (codes.PLAINTEXT_CALLERS_REFUSED,), mtls.plaintext_callers,
             needs=TELEMETRY),
    Analyzer("mtls-handshake-failures", "TLS failures on the inbound side of STRICT services",
             mtls.KINDS, (codes.TLS_FAILURES_ON_STRICT,), mtls.tls_failures, needs=TELEMETRY),
    Analyzer("policy-targets", "TrafficPolicies aimed at services without workloads",
             selectors.KINDS, (codes.POLICY_SELECTS_NOTHING,), selectors.idle_policies,
             needs=WORKLOADS),
    Analyzer("policy-conflicts", "TrafficPolicy settings another policy overrides",
             policies.KINDS, (codes.POLICY_SETTING_IGNORED,), policies.ignored_settings),
    Analyzer("protocol-mismatches", "protocols declared in ways that disagree: subsets, "
             "routes on tcp services, gRPC retries, backends of another protocol",
             protocols.KINDS, (codes.SUBSET_PROTOCOL_MISMATCH, codes.ROUTE_ON_TCP_SERVICE,
                               codes.GRPC_RETRY_ON_NON_GRPC, codes.MIXED_PROTOCOL_BACKEND),
             protocols.protocol_mismatches),
    Analyzer("service-ports", "one service referenced with different ports",
             protocols.PORT_KINDS, (codes.PORTS_DIFFER,), protocols.service_ports),
    Analyzer("authorization", "AuthorizationPolicy rules that never match, ALLOW rules a DENY "
             "overrides, and two defaults for one scope", authorization.KINDS,
             (codes.AUTHZ_RULE_NEVER_MATCHES, codes.AUTHZ_ALLOW_OVERRIDDEN,
              codes.AUTHZ_DEFAULT_IGNORED), authorization.authorization_rules, uses=WORKLOADS),
    Analyzer("rate-limits", "rate limits below the observed request rate", capacity.KINDS,
             (codes.RATE_LIMIT_BELOW_TRAFFIC,), capacity.rate_limits, needs=TELEMETRY),
    Analyzer("circuit-breakers", "connection-pool limits below the observed concurrency",
             capacity.KINDS, (codes.CIRCUIT_BREAKER_BELOW_CONCURRENCY,),
             capacity.circuit_breakers, needs=TELEMETRY),
)
