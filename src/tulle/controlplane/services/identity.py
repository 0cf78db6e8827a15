"""Workload identity in the control plane: join tokens, CSR signing, and the agents' TLS port.

Agents reach the identity port over TLS; they verify it against the trust bundle. A first
certificate is authorised by the single-use join token the agent got at registration (spent
by any request that presents it, refused ones included); every later one by the certificate
the registry holds for that very node (or the one before it), as the TLS client certificate:
a sibling instance's certificate, though it carries the same SPIFFE ID, vouches only for the
sibling. Either way the CA signs only the SPIFFE ID the workload is registered for.

The request names only which of the workload's keys the CSR is for (its generation). Where
that key lives is the control plane's to say: in the workload's identity directory
(``StatePaths.identity_dir``), so a caller can never point a proxy at a file of its choosing.

A signed certificate goes to the workload's proxy over SDS at once (no debounce). The answer to
the agent waits until the proxy has ACKed it, so the agent may then delete its previous key.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tulle.controlplane.services import PushSoon, WaitSynced
from tulle.errors import IdentityError, NotFoundError, TulleError, UsageError
from tulle.identity import xdsclient
from tulle.identity.ca import CertificateAuthority, leaf_der
from tulle.identity.crl import Revocation
from tulle.identity.spiffe import control_plane_id, spiffe_id
from tulle.identity.status import (
    AuthorityStatus,
    CertificateStatus,
    IdentityStatus,
    IssuanceStatus,
    RotationStatus,
)
from tulle.identity.tokens import JoinTokens
from tulle.model.workload import Workload, WorkloadCertificate
from tulle.registry.registry import WorkloadRegistry
from tulle.settings import ensure_private_dir, workload_key_file, write_private

log = logging.getLogger("tulle.identity")

SERVER_CERT_LIFETIME_S = 7 * 86400.0
ACK_TIMEOUT_S = 5.0
REVOKE_SYNC_TIMEOUT_S = 10.0
EXPIRY_WARNING_DAYS = 90.0
REVOCATION_CHECK_S = 3600.0
MAX_KEY_GENERATION = 2**31 - 1


@dataclass(frozen=True)
class SigningRequest:
    node_id: str
    csr_pem: str
    # Which key the CSR is for: key-N.pem in the workload's identity directory. The proxy's
    # SDS secret points there; the request cannot name any other file.
    key_generation: int
    names_key_path: bool = False  # the caller tried to say where the key is: refused


@dataclass(frozen=True)
class Caller:
    """What vouches for a signing request: a join token, or the TLS client certificate."""

    join_token: str = ""
    peer_certificate: bytes | None = None  # DER, as the TLS layer received it


@dataclass(frozen=True)
class Signed:
    chain_pem: str
    serial: str
    not_before: float
    not_after: float
    trust_bundle: str
    acked: bool  # the workload's proxy ACKed the new certificate


@dataclass(frozen=True)
class Revoked:
    node_id: str
    serials: tuple[str, ...]  # the certificates revoked now (none: mTLS is off, or no cert)
    mesh_version: int  # the push that carries the revocation lists
    synced: bool  # every connected proxy ACKed it in time

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node_id, "serials": list(self.serials),
                "meshVersion": self.mesh_version, "synced": self.synced}


class IdentityService:
    def __init__(self, ca: CertificateAuthority, tokens: JoinTokens,
                 registry: WorkloadRegistry, *, push_soon: PushSoon,
                 wait_synced: WaitSynced, proxy_connected: Callable[[str], bool],
                 workload_lifetime_s: Callable[[], float], ca_dir: Path,
                 identity_port: Callable[[], int],
                 key_dir: Callable[[Workload], Path],
                 held_elsewhere: Callable[[str], str | None] = lambda node_id: None,
                 certificates_elsewhere: Callable[[str], Sequence[WorkloadCertificate]]
                 = lambda node_id: ()) -> None:
        """``key_dir``: a workload's identity directory, where its agent writes its keys;
        ``held_elsewhere``: which other replica holds a node's registration, if one does;
        ``certificates_elsewhere``: the certificates other replicas hold (or held a moment
        ago) for a node, for its agent when it fails over here."""
        self._held_elsewhere = held_elsewhere
        self._certificates_elsewhere = certificates_elsewhere
        self.ca = ca
        self.tokens = tokens
        self._registry = registry
        self._push_soon = push_soon
        self._wait_synced = wait_synced
        self._proxy_connected = proxy_connected
        self._workload_lifetime_s = workload_lifetime_s
        self._ca_dir = ca_dir
        self._identity_port = identity_port  # the port bound (it may be chosen at start)
        self._key_dir = key_dir
        self._server_pair = (b"", b"")
        self._client_context: ssl.SSLContext | None = None
        self._peer_context: ssl.SSLContext | None = None
        self.issuances: deque[IssuanceStatus] = deque(maxlen=1000)
        self.issued_total = 0  # workload certificates signed since start (/metrics)
        self.server_context: ssl.SSLContext | None = None

    # -- registration --------------------------------------------------------------------

    def spiffe_id_of(self, workload: Workload) -> str:
        return spiffe_id(self.ca.trust_domain, workload.namespace, workload.account)

    def enrol(self, workload: Workload) -> dict[str, Any]:
        """What a registering agent needs to get its first certificate."""
        identity = self.spiffe_id_of(workload)
        return {
            "spiffeId": identity,
            "trustDomain": self.ca.trust_domain,
            "trustBundle": self.ca.bundle_pem(),
            "identityPort": self._identity_port(),
            "joinToken": self.tokens.issue(workload.node_id, identity),
        }

    # -- signing -------------------------------------------------------------------------

    def join_token_for(self, node_id: str) -> str:
        """A new join token for a workload with a live session: for an agent whose certificate
        can no longer vouch for it (it expired while the host slept)."""
        workload = self._registry.get(node_id)
        if workload is None or not self._registry.is_connected(node_id):
            raise NotFoundError(f"no workload {node_id} with a live session")
        return self.tokens.issue(node_id, self.spiffe_id_of(workload))

    async def sign(self, request: SigningRequest, caller: Caller) -> Signed:
        # A join token is spent by any request that presents it, whatever is wrong with the
        # rest: redeem it before anything else is looked at.
        binding = self.tokens.redeem(caller.join_token) if caller.join_token else None
        if binding is None and not caller.peer_certificate:
            raise IdentityError("present a join token or the workload's current certificate",
                                hint="the agent gets a join token when it registers")
        node_id = request.node_id
        if not node_id:
            raise UsageError("node is required",
                             hint='send {"node", "csr", "keyGeneration"} as a JSON object')
        workload = self._registry.get(node_id)
        if workload is None:
            raise NotFoundError(f"no workload {node_id} is registered")
        expected = self.spiffe_id_of(workload)
        # Who asks is checked before what they ask for.
        if binding is not None:
            if binding.node_id != node_id or binding.spiffe_id != expected:
                raise IdentityError(f"this join token was issued for {binding.spiffe_id}, "
                                    f"not for {expected}")
        else:
            self._authorise_renewal(caller, node_id, expected)
        if request.names_key_path:
            raise UsageError("keyPath is not accepted: a workload's keys are in its identity "
                             "directory, which the control plane knows",
                             hint="send keyGeneration, the number N of key-N.pem in the "
                                  "workload's identity directory")
        if not request.csr_pem:
            raise UsageError("csr is required",
                             hint='send {"node", "csr", "keyGeneration"} as a JSON object')
        if not 1 <= request.key_generation <= MAX_KEY_GENERATION:
            raise UsageError(f"keyGeneration must be a whole number from 1 to "
                             f"{MAX_KEY_GENERATION}, not {request.key_generation}",
                             hint="the number N of key-N.pem in the workload's identity "
                                  "directory")
        key_path = workload_key_file(self._key_dir(workload), request.key_generation)
        ttl = self._workload_lifetime_s()
        issued = self.ca.sign(request.csr_pem.encode(), expected, ttl)
        self.issued_total += 1
        now = time.time()
        certificate = WorkloadCertificate(
            spiffe_id=expected, serial=issued.serial, not_before=issued.not_before,
            not_after=issued.not_after, issuer_id=issued.issuer_id, chain_pem=issued.chain_pem,
            key_path=str(key_path), issued_at=now)
        self._registry.set_certificate(node_id, certificate)
        version = await self._push_soon()
        acked_ms: float | None = None
        if self._proxy_connected(node_id):
            if await self._wait_synced(version, ACK_TIMEOUT_S, [node_id]):
                acked_ms = (time.time() - now) * 1000
            else:
                log.warning("%s did not ACK its new certificate within %ss", node_id,
                            ACK_TIMEOUT_S)
        self.issuances.append(IssuanceStatus(node_id, issued.serial, now, acked_ms))
        log.info("issued %s to %s (serial %s, valid %.0fs)", expected, node_id, issued.serial,
                 ttl)
        return Signed(issued.chain_pem, issued.serial, issued.not_before, issued.not_after,
                      self.ca.bundle_pem(), acked_ms is not None)

    def check_caller(self, caller: Caller) -> None:
        """For a request whose body cannot be read: who asks is still judged first. A
        presented join token is spent (and must have been valid); without one, the client
        certificate must be one the CA issued and still vouches for."""
        if caller.join_token:
            self.tokens.redeem(caller.join_token)
        elif not caller.peer_certificate:
            raise IdentityError("present a join token or the workload's current certificate",
                                hint="the agent gets a join token when it registers")
        else:
            self.ca.verify_leaf(caller.peer_certificate)

    def authorise_node(self, certificate: bytes, node_id: str) -> None:
        """``certificate`` (DER, the TLS client certificate) is one the CA issued to
        ``node_id``, and still vouches for it."""
        workload = self._registry.get(node_id)
        if workload is None:
            raise NotFoundError(f"no workload {node_id} is registered")
        self._authorise_renewal(Caller(peer_certificate=certificate), node_id,
                                self.spiffe_id_of(workload))

    def xds_peer(self, node_id: str, certificate_pem: bytes | None) -> str | None:
        """Why an xDS stream over TLS may not be ``node_id``'s, or None: it must come from
        the node's own certificate (its current or previous one), not only its credential."""
        if certificate_pem is None:
            return ("no client certificate: a sidecar presents its workload's certificate "
                    f"({xdsclient.FILE} in the workload's directory)")
        try:
            leaf = x509.load_pem_x509_certificate(certificate_pem)
            self.authorise_node(leaf.public_bytes(serialization.Encoding.DER), node_id)
        except (TulleError, ValueError) as exc:
            return getattr(exc, "message", str(exc))
        return None

    def _authorise_renewal(self, caller: Caller, node_id: str, expected: str) -> None:
        """The TLS client certificate must be one the registry holds for ``node_id``: the
        same SPIFFE ID is not enough, since instances of a service share it."""
        presented = caller.peer_certificate
        if not presented:
            raise IdentityError("present a join token or the workload's current certificate",
                                hint="the agent gets a join token when it registers")
        identity = self.ca.verify_leaf(presented)
        if identity != expected:
            raise IdentityError(f"the client certificate is {identity}, not {expected}")
        if not any(leaf_der(held.chain_pem) == presented
                   for held in self._registry.renewal_certificates(node_id)):
            raise IdentityError(
                f"the client certificate is not {node_id}'s: a certificate renews only the "
                "instance it was issued to",
                hint="an agent whose certificate was replaced enrols again with a join token "
                     "(it does so on its own)")

    # -- failover ------------------------------------------------------------------------

    def session_certificate(self, node_id: str, certificate: bytes) -> WorkloadCertificate:
        """The record of ``certificate`` (DER, the TLS client certificate of an agent that
        opens its session again) as the CA issued it to ``node_id``: held here, or by the
        replica the agent failed over from, whose registration may have left etcd a moment
        ago. A certificate issued to any other node, a sibling instance of the same SPIFFE ID
        included, is refused: it vouches only for the node it was issued to."""
        for held in (*self._registry.renewal_certificates(node_id),
                     *self._certificates_elsewhere(node_id)):
            if leaf_der(held.chain_pem) == certificate:
                return held
        raise IdentityError(
            f"the client certificate is not {node_id}'s: no replica issued it to that "
            "workload, or it did too long ago to vouch for it now",
            hint="an agent reconnects as the workload it registered as; a new workload, or "
                 "one away for longer than its registration was kept, needs a join token "
                 "(`tulle token create`)")

    def adopt(self, node_id: str, certificate: WorkloadCertificate) -> None:
        """``node_id`` registered here with ``certificate``, which another replica issued:
        it now vouches for the node's xDS stream and renewal here too."""
        if certificate in self._registry.renewal_certificates(node_id):
            return
        self._registry.set_certificate(node_id, certificate)
        log.info("%s failed over to this replica with certificate serial %s", node_id,
                 certificate.serial)

    # -- revocation ----------------------------------------------------------------------

    def admit(self, workload: Workload) -> None:
        """A revoked workload does not register again under its name while its revoked
        certificate would still be valid: its agent would otherwise get a new one at once."""
        entry = self.ca.revocation_of(workload.node_id)
        if entry is not None:
            until = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(entry.not_after))
            raise IdentityError(
                f"workload {workload.node_id} was revoked; it cannot register under this "
                f"name until its revoked certificate expires ({until})",
                hint="if its host is trusted again, start the workload under another name "
                     "(--name)")

    async def revoke(self, node_id: str) -> Revoked:
        """Revoke every certificate that vouches for ``node_id`` (its current and previous
        ones) and end its registration: its endpoints leave every proxy, its xDS stream
        closes, and every proxy gets revocation lists that refuse the certificates, in one
        push. Waits until every connected proxy has ACKed that push (at most
        ``REVOKE_SYNC_TIMEOUT_S``)."""
        workload = self._registry.get(node_id)
        if workload is None:
            holder = self._held_elsewhere(node_id)
            if holder is not None:
                raise NotFoundError(f"{node_id} is registered with {holder}, not this one",
                                    hint="run `tulle workload revoke` against that replica: "
                                         "it holds the workload's certificates and session")
            raise NotFoundError(f"no workload {node_id} is registered",
                                hint="list them with `tulle get workloads`")
        now = time.time()
        held = self._registry.renewal_certificates(node_id)
        added = self.ca.revoke(Revocation(c.serial, c.issuer_id, c.not_after, node_id, now)
                               for c in held)
        self._registry.remove(node_id, reason="its certificate was revoked")
        version = await self._push_soon()
        synced = await self._wait_synced(version, REVOKE_SYNC_TIMEOUT_S)
        log.warning("revoked %s: %s", node_id,
                    ", ".join(f"serial {e.serial}" for e in added) or "it held no certificate")
        return Revoked(node_id, tuple(e.serial for e in added), version, synced)

    # -- the agents' TLS port ------------------------------------------------------------

    def refresh_server_identity(self) -> ssl.SSLContext:
        """(Re)issue the control plane's own certificate; make or update the TLS context."""
        issued, key_pem = self.ca.server_identity(control_plane_id(self.ca.trust_domain),
                                                  SERVER_CERT_LIFETIME_S)
        directory = self._ca_dir
        ensure_private_dir(directory)  # with the CA in a shared store, only these live here
        write_private(directory / "controlplane.crt", issued.chain_pem)
        write_private(directory / "controlplane.key", key_pem)
        context = self.server_context
        if context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            # Optional at the TLS layer: a first request carries a join token instead.
            context.verify_mode = ssl.CERT_OPTIONAL
        # Roots are only ever added here; which ones count is decided per request by
        # CertificateAuthority.verify_leaf against the current bundle.
        context.load_verify_locations(cadata=self.ca.bundle_pem())
        context.load_cert_chain(directory / "controlplane.crt", directory / "controlplane.key")
        self.server_context = context
        self._server_pair = (key_pem.encode(), issued.chain_pem.encode())
        # A new certificate (and perhaps bundle): made again.
        self._client_context = self._peer_context = None
        return context

    def client_context(self) -> ssl.SSLContext:
        """For calls to agents on other hosts: they must chain to the bundle; we present the
        control plane's own certificate (the only client such an agent answers). Made once
        per server identity (refresh_server_identity drops it), not once per call."""
        if self._client_context is None:
            # Agents have SPIFFE IDs, not host names.
            self._client_context = self._calling_context(check_hostname=False)
        return self._client_context

    def peer_context(self) -> ssl.SSLContext:
        """For calls to other replicas: as :meth:`client_context`, and the answer must come
        from a control plane's certificate (its DNS name, which no workload's carries)."""
        if self._peer_context is None:
            self._peer_context = self._calling_context(check_hostname=True)
        return self._peer_context

    def _calling_context(self, *, check_hostname: bool) -> ssl.SSLContext:
        """A client context that trusts the bundle and presents the control plane's own
        certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = check_hostname
        context.load_verify_locations(cadata=self.ca.bundle_pem())
        context.load_cert_chain(self._ca_dir / "controlplane.crt",
                                self._ca_dir / "controlplane.key")
        return context

    def server_key_pair(self) -> tuple[bytes, bytes]:
        """The control plane's current key and chain (PEM), for xDS over TLS. Read from
        memory: gRPC asks from its own threads, before each handshake."""
        return self._server_pair

    async def keep_server_identity(self) -> None:
        while True:
            await asyncio.sleep(SERVER_CERT_LIFETIME_S / 2)
            self.refresh_server_identity()

    def expiry_warnings(self, within_days: float = EXPIRY_WARNING_DAYS) -> list[str]:
        """What expires soon enough that an operator must act now."""
        now = time.time()
        warnings = []
        for authority, what, command in (
                *((a, "trust anchor (root)", "root") for a in self.ca.anchors),
                (self.ca.issuer, "issuer", "issuer")):
            days = (authority.not_after - now) / 86400
            if days < within_days:
                when = time.strftime("%Y-%m-%d", time.gmtime(authority.not_after))
                state = "EXPIRED" if days <= 0 else f"expires in {days:.0f} days ({when})"
                warnings.append(f"the {what} {authority.id} {state}: every workload "
                                f"certificate depends on it; run `tulle certs rotate {command}`")
        return warnings

    def status(self) -> IdentityStatus:
        registry = self._registry
        now = time.time()
        certificates = []
        for node_id, certificate in sorted(registry.certificates().items()):
            lifetime = certificate.not_after - certificate.issued_at
            certificates.append(CertificateStatus(
                node_id, certificate.spiffe_id, certificate.serial, certificate.not_after,
                certificate.issuer_id, self.ca.chains_to_bundle(certificate.chain_pem),
                # Agents renew at about half the lifetime; past 75% one has missed it.
                missed_renewal=now > certificate.issued_at + 0.75 * lifetime))
        rotation = self.ca.state.rotation
        return IdentityStatus(
            trust_domain=self.ca.trust_domain, at=now,
            anchors=tuple(_authority_view(a) for a in self.ca.anchors),
            issuer=_authority_view(self.ca.issuer),
            rotation=None if rotation is None else RotationStatus(rotation.kind, rotation.stage),
            certificates=tuple(certificates),
            recent_issuances=tuple(list(self.issuances)[-50:]))


async def keep_revocation_lists(ca: CertificateAuthority, published: Callable[[], str],
                                changed: Callable[[], None],
                                every_s: float = REVOCATION_CHECK_S) -> None:
    """Every proxy checks its peers against the CRLs, which run out a week after they were
    signed; a list past its next update fails every handshake. A mesh that changes nothing
    for days would get there, since lists are signed only when a snapshot is built. So, every
    ``every_s``: when the lists the CA would sign now (again half-way to their next update,
    or without revocations whose certificates expired) differ from the ``published`` ones,
    the mesh is ``changed`` and they go out with the next push."""
    while True:
        await asyncio.sleep(every_s)
        try:
            if ca.crl_pem() != published():
                log.info("the revocation lists are signed again (half-way to their next "
                         "update, or entries expired): pushing them")
                changed()
        except TulleError as exc:
            log.warning("cannot sign the revocation lists again: %s", exc.message)


def _authority_view(authority: Any) -> AuthorityStatus:
    return AuthorityStatus(authority.id, authority.certificate.subject.rfc4514_string(),
                           authority.not_after, _algorithm(authority.certificate.public_key()),
                           authority.key is not None)


def _algorithm(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    return type(key).__name__
