"""How a replica calls another: HTTPS to the other's identity port, at the address other hosts
reach it on (its announcement's ``agentHost`` and ``identityPort``), presenting this control
plane's own certificate, which the other replica requires (the control plane's SPIFFE ID,
from the mesh's CA). The caller checks that the answer comes from a certificate of the mesh's
CA; that it carries the control plane's SPIFFE ID is not checked yet (aiohttp releases the
connection, and its certificate, before the caller can look). The API port stays on
loopback, so this is the one way between replicas on different hosts, and no API token
crosses the network.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class PeerChannel:
    """``tls``: a client context presenting this control plane's certificate and trusting the
    mesh's bundle (IdentityService.client_context); ``control_plane_id``: the SPIFFE ID every
    replica's certificate carries (for the check the callers do not make yet)."""

    tls: Callable[[], ssl.SSLContext]
    control_plane_id: Callable[[], str]

    @staticmethod
    def url(where: Mapping[str, Any], path: str) -> str:
        host = str(where.get("agentHost") or where["host"])
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{int(where['identityPort'])}{path}"

    def session(self, timeout_s: float) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s),
                                     connector=aiohttp.TCPConnector(ssl=self.tls()))
