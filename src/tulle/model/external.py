"""ExternalService: a host outside the mesh that the mesh's workloads may call.

::

    kind: ExternalService
    metadata: {name: payments, namespace: shop}
    spec:
      host: api.payments.example        # the name applications call (through their sidecar)
      ports:
      - {port: 443, protocol: tls}      # reached with CONNECT host:443; the app speaks TLS
      - {port: 80, protocol: http}      # plain requests: the sidecar sees (and counts) each
      address: 10.0.0.7                 # optional: connect here instead of resolving host
      tls:                              # optional: the sidecar originates TLS on the http port
        caBundle: |                     # the CAs that may sign the host's certificate (PEM)
          -----BEGIN CERTIFICATE-----
        sni: api.payments.example       # optional; the host by default

Every namespace's workloads reach it by its host. Under the Mesh's ``spec.outbound.mode:
REGISTRY_ONLY`` (the default) a host that is neither a mesh service nor an ExternalService is
refused with 502; under ``ALLOW_ANY`` it is passed through.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from annotated_types import Ge, Le, Len

from tulle.model.meta import ServiceRef
from tulle.model.spec_config import SPEC_CONFIG

# http: requests, which the caller's sidecar parses (metrics per request, TLS origination);
# tls and tcp: bytes through a CONNECT tunnel (the application's own TLS, or any protocol).
ExternalProtocol = Literal["http", "tls", "tcp"]
OutboundMode = Literal["REGISTRY_ONLY", "ALLOW_ANY"]

FieldIssue = tuple[str, str, str]


@dataclass(frozen=True)
class ExternalPort:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    port: Annotated[int, Ge(1), Le(65535)]
    protocol: ExternalProtocol = "http"


@dataclass(frozen=True)
class OriginateTls:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    # PEM certificates of the CAs that may sign the host's certificate.
    ca_bundle: Annotated[str, Len(1, 262_144)]
    # The name sent in the handshake and required in the certificate; the host by default.
    sni: Annotated[str, Len(1, 253)] | None = None


@dataclass(frozen=True)
class ExternalServiceSpec:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    host: Annotated[str, Len(1, 253)]
    ports: Annotated[tuple[ExternalPort, ...], Len(1, 16)]
    address: Annotated[str, Len(1, 253)] | None = None
    tls: OriginateTls | None = None

    @property
    def http_port(self) -> int | None:
        return next((p.port for p in self.ports if p.protocol == "http"), None)

    @property
    def server_name(self) -> str:
        return (self.tls.sni if self.tls and self.tls.sni else None) or self.host

    @property
    def dial(self) -> str:
        """Where the sidecar connects: the address, else the host."""
        return self.address or self.host


@dataclass(frozen=True)
class MeshExternal:
    """An ExternalService in a mesh snapshot."""

    ref: ServiceRef  # its resource's namespace and name
    spec: ExternalServiceSpec


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def dns_name_problem(value: str) -> str | None:
    """Why ``value`` is not a lowercase DNS name of two labels or more, or None."""
    if value != value.lower():
        return f'"{value}" has capitals; hosts are matched in lowercase'
    if value.endswith("."):
        return f'"{value}" ends with a dot'
    labels = value.split(".")
    if len(labels) < 2:
        return (f'"{value}" is a single label, which is how mesh services are named; an '
                "external host is a full name such as api.example.com, or an IP address")
    for label in labels:
        if not label or len(label) > 63 or label[0] == "-" or label[-1] == "-" or \
                not all(c.isascii() and (c.isalnum() or c == "-") for c in label):
            return f'"{value}" is not a DNS name (label "{label}")'
    return None


def external_problems(spec: ExternalServiceSpec) -> Iterator[FieldIssue]:
    if not is_ip(spec.host) and (why := dns_name_problem(spec.host)) is not None:
        yield "spec.host", why, "a DNS name such as api.example.com, or an IP address"
    if spec.address is not None and not is_ip(spec.address) and \
            (why := dns_name_problem(spec.address)) is not None:
        yield "spec.address", why, "an IP address or a DNS name the sidecars can resolve"
    seen: set[int] = set()
    for p, port in enumerate(spec.ports):
        if port.port in seen:
            yield f"spec.ports[{p}].port", f"port {port.port} is listed twice", ""
        seen.add(port.port)
    http = [p for p, port in enumerate(spec.ports) if port.protocol == "http"]
    if len(http) > 1:
        yield (f"spec.ports[{http[1]}].protocol", "one port may speak http: plain requests "
               "name the host, not a port, so they could not tell two apart",
               "keep one http port; declare a second host as its own ExternalService")
    if spec.tls is not None:
        if not http:
            yield ("spec.tls", "TLS origination applies to an http port, and there is none",
                   "add {port: 443, protocol: http}, or remove tls (a tls port carries the "
                   "application's own TLS)")
        yield from _bundle_problems(spec.tls.ca_bundle)
        if spec.tls.sni is not None and (why := dns_name_problem(spec.tls.sni)) is not None:
            yield "spec.tls.sni", why, ""


def _bundle_problems(pem: str) -> Iterator[FieldIssue]:
    from cryptography import x509  # a heavy import, only when a bundle is checked

    hint = "paste the CA certificates, each from -----BEGIN CERTIFICATE----- to its END line"
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as error:
        yield "spec.tls.caBundle", f"is not PEM certificates: {error}", hint
        return
    if not certificates:
        yield "spec.tls.caBundle", "holds no certificate", hint
