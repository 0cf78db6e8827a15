"""The identity status: the CA's authorities, any rotation, and every workload certificate.

The control plane builds it (``IdentityService.status``); `tulle diagnose` reads it as
evidence, and ``GET /v1/identity/status`` serves its JSON (``to_json``). Times are seconds
since the epoch; ``at`` is when it was taken, which what is "remaining" is counted from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AuthorityStatus:
    """A trust anchor (root) or the issuer."""

    id: str
    subject: str
    not_after: float
    algorithm: str  # "ECDSA secp256r1", "RSA 2048"
    has_key: bool  # False for an imported root: we hold only its certificate

    def to_json(self, at: float) -> dict[str, Any]:
        return {"id": self.id, "subject": self.subject, "notAfter": self.not_after,
                "remainingDays": round((self.not_after - at) / 86400, 1),
                "algorithm": self.algorithm, "hasKey": self.has_key}


@dataclass(frozen=True)
class RotationStatus:
    kind: str  # "root" or "issuer"
    stage: int  # the next stage to run


@dataclass(frozen=True)
class CertificateStatus:
    """The certificate the CA last issued to one workload."""

    node: str
    spiffe_id: str
    serial: str
    not_after: float
    issuer_id: str
    chains_to_bundle: bool  # to the trust bundle in force now
    missed_renewal: bool  # past 75 % of its lifetime: agents renew at about half

    def to_json(self, at: float) -> dict[str, Any]:
        return {"node": self.node, "spiffeId": self.spiffe_id, "serial": self.serial,
                "notAfter": self.not_after, "remainingSeconds": round(self.not_after - at, 1),
                "issuerId": self.issuer_id, "chainsToBundle": self.chains_to_bundle,
                "missedRenewal": self.missed_renewal}


@dataclass(frozen=True)
class IssuanceStatus:
    """One recent signing, for `tulle certs status` and the renewal benchmark."""

    node: str
    serial: str
    issued_at: float
    acked_after_ms: float | None  # from signing to the proxy's ACK; None: not connected

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "serial": self.serial, "issuedAt": self.issued_at,
                "ackedAfterMs": self.acked_after_ms}


@dataclass(frozen=True)
class IdentityStatus:
    """The defaults describe a mesh whose identity is unknown (hand-built evidence)."""

    trust_domain: str = ""
    at: float = 0.0
    anchors: tuple[AuthorityStatus, ...] = ()
    issuer: AuthorityStatus | None = None
    rotation: RotationStatus | None = None
    certificates: tuple[CertificateStatus, ...] = ()  # by node
    recent_issuances: tuple[IssuanceStatus, ...] = ()  # oldest first

    def to_json(self) -> dict[str, Any]:
        """The body of ``GET /v1/identity/status``."""
        return {
            "trustDomain": self.trust_domain,
            "anchors": [a.to_json(self.at) for a in self.anchors],
            "issuer": self.issuer.to_json(self.at) if self.issuer else None,
            "rotation": None if self.rotation is None else {
                "kind": self.rotation.kind, "stage": self.rotation.stage},
            "workloads": [c.to_json(self.at) for c in self.certificates],
            "recentIssuances": [i.to_json() for i in self.recent_issuances],
        }
