"""Every message `tulle analyze` can print, in one registry: a stable code, a level, a title,
a message template and a fix template (``str.format`` fields filled by the analyzer), and a
docs page. Codes are never reused: retire one by leaving it out of CODES, and keep its number.
TUL1000 and above belong to `tulle diagnose`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Level(IntEnum):
    INFO = 1
    WARNING = 2
    ERROR = 3

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Level:
        return cls[text.upper()]


@dataclass(frozen=True)
class Code:
    code: str
    level: Level
    title: str
    message: str  # template of the explanation
    fix: str  # template of the fix

    @property
    def docs(self) -> str:
        return f"docs/diagnostics/{self.code}.md"


UNKNOWN_SERVICE = Code(
    "TUL0001", Level.ERROR, "Reference to an unknown service",
    'unknown service "{service}" in namespace "{namespace}"{context}', "{hint}")
UNKNOWN_ROUTE = Code(
    "TUL0002", Level.ERROR, "TrafficPolicy targets an unknown HTTPRoute",
    'unknown HTTPRoute "{route}" in namespace "{namespace}": the policy applies to nothing',
    "{hint}")
UNKNOWN_RULE = Code(
    "TUL0003", Level.ERROR, "TrafficPolicy targets an unknown route rule",
    'HTTPRoute {route} has no rule named "{section}": the policy applies to nothing',
    "{hint}")
SUBSET_SELECTS_NOTHING = Code(
    "TUL0004", Level.WARNING, "Subset selects no workload",
    "the selector {selector} matches no workload in namespace {namespace}: requests sent to "
    "this subset get 503 (no healthy upstream){used_by}",
    "start a workload that carries these labels (`tulle run --service SVC --version V`), or "
    "fix the selector; workloads in {namespace}: {workloads}")
ZERO_WEIGHT_BACKEND = Code(
    "TUL0005", Level.INFO, "Backend with weight 0 never gets traffic",
    "backend {backend} has weight 0 next to other backends: it gets no request",
    "fine while draining a version; otherwise give it a weight above 0, or remove it")
DUPLICATE_BACKEND = Code(
    "TUL0006", Level.WARNING, "The same backend twice in one rule",
    "backend {backend} is listed {count} times in this rule (weights {weights}): its share "
    "is their sum, {share}",
    "list each backend once, with one weight")
WEIGHTS_NOT_PERCENT = Code(
    "TUL0007", Level.INFO, "Weights look like percentages but do not sum to 100",
    "the weights {weights} sum to {total}, not 100: weights are relative, so the shares are "
    "{shares}",
    "make the weights sum to 100 if they are meant as percentages")
RULE_NEVER_MATCHES = Code(
    "TUL0008", Level.WARNING, "Route rule never matches",
    "this rule never matches: {reason}",
    "remove the rule, or make it more specific than the earlier one (a longer path, an exact "
    "path, or an extra method, header or query condition ranks it first)")
MATCH_NEVER_MATCHES = Code(
    "TUL0009", Level.INFO, "Route match never matches",
    "this match never selects the rule: {reason}",
    "remove the match, or make it more specific than the earlier one")
CONFLICTING_ROUTES = Code(
    "TUL0010", Level.WARNING, "Two HTTPRoutes overlap on one service",
    "HTTPRoutes {first} and {second} are both attached to {service} and both match {example}: "
    "{winner} takes them (precedence: path kind and length, method, headers, query, then route "
    "name)",
    "keep the routing of one service in one HTTPRoute, or make the matches disjoint")
RETRIES_EXCEED_TIMEOUT = Code(
    "TUL0011", Level.WARNING, "Retries cannot fit in the request timeout",
    "{attempts} attempts of up to {per_try} each need {needed}, but the whole request may take "
    "{timeout}{timeout_origin}: only {fit} attempt(s) can run when the backend is slow",
    "raise timeouts.request to at least {needed}, lower retry.attempts to {retries_fit}, or "
    "shorten timeouts.backendRequest")
RETRY_AMPLIFICATION = Code(
    "TUL0012", Level.WARNING, "Retries multiply across hops",
    "one request along {path} can reach {service} up to {total} times ({factors}), more than "
    "{limit}: when {service} fails, retries multiply the load on it",
    "retry at one hop only (usually the one closest to the failing service), lower "
    "retry.attempts, or cap retries under load with a TrafficPolicy retryBudget")
PLAINTEXT_CALLERS_REFUSED = Code(
    "TUL0013", Level.ERROR, "Plaintext callers of a service that would become STRICT",
    "{requests} plaintext request(s) reached {service} in the last {window}, but its mTLS "
    "mode would be STRICT{origin}: these callers (outside the mesh) would be refused",
    "move those callers into the mesh (`tulle run`), or keep {service} PERMISSIVE with "
    "spec.mtls.mode: PERMISSIVE on its Service until they are")
TLS_FAILURES_ON_STRICT = Code(
    "TUL0014", Level.WARNING, "TLS failures on the inbound side of a STRICT service",
    "{failures} connection(s) to {service} failed the TLS handshake in the last {window}: "
    "{service} is STRICT, so a caller without a mesh certificate (plaintext, or another "
    "trust domain) is being refused",
    "run the caller in the mesh (`tulle run`), or set spec.mtls.mode: PERMISSIVE on the "
    "Service while it migrates")
POLICY_SELECTS_NOTHING = Code(
    "TUL0015", Level.WARNING, "TrafficPolicy targets a service without workloads",
    "{target} has no workload, so this policy has nothing to act on",
    "start the service's workloads, or point targetRefs at a service that runs; workloads "
    "run for: {services}")
RATE_LIMIT_BELOW_TRAFFIC = Code(
    "TUL0016", Level.WARNING, "Rate limit below current traffic",
    "{who} {verb} {observed} requests/s over the last {window}, above the limit of {allowed} "
    "requests/s ({scope}): about {share} of those requests would get 429{evidence}",
    "raise rateLimit.requests (or shorten rateLimit.interval) above the observed rate, or "
    "confirm that rejecting this traffic is intended")
CIRCUIT_BREAKER_BELOW_CONCURRENCY = Code(
    "TUL0017", Level.WARNING, "Circuit-breaker limit below observed concurrency",
    "{caller} has {observed} {what} to {service} (last {window}), above "
    "connectionPool.{setting} = {limit}: excess requests fail at once with 503 (flag UO)"
    "{evidence}",
    "raise connectionPool.{setting} to at least {suggested} (limits are per caller), or "
    "remove it to use Envoy's default of 1024")
POLICY_SETTING_IGNORED = Code(
    "TUL0018", Level.WARNING, "A TrafficPolicy setting is ignored",
    "{target} already gets {setting} from {kept}; this policy's {setting} is ignored",
    "set {setting} for {target} in one TrafficPolicy only")
SUBSET_PROTOCOL_MISMATCH = Code(
    "TUL0019", Level.WARNING, "A subset declares another protocol than its service",
    "subset {subset} declares protocol {declared}, but its instances are workloads of "
    "{service}, which {speaks}: {consequence}",
    "remove spec.protocol from {subset} (a subset speaks its service's protocol), or make "
    "it {protocol}")
ROUTE_ON_TCP_SERVICE = Code(
    "TUL0020", Level.WARNING, "An HTTPRoute is attached to a tcp service",
    "{service} is a tcp service: its sidecars forward bytes without reading requests, so this "
    "route's {ignored} never apply to it",
    "detach the route (spec.parentRefs), or declare {service} http, http2 or grpc if it "
    "speaks one of them")
GRPC_RETRY_ON_NON_GRPC = Code(
    "TUL0021", Level.WARNING, "gRPC retry codes on a service that does not speak gRPC",
    "retry.grpcCodes [{codes}] never trigger for {services}: declared {protocols}, its "
    "answers carry no grpc-status",
    "retry on HTTP statuses with retry.codes instead, or declare the service's protocol "
    "grpc if it is a gRPC server")
MIXED_PROTOCOL_BACKEND = Code(
    "TUL0022", Level.WARNING, "A route sends requests to a service of another protocol",
    "requests to {parent} ({parent_protocol}) are routed to {backend}, declared "
    "{backend_protocol}: {consequence}",
    "route {parent}'s requests to services of the same protocol, or fix the protocol of "
    "{backend} or {parent}")
PORTS_DIFFER = Code(
    "TUL0023", Level.INFO, "One service is given different ports",
    "{service} is referenced with ports {ports} ({where}): tulle routes a service as a "
    "whole (each instance has one application port, `tulle run --port`), so these ports do "
    "not separate its traffic",
    "drop the ports, or run what each port serves as a service of its own")

AUTHZ_RULE_NEVER_MATCHES = Code(
    "TUL0024", Level.WARNING, "An AuthorizationPolicy rule can never match",
    "rule {rule} (on {service}) never matches: {why}",
    "fix or remove the rule; `tulle describe service` shows the ports and protocol of "
    "{service}")
AUTHZ_ALLOW_OVERRIDDEN = Code(
    "TUL0025", Level.WARNING, "A DENY rule overrides an ALLOW rule whole",
    "rule {rule} allows callers of {service} that rule {deny_rule} of {deny} denies on "
    "every request: DENY rules are decided first, so this ALLOW never lets a call through",
    "narrow the DENY rule (from, or to), or remove the ALLOW rule")
AUTHZ_DEFAULT_IGNORED = Code(
    "TUL0026", Level.WARNING, "Two defaults for one scope",
    "{kept} already sets the default for {scope} ({action}); this policy's defaultAction "
    "is ignored",
    "keep one defaultAction policy per namespace, and one for the mesh")
UNKNOWN_GATEWAY = Code(
    "TUL0027", Level.ERROR, "HTTPRoute names an unknown Gateway",
    'unknown Gateway "{gateway}" in namespace "{namespace}": no gateway serves this route',
    "{hint}")

CODES: tuple[Code, ...] = (
    UNKNOWN_SERVICE, UNKNOWN_ROUTE, UNKNOWN_RULE, SUBSET_SELECTS_NOTHING, ZERO_WEIGHT_BACKEND,
    DUPLICATE_BACKEND, WEIGHTS_NOT_PERCENT, RULE_NEVER_MATCHES, MATCH_NEVER_MATCHES,
    CONFLICTING_ROUTES, RETRIES_EXCEED_TIMEOUT, RETRY_AMPLIFICATION, PLAINTEXT_CALLERS_REFUSED,
    TLS_FAILURES_ON_STRICT, POLICY_SELECTS_NOTHING, RATE_LIMIT_BELOW_TRAFFIC,
    CIRCUIT_BREAKER_BELOW_CONCURRENCY, POLICY_SETTING_IGNORED, SUBSET_PROTOCOL_MISMATCH,
    ROUTE_ON_TCP_SERVICE, GRPC_RETRY_ON_NON_GRPC, MIXED_PROTOCOL_BACKEND, PORTS_DIFFER,
    AUTHZ_RULE_NEVER_MATCHES, AUTHZ_ALLOW_OVERRIDDEN, AUTHZ_DEFAULT_IGNORED, UNKNOWN_GATEWAY,
)


def find_code(code: str) -> Code | None:
    return next((c for c in CODES if c.code == code.upper()), None)
