"""HTTPRoute, in the shape of the Gateway API (GAMMA mesh profile), gateway.networking.k8s.io/v1.

A route attaches to a Service through ``parentRefs`` and takes over all HTTP traffic sent to that
service from inside the mesh. Requests that match no rule get a 404, as the Gateway API says.
Versions and other subsets are Services with a ``selector`` (see service.py), so canaries are
plain weighted ``backendRefs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from annotated_types import Ge, Le, Len

from tulle.model.spec_config import SPEC_CONFIG

Port = Annotated[int, Ge(1), Le(65535)]
Weight = Annotated[int, Ge(0), Le(1_000_000)]
Percent = Annotated[int, Ge(0), Le(100)]
CoreGroup = Literal["", "core"]
# Gateway API durations: 1 to 4 groups of up to 5 digits and a unit, e.g. "1h30m", "250ms".
Duration = Annotated[str, Len(2, 32)]
HeaderName = Annotated[str, Len(1, 256)]
HeaderValue = Annotated[str, Len(0, 4096)]
Method = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


@dataclass(frozen=True)
class ParentRef:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    name: str
    # Service: mesh routing for the service's callers (GAMMA). Gateway: the routes of an
    # ingress gateway (`tulle gateway run`).
    kind: Literal["Service", "Gateway"] = "Service"
    group: Literal["", "core", "gateway.networking.k8s.io"] = ""
    namespace: str | None = None
    port: Port | None = None


@dataclass(frozen=True)
class PathMatch:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: Annotated[str, Len(1, 1024)] = "/"


@dataclass(frozen=True)
class HeaderMatch:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    name: HeaderName
    value: HeaderValue
    type: Literal["Exact", "RegularExpression"] = "Exact"


@dataclass(frozen=True)
class QueryParamMatch:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    name: Annotated[str, Len(1, 256)]
    value: Annotated[str, Len(0, 1024)]
    type: Literal["Exact", "RegularExpression"] = "Exact"


@dataclass(frozen=True)
class RouteMatch:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    path: PathMatch = PathMatch()
    headers: Annotated[tuple[HeaderMatch, ...], Len(0, 16)] = ()
    query_params: Annotated[tuple[QueryParamMatch, ...], Len(0, 16)] = ()
    method: Method | None = None


@dataclass(frozen=True)
class HeaderValuePair:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    name: HeaderName
    value: HeaderValue


@dataclass(frozen=True)
class HeaderModifier:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    set: Annotated[tuple[HeaderValuePair, ...], Len(0, 16)] = ()
    add: Annotated[tuple[HeaderValuePair, ...], Len(0, 16)] = ()
    remove: Annotated[tuple[HeaderName, ...], Len(0, 16)] = ()


@dataclass(frozen=True)
class Fraction:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    numerator: Annotated[int, Ge(0)]
    denominator: Annotated[int, Ge(1)] = 100


@dataclass(frozen=True)
class MirrorBackend:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    name: str
    kind: Literal["Service"] = "Service"
    group: CoreGroup = ""
    namespace: str | None = None
    port: Port | None = None


@dataclass(frozen=True)
class RequestMirror:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    backend_ref: MirrorBackend
    percent: Percent | None = None
    fraction: Fraction | None = None


@dataclass(frozen=True)
class PathModifier:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: Annotated[str, Len(1, 1024)] | None = None
    replace_prefix_match: Annotated[str, Len(1, 1024)] | None = None


@dataclass(frozen=True)
class URLRewrite:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    hostname: Annotated[str, Len(1, 253)] | None = None
    path: PathModifier | None = None


@dataclass(frozen=True)
class RequestRedirect:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    scheme: Literal["http", "https"] | None = None
    hostname: Annotated[str, Len(1, 253)] | None = None
    path: PathModifier | None = None
    port: Port | None = None
    status_code: Literal[301, 302, 303, 307, 308] = 302


FilterType = Literal["RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror",
                     "URLRewrite", "RequestRedirect"]


@dataclass(frozen=True)
class RouteFilter:
    """A Gateway API filter: ``type`` names the one field that must be set."""

    __pydantic_config__: ClassVar = SPEC_CONFIG

    type: FilterType
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_mirror: RequestMirror | None = None
    url_rewrite: URLRewrite | None = None
    request_redirect: RequestRedirect | None = None


@dataclass(frozen=True)
class BackendRef:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    name: str
    kind: Literal["Service"] = "Service"
    group: CoreGroup = ""
    namespace: str | None = None
    port: Port | None = None
    weight: Weight = 1


@dataclass(frozen=True)
class RouteTimeouts:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    # The whole request, retries included ("0s": no limit). Default: Envoy's 15 s.
    request: Duration | None = None
    # Each attempt to reach a backend.
    backend_request: Duration | None = None


GrpcRetryCode = Literal["cancelled", "deadline-exceeded", "internal", "resource-exhausted",
                        "unavailable"]


@dataclass(frozen=True)
class RouteRetry:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    attempts: Annotated[int, Ge(0), Le(10)] = 1
    codes: Annotated[tuple[Annotated[int, Ge(400), Le(599)], ...], Len(0, 16)] = ()
    # gRPC statuses to retry on (a tulle extension; gRPC answers HTTP 200 with the status in
    # its trailers): cancelled, deadline-exceeded, internal, resource-exhausted, unavailable.
    grpc_codes: Annotated[tuple[GrpcRetryCode, ...], Len(0, 5)] = ()
    backoff: Duration | None = None


@dataclass(frozen=True)
class RouteRule:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    backend_refs: Annotated[tuple[BackendRef, ...], Len(0, 16)] = ()
    matches: Annotated[tuple[RouteMatch, ...], Len(1, 64)] = (RouteMatch(),)
    filters: Annotated[tuple[RouteFilter, ...], Len(0, 16)] = ()
    timeouts: RouteTimeouts | None = None
    retry: RouteRetry | None = None
    # Names the rule for policies (targetRefs[].sectionName) and per-route metrics.
    name: Annotated[str, Len(1, 63)] | None = None

    def describe_matches(self) -> str:
        """The rule's matches in one line, for people: "GET PathPrefix /a h=v ?q=1 | ..."."""
        parts = []
        for match in self.matches:
            text = f"{match.path.type} {match.path.value}"
            if match.method:
                text = f"{match.method} {text}"
            if match.headers:
                text += " " + " ".join(f"{h.name}={h.value}" for h in match.headers)
            if match.query_params:
                text += " ?" + "&".join(f"{q.name}={q.value}" for q in match.query_params)
            parts.append(text)
        return " | ".join(parts)


@dataclass(frozen=True)
class HTTPRouteSpec:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    parent_refs: Annotated[tuple[ParentRef, ...], Len(1, 32)]
    rules: Annotated[tuple[RouteRule, ...], Len(1, 64)]
    # On a Gateway: the hosts (or *.domain) whose requests the route takes; none: any host.
    # Routes attached to a service match on the service instead (the scope of its name).
    hostnames: Annotated[tuple[Annotated[str, Len(1, 253)], ...], Len(0, 16)] = ()
    # A tulle extension. DryRun: callers keep routing as before (by the version of this route
    # that was enforced when it was applied, if any: route_trials.py); the control plane
    # counts where each request would have gone (`tulle stat`, tap, diagnose), and
    # `tulle policy promote` enforces it.
    mode: Literal["Enforce", "DryRun"] = "Enforce"
