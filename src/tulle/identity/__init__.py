"""Workload identity: the seam where the built-in CA plugs in.

Nothing implements this yet. The control plane will hold one ``CertificateIssuer``. Agents send
it CSRs, and it signs only the SPIFFE identity the workload is entitled to.
"""

from __future__ import annotations

from typing import Protocol


class CertificateIssuer(Protocol):
    def sign(self, csr_pem: bytes, spiffe_id: str, lifetime_s: float) -> bytes:
        """A PEM certificate chain for ``spiffe_id``, signed from ``csr_pem``."""

    def trust_bundle(self) -> bytes:
        """The PEM roots every proxy must trust."""
