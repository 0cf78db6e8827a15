"""SPIFFE IDs: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>."""

from __future__ import annotations

import re

SYSTEM_NAMESPACE = "tulle-system"
CONTROL_PLANE_ACCOUNT = "tulle-controlplane"

# Used with fullmatch: "$" alone would accept a trailing newline.
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
_ID = re.compile(r"spiffe://(?P<td>[a-z0-9._-]+)/ns/(?P<ns>[a-z0-9-]+)/sa/(?P<sa>[a-z0-9-]+)")


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def trust_domain_problem(value: str) -> str | None:
    if not _TRUST_DOMAIN.fullmatch(value):
        return (f'"{value}" is not a valid trust domain: use lower-case letters, digits, ".", '
                '"-" and "_"')
    return None


def parse(uri: str) -> tuple[str, str, str] | None:
    """(trust domain, namespace, service account) of a tulle workload's SPIFFE ID."""
    match = _ID.fullmatch(uri)
    return (match["td"], match["ns"], match["sa"]) if match else None


def control_plane_id(trust_domain: str) -> str:
    return spiffe_id(trust_domain, SYSTEM_NAMESPACE, CONTROL_PLANE_ACCOUNT)


def control_plane_dns(trust_domain: str) -> str:
    """The DNS name every replica's certificate carries besides its SPIFFE ID. The CA signs
    a workload's request only for its SPIFFE ID, never a DNS name, so a replica that checks
    the host name of another (standard TLS verification) knows it is a control plane."""
    return f"control-plane.{trust_domain}"
