"""How a replica calls another: HTTPS to the other's identity port, at the address other hosts
reach it on (its announcement's ``agentHost`` and ``identityPort``), presenting this control
plane's own certificate, which the other replica requires (the control plane's SPIFFE ID,
from the mesh's CA). The caller requires the same of the answer, by standard host-name
verification: every replica's certificate carries the DNS name ``control-plane.<trust
domain>`` (identity.spiffe.control_plane_dns), which the CA never signs into a workload's.
The API port stays on loopback, so this is the one way between replicas on different hosts,
and no API token crosses the network.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class PeerChannel:
    """``tls``: a client context presenting this control plane's certificate, trusting the
    mesh's bundle and checking host names (IdentityService.peer_context); ``server_name``:
    the name every replica's certificate carries. Every request passes
    ``server_hostname=channel.server_name()``."""

    tls: Callable[[], ssl.SSLContext]
    server_name: Callable[[], str]

    @staticmethod
    def url(where: Mapping[str, Any], path: str) -> str:
        host = str(where.get("agentHost") or where["host"])
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{int(where['identityPort'])}{path}"

    def session(self, timeout_s: float) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s),
                                     connector=aiohttp.TCPConnector(ssl=self.tls()))
