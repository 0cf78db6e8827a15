"""Service: optional explicit settings for a service that workloads register under.

Services exist as soon as a workload registers with ``tulle run --service NAME``. A Service
resource is needed only to set what cannot be derived: the protocol, an override of the mesh's
mTLS mode, or a selector that makes it a subset of other services' workloads (a version).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from tulle.model.access_log import ServiceAccessLog
from tulle.model.spec_config import SPEC_CONFIG

# http: HTTP/1.1 (and WebSocket); http2: HTTP/2 without TLS to the application (h2c); grpc:
# HTTP/2 carrying gRPC; tcp: bytes. Kubernetes' appProtocol names where they exist.
Protocol = Literal["http", "http2", "grpc", "tcp"]
MtlsMode = Literal["STRICT", "PERMISSIVE"]


def is_http(protocol: Protocol) -> bool:
    """Sidecars parse requests: routes, retries and per-request metrics apply."""
    return protocol != "tcp"


def is_http2(protocol: Protocol) -> bool:
    """The application speaks HTTP/2 (h2c): so does every hop of the request."""
    return protocol in ("http2", "grpc")


@dataclass(frozen=True)
class MtlsSettings:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    # STRICT: the inbound listener accepts only mTLS from the trust domain.
    # PERMISSIVE: it also accepts plaintext, for migrating clients outside the mesh.
    mode: MtlsMode


@dataclass(frozen=True)
class ServiceSpec:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    # http, http2, grpc: sidecars parse requests (routing, retries, per-request metrics);
    # http2 and grpc speak HTTP/2 on every hop, so one client connection is balanced per
    # request. tcp: sidecars forward bytes; clients reach it through `tulle run --upstream`.
    # Not given: HTTP, in the version each caller speaks (detected, see MeshService).
    protocol: Protocol | None = None
    # Overrides the Mesh's mTLS mode for this service's inbound traffic.
    mtls: MtlsSettings | None = None
    # Makes this a subset: its instances are the workloads whose labels match, for example
    # {service: books, version: v2}. Workloads carry their own labels plus "service" (the
    # service they registered under) and "version" (from `tulle run --version`).
    selector: dict[str, str] | None = None
    # {enabled: true}: every instance's sidecar writes a JSON line per request to access.log
    # in its workload directory.
    access_log: ServiceAccessLog | None = None
