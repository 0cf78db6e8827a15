"""TrafficPolicy: what HTTPRoute cannot say. Resilience and protection for a service or route.

It attaches like a Gateway API policy, through ``targetRefs``:

- to a Service: connection-pool limits, a retry budget, outlier detection and load balancing
  and timeouts apply in every caller's sidecar (the service's cluster); a rate limit applies in
  each instance of the service (its inbound side); fault injection applies to every caller's
  routes to the service;
- to an HTTPRoute (optionally one rule, by ``sectionName``): rate limits and fault injection
  apply to those routes, in each caller's sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from annotated_types import Ge, Le, Len

from tulle.model.httproute import Duration, HeaderMatch, Percent
from tulle.model.spec_config import SPEC_CONFIG

Count = Annotated[int, Ge(1), Le(1_000_000)]


@dataclass(frozen=True)
class PolicyTargetRef:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    kind: Literal["Service", "HTTPRoute"]
    name: str
    group: Literal["", "core", "gateway.networking.k8s.io"] = ""
    namespace: str | None = None
    # For an HTTPRoute: the name of one rule (rules[].name).
    section_name: Annotated[str, Len(1, 63)] | None = None


@dataclass(frozen=True)
class ConnectionPool:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    max_connections: Count | None = None
    max_pending_requests: Count | None = None
    max_requests: Count | None = None


@dataclass(frozen=True)
class RetryBudget:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    # Retries in flight may be at most this share of requests in flight...
    percent: Annotated[float, Ge(0), Le(100)] = 20.0
    # ...but at least this many, so that a quiet service can still retry.
    min_retry_concurrency: Annotated[int, Ge(0), Le(1000)] = 3


@dataclass(frozen=True)
class OutlierDetection:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    consecutive_5xx: Count | None = 5
    consecutive_gateway_errors: Count | None = None
    interval: Duration = "10s"
    base_ejection_time: Duration = "30s"
    max_ejection_percent: Percent = 10


@dataclass(frozen=True)
class HashKey:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    header: Annotated[str, Len(1, 256)] | None = None
    cookie: Annotated[str, Len(1, 256)] | None = None
    source_ip: bool | None = None


@dataclass(frozen=True)
class LoadBalancer:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    algorithm: Literal["RoundRobin", "LeastRequest", "Random", "RingHash"] = "RoundRobin"
    hash_key: HashKey | None = None  # RingHash only


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: ``requests`` tokens per ``interval``, holding at most ``burst``."""

    __pydantic_config__: ClassVar = SPEC_CONFIG

    requests: Count
    interval: Duration = "1s"
    burst: Count | None = None


@dataclass(frozen=True)
class FaultDelay:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    fixed_delay: Duration
    percent: Percent = 100


@dataclass(frozen=True)
class FaultAbort:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    http_status: Annotated[int, Ge(200), Le(599)]
    percent: Percent = 100


@dataclass(frozen=True)
class FaultMatch:
    """Inject only into requests carrying these headers."""

    __pydantic_config__: ClassVar = SPEC_CONFIG

    headers: Annotated[tuple[HeaderMatch, ...], Len(1, 8)]


@dataclass(frozen=True)
class FaultInjection:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    delay: FaultDelay | None = None
    abort: FaultAbort | None = None
    match: FaultMatch | None = None


@dataclass(frozen=True)
class PolicyTimeouts:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    connect: Duration | None = None
    idle: Duration | None = None


@dataclass(frozen=True)
class TrafficPolicySpec:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    target_refs: Annotated[tuple[PolicyTargetRef, ...], Len(1, 16)]
    connection_pool: ConnectionPool | None = None
    retry_budget: RetryBudget | None = None
    outlier_detection: OutlierDetection | None = None
    load_balancer: LoadBalancer | None = None
    rate_limit: RateLimit | None = None
    fault_injection: FaultInjection | None = None
    timeouts: PolicyTimeouts | None = None
    # DryRun: the rate limit counts what it would refuse (`tulle stat`'s wouldLimit) and
    # refuses nothing; a dry-run policy sets rateLimit alone, on a Service.
    mode: Literal["Enforce", "DryRun"] = "Enforce"


# Which settings make sense on which target.
SERVICE_ONLY = ("connection_pool", "retry_budget", "outlier_detection", "load_balancer",
                "timeouts")
