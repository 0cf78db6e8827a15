"""Mesh: settings for the whole mesh. One resource, named "default", not namespaced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from annotated_types import Len

from tulle.model.access_log import MeshAccessLog
from tulle.model.durations import parse_duration
from tulle.model.external import OutboundMode
from tulle.model.service import MtlsSettings
from tulle.model.spec_config import SPEC_CONFIG
from tulle.model.tracing import TracingSettings

MESH_NAME = "default"
DEFAULT_WORKLOAD_LIFETIME_S = 24 * 3600.0
MIN_WORKLOAD_LIFETIME_S = 2.0
MAX_WORKLOAD_LIFETIME_S = 90 * 24 * 3600.0

Duration = Annotated[str, Len(2, 32)]


@dataclass(frozen=True)
class CertificateSettings:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    # Lifetime of workload certificates; agents renew at about half of it.
    workload_lifetime: Duration = "24h"


@dataclass(frozen=True)
class HttpSettings:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    # Applications may send HTTP/1.0 (ApacheBench, old health checkers, `curl -0`); Envoy
    # answers those 426 unless told to accept them.
    accept_http10: bool = True


@dataclass(frozen=True)
class AuthorizationSettings:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    # A denied request's 403 names the AuthorizationPolicy and rule that denied it, so that
    # its operator can find it; false: it says only "access denied" (the name stays in
    # Envoy's stats and access log).
    reveal_policy: bool = True


@dataclass(frozen=True)
class OutboundSettings:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    # REGISTRY_ONLY: applications reach mesh services and ExternalServices only; any other
    # host is refused with 502, which names the host and the mode. ALLOW_ANY: any other host
    # is passed through (plain HTTP, and HTTPS or any protocol through CONNECT).
    mode: OutboundMode = "REGISTRY_ONLY"


@dataclass(frozen=True)
class MeshSpec:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    mtls: MtlsSettings = MtlsSettings(mode="STRICT")
    certificates: CertificateSettings = CertificateSettings()
    # Headers that tap and access logs never show (beyond authorization and cookies).
    access_log: MeshAccessLog = MeshAccessLog()
    # Sidecars create spans and export them to an OTLP/gRPC collector. None: tracing is off.
    tracing: TracingSettings | None = None
    # How sidecars speak HTTP with the applications.
    http: HttpSettings = HttpSettings()
    authorization: AuthorizationSettings = AuthorizationSettings()
    # Calls to hosts outside the mesh.
    outbound: OutboundSettings = OutboundSettings()

    @property
    def workload_lifetime_s(self) -> float:
        return parse_duration(self.certificates.workload_lifetime) or DEFAULT_WORKLOAD_LIFETIME_S
