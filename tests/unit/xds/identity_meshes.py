"""Mesh snapshots with workload identity, built the way the control plane builds them: a real CA
signs each workload's CSR, and the key stays in a file only the path of which the snapshot
holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric import ec

from tests.unit.identity.certs import TRUST_DOMAIN, csr, key_pem, p256, uri
from tests.unit.xds.meshes import Manifest, parse
from tulle.identity.ca import CertificateAuthority
from tulle.identity.spiffe import spiffe_id
from tulle.model.mesh import MeshIdentity, MeshSnapshot, build_mesh
from tulle.model.workload import Workload, WorkloadCertificate


@dataclass(frozen=True)
class IdentityMesh:
    snapshot: MeshSnapshot
    keys: Mapping[str, ec.EllipticCurvePrivateKey]  # by node id; never in the snapshot


def with_account(workload: Workload, account: str) -> Workload:
    return replace(workload, service_account=account)


def certify(ca: CertificateAuthority, key_dir: Path, workload: Workload,
            lifetime_s: float = 3600.0) -> tuple[WorkloadCertificate, ec.EllipticCurvePrivateKey]:
    """What an agent and the CA do at enrolment: a key on disk, a signed certificate."""
    identity = spiffe_id(ca.trust_domain, workload.namespace, workload.account)
    key = p256()
    key_path = key_dir / f"{workload.node_id}.key"
    key_path.write_bytes(key_pem(key))
    issued = ca.sign(csr([uri(identity)], key), identity, lifetime_s)
    certificate = WorkloadCertificate(
        spiffe_id=identity, serial=issued.serial, not_before=issued.not_before,
        not_after=issued.not_after, issuer_id=issued.issuer_id, chain_pem=issued.chain_pem,
        key_path=str(key_path), issued_at=issued.not_before)
    return certificate, key


def identity_mesh(ca: CertificateAuthority, key_dir: Path, workloads: Sequence[Workload],
                  manifests: Sequence[Manifest] = (), version: int = 1) -> IdentityMesh:
    """Every workload holds a certificate from ``ca``."""
    assert ca.trust_domain == TRUST_DOMAIN
    certificates, keys = {}, {}
    for workload in workloads:
        certificates[workload.node_id], keys[workload.node_id] = certify(ca, key_dir, workload)
    identity = MeshIdentity(ca.trust_domain, ca.bundle_pem(), MappingProxyType(certificates))
    return IdentityMesh(build_mesh(version, parse(*manifests), workloads, identity), keys)
