"""Joining a control plane on another host (`tulle run --control-plane https://CP:PORT`).

Nothing is read from a local state directory's control-plane files. The agent:

1. fetches the mesh's trust bundle from the control plane's identity port and keeps it only if
   one of its certificates has the SHA-256 fingerprint the operator gave (``--ca-fingerprint``,
   printed by `tulle token create`): the pin, as kubeadm does it. Nothing secret is sent before
   the control plane is trusted;
2. from then on, verifies the control plane against that bundle and its SPIFFE ID;
3. registers once with the join token, and afterwards (reconnects, state, telemetry) presents
   its workload certificate as the TLS client certificate.

The agent loads no crypto library for this: fingerprints are hashlib over ssl's DER.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tulle.agent import http
from tulle.errors import ControlPlaneUnavailable, IdentityError, UsageError
from tulle.identity.spiffe import control_plane_id

_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_FINGERPRINT = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ControlPlaneUrl:
    host: str
    port: int


def parse_control_plane(url: str) -> ControlPlaneUrl:
    """``https://HOST:PORT``, the identity port `tulle token create` printed."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise UsageError(f"--control-plane {url!r}: expected https://HOST:PORT",
                         hint="copy the address `tulle token create` printed")
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        raise UsageError(f"--control-plane {url!r}: the port is missing or invalid",
                         hint="copy the address `tulle token create` printed")
    return ControlPlaneUrl(parts.hostname, port)


def check_fingerprint(given: str) -> str:
    value = given.strip().lower()
    if not _FINGERPRINT.match(value):
        raise UsageError(f"--ca-fingerprint {given!r}: expected sha256:<64 hex digits>",
                         hint="copy the fingerprint `tulle token create` printed")
    return value


def fingerprints(bundle_pem: str) -> set[str]:
    return {"sha256:" + hashlib.sha256(ssl.PEM_cert_to_DER_cert(block)).hexdigest()
            for block in _PEM.findall(bundle_pem)}


@dataclass(frozen=True)
class Trust:
    bundle_pem: str
    trust_domain: str

    @property
    def control_plane_id(self) -> str:
        return control_plane_id(self.trust_domain)


async def fetch_trust(where: ControlPlaneUrl, fingerprint: str) -> Trust:
    """The mesh's trust bundle, if it holds the pinned CA; the connection that brings it is
    not trusted yet, so nothing is sent but the request."""
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    try:
        response = await http.request(where.host, where.port, "GET", "/v1/join/bundle",
                                      tls=unverified, timeout=10.0)
        data = json.loads(response.body) if response.status == 200 else None
    except (OSError, TimeoutError, http.HttpError, ssl.SSLError, ValueError) as exc:
        raise ControlPlaneUnavailable(
            f"cannot reach the control plane at https://{where.host}:{where.port}: {exc}",
            hint="check the address, that `tulle up --listen ADDR` runs there, and that "
                 "this host can reach it") from exc
    if not isinstance(data, dict) or not isinstance(data.get("trustBundle"), str):
        raise ControlPlaneUnavailable(
            f"https://{where.host}:{where.port} did not answer as a tulle control plane's "
            "identity port", hint="copy the address `tulle token create` printed")
    if fingerprint not in fingerprints(data["trustBundle"]):
        raise IdentityError(
            f"the control plane at {where.host}:{where.port} does not hold the CA with "
            f"fingerprint {fingerprint}: it is not the mesh you were given a token for, or "
            "someone is in between", hint="check --ca-fingerprint against `tulle token "
            "create`'s output on the control plane's host")
    return Trust(data["trustBundle"], str(data.get("trustDomain", "")))


def local_address_towards(where: ControlPlaneUrl) -> str:
    """This host's address on the route to the control plane: the one other hosts reach."""
    family = socket.AF_INET6 if ":" in where.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((where.host, where.port))  # UDP: no packet is sent
        return str(probe.getsockname()[0])


class RemoteChannel:
    """How the agent reaches a control plane on another host: TLS, verified against the
    pinned bundle, and then against each bundle the control plane sends over the session
    (``trust`` is replaced: a root rotation moves the control plane to new roots); the join
    token for the first registration, the workload certificate (``certificate()``: the
    current chain and key files, or None before the first) after."""

    def __init__(self, where: ControlPlaneUrl, trust: Trust, join_token: str,
                 certificate: Callable[[], tuple[Path, Path] | None]) -> None:
        self.where = where
        self.trust = trust
        self._join_token = join_token
        self._certificate = certificate

    def tls(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # the SPIFFE ID is checked instead (peer_uri)
        context.load_verify_locations(cadata=self.trust.bundle_pem)
        if (held := self._certificate()) is not None:
            context.load_cert_chain(*held)
        return context

    def headers(self) -> dict[str, str]:
        """The join token until a certificate vouches for us; nothing after."""
        if self._certificate() is not None or not self._join_token:
            return {}
        return {"Authorization": f"Bearer {self._join_token}"}

    def spent(self) -> None:
        """The token was redeemed (or refused): never send it again."""
        self._join_token = ""
