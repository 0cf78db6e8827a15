"""Request logs: a Service's access-log switch, and the headers no request log may show.

Tap sessions (``tulle tap``) and access logs capture a few headers of each request. The values
of secret headers never leave the sidecar: ``authorization``, ``cookie`` and ``set-cookie``
always, plus the names in the Mesh's ``spec.accessLog.redactHeaders``. A redacted header that
was present shows as ``[redacted]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal

from tulle.model.spec_config import SPEC_CONFIG

FieldIssue = tuple[str, str, str]

ALWAYS_REDACTED = ("authorization", "cookie", "set-cookie")
MAX_REDACTED_HEADERS = 32
# A subset of HTTP token characters: the names also go into Envoy expressions, where quotes,
# "%" and parentheses would have a meaning.
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


Direction = Literal["inbound", "outbound"]  # the called side, the calling side
FieldKind = Literal["str", "int", "bool"]

# The fields of a tap event and of an access-log line, with their types (Envoy sends them all
# as strings; tap gives them their types back).
LOG_FIELD_KINDS: dict[str, FieldKind] = {
    "time": "str", "source": "str", "destination": "str", "method": "str",
    "authority": "str", "path": "str", "status": "int", "latencyMs": "int",
    "bytesReceived": "int", "bytesSent": "int", "flags": "str", "mtls": "bool",
    "tlsVersion": "str", "upstreamCluster": "str", "upstreamHost": "str", "route": "str",
    "details": "str", "sourceAddress": "str", "requestId": "str",
    "grpcStatus": "str", "grpcMessage": "str",
    # Inbound: the RBAC policy a DryRun AuthorizationPolicy would have denied the request by.
    "wouldDeny": "str",
}
# Set by the generator, not by Envoy: which sidecar logged, and on which side of the call.
LITERAL_FIELDS = ("workload", "direction")
REQUEST_HEADERS = "requestHeaders"
RESPONSE_HEADERS = "responseHeaders"
# Headers worth seeing when debugging, captured besides the redacted ones.
CAPTURED_REQUEST_HEADERS = ("content-type", "user-agent")
CAPTURED_RESPONSE_HEADERS = ("content-type", "location")
# Redacted names that cannot occur on one side.
_RESPONSE_ONLY = frozenset({"set-cookie"})
_REQUEST_ONLY = frozenset({"authorization", "cookie"})


def captured_headers(redacted: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The header names each entry carries, by group: a few useful ones, and the redacted ones
    (only to show that they were there)."""
    return {REQUEST_HEADERS: tuple(sorted({*CAPTURED_REQUEST_HEADERS, *redacted}
                                          - _RESPONSE_ONLY)),
            RESPONSE_HEADERS: tuple(sorted({*CAPTURED_RESPONSE_HEADERS, *redacted}
                                           - _REQUEST_ONLY))}


@dataclass(frozen=True)
class ServiceAccessLog:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    # Each instance's sidecar writes one JSON line per HTTP request, inbound and outbound, to
    # access.log in its workload directory.
    enabled: bool = False


@dataclass(frozen=True)
class MeshAccessLog:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    # More headers whose values tap and access logs never show, beyond the built-in ones.
    redact_headers: tuple[str, ...] = ()

    def redacted(self) -> tuple[str, ...]:
        """Every redacted header name, lower-case, sorted, once each."""
        return tuple(sorted({*ALWAYS_REDACTED, *(n.lower() for n in self.redact_headers)}))


def mesh_access_log_problems(settings: MeshAccessLog) -> Iterator[FieldIssue]:
    names = settings.redact_headers
    if len(names) > MAX_REDACTED_HEADERS:
        yield ("spec.accessLog.redactHeaders",
               f"must have at most {MAX_REDACTED_HEADERS} item(s), got {len(names)}", "")
    seen: set[str] = set()
    for index, name in enumerate(names):
        field = f"spec.accessLog.redactHeaders[{index}]"
        if not _HEADER_NAME.fullmatch(name):
            yield (field, f'"{name}" is not a header name tulle can redact',
                   "use letters, digits, '-', '_' and '.' (at most 100), such as x-api-key; "
                   "pseudo-headers such as :path cannot be redacted")
        elif name.lower() in ALWAYS_REDACTED:
            yield (field, f"{name} is always redacted",
                   "remove it: authorization, cookie and set-cookie are never shown")
        elif name.lower() in seen:
            yield (field, f"{name} is listed twice (header names are case-insensitive)",
                   "remove one of them")
        seen.add(name.lower())


def service_access_log_problems(enabled: bool, has_selector: bool) -> Iterator[FieldIssue]:
    if enabled and has_selector:
        yield ("spec.accessLog",
               "a subset (a Service with a selector) has no instances of its own to log",
               "enable spec.accessLog on the Service its workloads register under")
