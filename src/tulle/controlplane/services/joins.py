"""Host join tokens for operators (create, list, revoke) and their redemption when an agent
from another host registers (see tulle.identity.hostjoin)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import serialization

from tulle.errors import UsageError
from tulle.identity.ca import CertificateAuthority
from tulle.identity.hostjoin import DEFAULT_TTL_S, JoinGrant, JoinGrants, listed
from tulle.model.meta import dns_label_problem


def ca_fingerprint(ca: CertificateAuthority) -> str:
    """``sha256:<hex>`` of the current root certificate (DER): what a joining agent pins."""
    root = next((a for a in ca.anchors if a.is_root), ca.anchors[0])
    der = root.certificate.public_bytes(serialization.Encoding.DER)
    return "sha256:" + hashlib.sha256(der).hexdigest()


class JoinService:
    def __init__(self, grants: JoinGrants, ca: CertificateAuthority,
                 identity_url: Callable[[], str], clock: Callable[[], float] = time.time) -> None:
        self.grants = grants
        self._ca = ca
        self._identity_url = identity_url
        self._clock = clock

    def create(self, service: str, namespace: str, ttl_s: float = DEFAULT_TTL_S
               ) -> dict[str, Any]:
        for field, value in (("service", service), ("namespace", namespace)):
            if problem := dns_label_problem(value):
                raise UsageError(f"join token: {field} {value!r} {problem}",
                                 hint=f"pass a valid --{field}, e.g. books")
        token, grant = self.grants.create(service, namespace, ttl_s)
        url = self._identity_url()
        fingerprint = ca_fingerprint(self._ca)
        return {**grant.to_json(self._clock()), "token": token, "controlPlane": url,
                "caFingerprint": fingerprint,
                "command": (f"tulle run --control-plane {url} --join-token {token} "
                            f"--ca-fingerprint {fingerprint} --service {service}"
                            + (f" --namespace {namespace}" if namespace != "default" else "")
                            + " ...")}

    def list(self) -> list[dict[str, Any]]:
        return listed(self.grants.all(), self._clock())

    def revoke(self, ident: str) -> dict[str, Any]:
        return self.grants.revoke(ident).to_json(self._clock())

    def check(self, token: str) -> JoinGrant:
        """Whether ``token`` could join now (not spent)."""
        return self.grants.check(token)

    def redeem(self, token: str, service: str, namespace: str, node: str) -> JoinGrant:
        return self.grants.redeem(token, service, namespace, node)
