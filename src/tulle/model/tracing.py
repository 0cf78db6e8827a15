"""Mesh-wide tracing: which OTLP/gRPC collector sidecars export spans to, and how many
requests they trace. Part of the Mesh spec (``spec.tracing``); absent means tracing is off."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from tulle.model.spec_config import SPEC_CONFIG

FieldIssue = tuple[str, str, str]

OTLP_GRPC_PORT = 4317  # the port OTLP/gRPC collectors listen on by default
ADDRESS_EXAMPLE = f'"127.0.0.1:{OTLP_GRPC_PORT}" or "otel-collector:{OTLP_GRPC_PORT}"'

# RFC 1123 host names, as Envoy's DNS resolver takes them.
_DNS_LABEL = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class OtlpExporter:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    # host:port of an OTLP/gRPC collector, in plaintext: an IP address or a DNS name.
    address: str


@dataclass(frozen=True)
class TracingSettings:
    __pydantic_config__: ClassVar = SPEC_CONFIG

    otlp: OtlpExporter
    # The share of requests traced. The first sidecar decides and marks the x-request-id with
    # the decision; later sidecars read it there.
    sampling_percent: float = 100.0


class InvalidAddress(ValueError):
    """Why an address is not host:port, and how to write it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class HostPort:
    host: str  # an IPv6 address without its brackets
    port: int

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def parse_host_port(text: str) -> HostPort:
    """``text`` as host and port; InvalidAddress when it is not one."""
    if not text:
        raise InvalidAddress("must not be empty", f"write host:port, such as {ADDRESS_EXAMPLE}")
    if (scheme := _SCHEME.match(text)) is not None:
        bare = text[scheme.end():].split("/", 1)[0]
        raise InvalidAddress(f'"{text}" has a scheme', f'write only host:port, such as "{bare}"')
    if "/" in text:
        raise InvalidAddress(f'"{text}" has a path',
                         f'write only host:port, such as "{text.split("/", 1)[0]}": '
                         "OTLP/gRPC needs no path")
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise InvalidAddress(f'"{text}" has no port',
                             f'write [IPv6]:port, such as "[::1]:{OTLP_GRPC_PORT}"')
        port_text = rest[1:]
        if not _is_ipv6(host):
            raise InvalidAddress(f'"{host}" in brackets is not an IPv6 address',
                             "brackets are for IPv6 addresses only")
    else:
        if text.count(":") > 1:
            raise InvalidAddress(f'"{text}" is ambiguous',
                             f'write IPv6 addresses in brackets, such as "[::1]:{OTLP_GRPC_PORT}"')
        host, colon, port_text = text.partition(":")
        if not colon:
            raise InvalidAddress(f'"{text}" has no port',
                             f'add the collector\'s port, such as "{text}:{OTLP_GRPC_PORT}" '
                             "(OTLP/gRPC's default)")
        if (why := _host_problem(host)) is not None:
            raise InvalidAddress(why, f"use an IP address or a DNS name, such as {ADDRESS_EXAMPLE}")
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InvalidAddress(f'the port must be a number from 1 to 65535, got "{port_text}"',
                         f"OTLP/gRPC collectors usually listen on {OTLP_GRPC_PORT}")
    return HostPort(host, int(port_text))


def tracing_problems(settings: TracingSettings) -> Iterator[FieldIssue]:
    try:
        parse_host_port(settings.otlp.address)
    except InvalidAddress as exc:
        yield "spec.tracing.otlp.address", exc.message, exc.hint
    percent = settings.sampling_percent
    if math.isnan(percent) or not 0 <= percent <= 100:
        yield ("spec.tracing.samplingPercent", f"must be between 0 and 100, got {percent:g}",
               "a percentage of requests: 100 traces every request, 0.1 one in a thousand")


def _host_problem(host: str) -> str | None:
    if not host:
        return "the host is missing"
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f'"{host}" is not a valid IPv4 address'
        return None
    labels = host.split(".")
    if len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        return f'"{host}" is not an IP address or a DNS name'
    return None


def _is_ipv6(host: str) -> bool:
    if "%" in host:
        return False  # a zone (fe80::1%eth0): Envoy takes none
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True
