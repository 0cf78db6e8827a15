"""The built-in certificate authority: trust anchors (roots), the active issuer, and signing.

Layout of STATE_DIR/ca (0700):
    state.json      trust domain, the anchors in the bundle, the active issuer, any rotation,
                    the revoked workload certificates (tulle.identity.crl)
    <id>.crt        one CA certificate (root or issuer); <id> is a fingerprint prefix
    <id>.key        its private key, 0600; absent for imported roots kept offline

Keys are written with umask 077 and never logged. The same files may live in a store that
control-plane replicas share instead (tulle.identity.cafiles; keys encrypted there).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tulle.errors import ConflictError, IdentityError, StateError
from tulle.identity.cafiles import CaFiles, DirectoryFiles
from tulle.identity.crl import Revocation, SignedLists, live, sign_crl
from tulle.identity.spiffe import control_plane_dns
from tulle.settings import ensure_private_dir

ROOT_LIFETIME = dt.timedelta(days=3650)
ISSUER_LIFETIME = dt.timedelta(days=365)
BACKDATE = dt.timedelta(seconds=30)  # tolerate small clock differences between hosts
COMMIT_TRIES = 5  # writes of state.json over another replica's, before giving up


@dataclass(frozen=True)
class Authority:
    """A CA certificate and, when we hold it, its key."""

    id: str
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey | None = field(repr=False)

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def not_after(self) -> float:
        return self.certificate.not_valid_after_utc.timestamp()

    @property
    def is_root(self) -> bool:
        return self.certificate.issuer == self.certificate.subject


@dataclass(frozen=True)
class IssuedCertificate:
    spiffe_id: str
    serial: str
    not_before: float
    not_after: float
    issuer_id: str
    chain_pem: str  # the leaf, then the issuer: peers trust only roots

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IssuedCertificate:
        return cls(**data)


@dataclass(frozen=True)
class Rotation:
    """A staged rotation in progress; see tulle.identity.rotation."""

    kind: str  # "root" or "issuer"
    stage: int  # the next stage to run: 1, 2 or 3
    old_anchors: tuple[str, ...]
    old_issuer: str
    new_issuer: str
    new_anchor: str | None = None
    started_at: float = 0.0


@dataclass(frozen=True)
class CaState:
    trust_domain: str
    anchors: tuple[str, ...]
    issuer: str
    rotation: Rotation | None = None
    revoked: tuple[Revocation, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> CaState:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        rotation = data.get("rotation")
        return cls(trust_domain=data["trust_domain"], anchors=tuple(data["anchors"]),
                   issuer=data["issuer"],
                   rotation=Rotation(**{**rotation, "old_anchors": tuple(
                       rotation["old_anchors"])}) if rotation else None,
                   revoked=tuple(Revocation.from_dict(r) for r in data.get("revoked", ())))


def fingerprint_id(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()[:16]


def leaf_der(chain_pem: str) -> bytes:
    """The first certificate of a PEM chain (the leaf), DER-encoded: as a TLS peer sends it."""
    try:
        leaf = x509.load_pem_x509_certificates(chain_pem.encode())[0]
    except (ValueError, IndexError) as exc:
        raise IdentityError("a stored certificate chain cannot be parsed") from exc
    return leaf.public_bytes(serialization.Encoding.DER)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tulle"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca_certificate(subject: x509.Name, key: ec.EllipticCurvePrivateKey,
                    signer: Authority | None, lifetime: dt.timedelta, trust_domain: str,
                    path_length: int) -> x509.Certificate:
    now = _utcnow()
    issuer_name = signer.certificate.subject if signer else subject
    signing_key = signer.key if signer else key
    assert signing_key is not None
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            signing_key.public_key()), critical=False)
    )
    return builder.sign(signing_key, hashes.SHA256())


class CertificateAuthority:
    def __init__(self, files: CaFiles, state: CaState,
                 authorities: dict[str, Authority]) -> None:
        self.files = files
        self.state = state
        self._authorities = authorities
        self._lists: SignedLists | None = None
        self._state_raw: bytes | None = None  # state.json as last read or written here

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, where: Path | CaFiles, trust_domain: str) -> CertificateAuthority:
        """Load the CA, or create a root (10 years) and an issuer (1 year) on first start."""
        if isinstance(where, Path):
            ensure_private_dir(where)  # an existing ca/ with a looser mode is tightened
        files = DirectoryFiles(where) if isinstance(where, Path) else where
        if files.read("state.json") is None:
            ca = cls(files, CaState(trust_domain, (), ""), {})
            root = ca.new_root()
            issuer = ca.new_issuer(root)
            state = CaState(trust_domain, (root.id,), issuer.id)
            if files.create("state.json", state.to_json().encode()):
                ca.state, ca._state_raw = state, state.to_json().encode()
                return ca
            # Another replica made the CA first: open that one.
        raw = files.read("state.json") or b""
        try:
            state = CaState.from_json(raw.decode())
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{files.where}: state.json is corrupt: {exc}",
                             hint="restore the CA from a backup") from exc
        if state.trust_domain != trust_domain:
            raise StateError(
                f"this mesh's trust domain is {state.trust_domain}, not {trust_domain}",
                hint="changing the trust domain re-issues every identity and is not "
                     "supported; omit --trust-domain")
        ca = cls(files, state, {})
        ca._state_raw = raw
        for ident in {*state.anchors, state.issuer, *ca._rotation_ids()}:
            ca._authorities[ident] = ca._load(ident)
        return ca

    def reload(self) -> bool:
        """Read state.json again, for a store that other replicas write (a revocation or a
        rotation step made elsewhere); load the CA certificates it names that are new here.
        Whether the state changed."""
        raw = self.files.read("state.json")
        try:
            state = CaState.from_json((raw or b"").decode())
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{self.files.where}: state.json is corrupt: {exc}",
                             hint="restore the CA from a backup") from exc
        if state == self.state:
            self._state_raw = raw
            return False
        previous, self.state = self.state, state
        try:
            for ident in {*state.anchors, state.issuer, *self._rotation_ids()}:
                if ident not in self._authorities:
                    self._authorities[ident] = self._load(ident)
        except StateError:
            self.state = previous
            raise
        self._state_raw = raw
        return True

    def _rotation_ids(self) -> Iterable[str]:
        rotation = self.state.rotation
        if rotation is None:
            return ()
        ids = [*rotation.old_anchors, rotation.old_issuer, rotation.new_issuer]
        return [*ids, rotation.new_anchor] if rotation.new_anchor else ids

    def _load(self, ident: str) -> Authority:
        try:
            pem = self.files.read(f"{ident}.crt")
            if pem is None:
                raise ValueError("missing")
            certificate = x509.load_pem_x509_certificate(pem)
        except (OSError, ValueError) as exc:
            raise StateError(f"cannot read CA certificate {ident} in {self.files.where}: "
                             f"{exc}", hint="restore the CA from a backup") from exc
        key_pem = self.files.read(f"{ident}.key")
        key = None
        if key_pem is not None:
            try:
                loaded = serialization.load_pem_private_key(key_pem, password=None)
            except (OSError, ValueError, TypeError) as exc:  # TypeError: the key is encrypted
                raise StateError(f"cannot read the key of CA certificate {ident}: {exc}",
                                 hint="restore the CA from a backup") from exc
            if not isinstance(loaded, ec.EllipticCurvePrivateKey):
                raise StateError(f"the key of CA certificate {ident} is not an EC key")
            key = loaded
        return Authority(ident, certificate, key)

    # -- what the mesh trusts and who signs ----------------------------------------------

    @property
    def trust_domain(self) -> str:
        return self.state.trust_domain

    @property
    def issuer(self) -> Authority:
        return self._authorities[self.state.issuer]

    @property
    def anchors(self) -> tuple[Authority, ...]:
        return tuple(self._authorities[i] for i in self.state.anchors)

    def authority(self, ident: str) -> Authority:
        return self._authorities[ident]

    def bundle_pem(self) -> str:
        return "".join(anchor.pem for anchor in self.anchors)

    def chains_to_bundle(self, chain_pem: str) -> bool:
        """Whether a leaf chain (leaf + issuer) leads to one of the current anchors."""
        certificates = x509.load_pem_x509_certificates(chain_pem.encode())
        issuer = next((c for c in certificates[1:]), None)
        if issuer is None:
            return False
        for anchor in self.anchors:
            if anchor.certificate.subject != issuer.issuer:
                continue
            try:
                issuer.verify_directly_issued_by(anchor.certificate)
                certificates[0].verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return True
        return False

    def verify_leaf(self, der: bytes) -> str:
        """The SPIFFE ID of a peer's leaf certificate, if one of our issuers signed it, the
        issuer chains to a current anchor, and it has not expired."""
        try:
            leaf = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise IdentityError("the client certificate cannot be parsed") from exc
        now = _utcnow()
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            raise IdentityError("the client certificate has expired or is not valid yet")
        if not self._issued_by_trusted_issuer(leaf):
            raise IdentityError("the client certificate does not chain to the trust bundle")
        if self.is_revoked(f"{leaf.serial_number:x}"):
            raise IdentityError(f"the client certificate (serial {leaf.serial_number:x}) was "
                                "revoked", hint="a revoked workload joins again only with a "
                                                "new join token (`tulle token create`)")
        try:
            names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound as exc:
            raise IdentityError("the client certificate carries no SPIFFE ID") from exc
        uris = names.get_values_for_type(x509.UniformResourceIdentifier)
        if len(uris) != 1 or not uris[0].startswith("spiffe://"):
            raise IdentityError("the client certificate must carry exactly one SPIFFE ID")
        return str(uris[0])

    def _issued_by_trusted_issuer(self, leaf: x509.Certificate) -> bool:
        anchors = self.anchors
        for authority in self._authorities.values():
            if authority.certificate.subject != leaf.issuer or authority.is_root:
                continue
            try:
                leaf.verify_directly_issued_by(authority.certificate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            for anchor in anchors:
                try:
                    authority.certificate.verify_directly_issued_by(anchor.certificate)
                except (ValueError, TypeError, InvalidSignature):
                    continue
                return True
        return False

    # -- revocation ----------------------------------------------------------------------

    def is_revoked(self, serial: str) -> bool:
        return any(entry.serial == serial for entry in self.state.revoked)

    def revocation_of(self, node_id: str) -> Revocation | None:
        """The live revocation of a certificate issued to ``node_id``, if any."""
        entries = live(self.state.revoked, _utcnow().timestamp())
        return next((e for e in reversed(entries) if e.node_id == node_id), None)

    def revocation_mark(self) -> str:
        """A short mark of the live revoked serials ("" when none): it changes with them."""
        serials = sorted(e.serial for e in live(self.state.revoked, _utcnow().timestamp()))
        return hashlib.sha256(",".join(serials).encode()).hexdigest()[:16] if serials else ""

    def revoke(self, entries: Iterable[Revocation]) -> tuple[Revocation, ...]:
        """Add ``entries`` to the revoked certificates (on disk first); the ones not revoked
        before are returned. Entries for expired certificates are dropped meanwhile."""
        now = _utcnow().timestamp()
        known = {(e.issuer_id, e.serial) for e in self.state.revoked}
        added = tuple(e for e in live(entries, now) if (e.issuer_id, e.serial) not in known)
        kept = live((*self.state.revoked, *added), now)
        if added or kept != self.state.revoked:
            # On a conflict: the state another replica wrote, with these entries added.
            self.commit(replace(self.state, revoked=kept), lambda fresh: replace(
                fresh, revoked=live((*fresh.revoked, *added), now)))
        return added

    def crl_pem(self) -> str:
        """One CRL per issuer that may have signed a live workload certificate, concatenated:
        signed again only when the revocations or the issuers change, or half-way to the
        lists' next update."""
        now = _utcnow()
        revoked = live(self.state.revoked, now.timestamp())
        issuers = tuple(sorted(a.id for a in self._authorities.values()
                               if not a.is_root and a.key is not None))
        serials = frozenset((e.issuer_id, e.serial) for e in revoked)
        lists = self._lists
        if lists is None or not lists.still_good(issuers, serials, now):
            pem = "".join(sign_crl(
                self._authorities[ident].certificate, self._key_of(ident),
                [e for e in revoked if e.issuer_id == ident], now) for ident in issuers)
            lists = self._lists = SignedLists(now, issuers, serials, pem)
        return lists.pem

    def _key_of(self, ident: str) -> ec.EllipticCurvePrivateKey:
        key = self._authorities[ident].key
        assert key is not None, "only issuers whose key we hold sign lists"
        return key

    # -- signing -------------------------------------------------------------------------

    def sign(self, csr_pem: bytes, expected_id: str, lifetime_s: float) -> IssuedCertificate:
        """Sign a workload's CSR, which must ask for exactly ``expected_id`` and nothing else."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise IdentityError("the certificate request is not a PEM CSR") from exc
        if not csr.is_signature_valid:
            raise IdentityError("the certificate request's signature is not valid")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or \
                public_key.curve.name != "secp256r1":
            raise IdentityError("workload keys must be ECDSA P-256")
        try:
            names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound as exc:
            raise IdentityError("the certificate request names no identity") from exc
        uris = names.get_values_for_type(x509.UniformResourceIdentifier)
        if uris != [expected_id] or len(list(names)) != 1:
            raise IdentityError(
                f"the certificate request asks for {', '.join(map(str, names)) or 'nothing'}, "
                f"but this workload may only be {expected_id}")
        return self._issue(public_key, expected_id, lifetime_s)

    def _issue(self, public_key: ec.EllipticCurvePublicKey, spiffe_id: str,
               lifetime_s: float, extra: Iterable[x509.GeneralName] = ()) -> IssuedCertificate:
        issuer = self.issuer
        assert issuer.key is not None, "the active issuer always has its key"
        now = _utcnow()
        not_after = now + dt.timedelta(seconds=lifetime_s)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tulle")]))
            .issuer_name(issuer.certificate.subject).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - min(BACKDATE, dt.timedelta(seconds=lifetime_s / 4)))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=False, crl_sign=False,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(spiffe_id), *extra]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer.key.public_key()), critical=False)
            .sign(issuer.key, hashes.SHA256())
        )
        chain = certificate.public_bytes(serialization.Encoding.PEM).decode() + issuer.pem
        # The certificate's own dates: it carries whole seconds, ``not_after`` does not.
        return IssuedCertificate(spiffe_id, f"{certificate.serial_number:x}",
                                 certificate.not_valid_before_utc.timestamp(),
                                 certificate.not_valid_after_utc.timestamp(), issuer.id, chain)

    def server_identity(self, spiffe_id: str, lifetime_s: float) -> tuple[IssuedCertificate,
                                                                          str]:
        """A certificate and key for the control plane's own TLS listener (loopback)."""
        import ipaddress

        key = ec.generate_private_key(ec.SECP256R1())
        issued = self._issue(key.public_key(), spiffe_id, lifetime_s, [
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName(control_plane_dns(self.trust_domain))])
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        return issued, key_pem

    # -- changing the CA (first start, rotation, import) ---------------------------------

    def new_root(self) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        # Distinct subjects keep chain building unambiguous while old and new CAs overlap.
        certificate = _ca_certificate(_name(f"tulle root {secrets.token_hex(4)}"), key, None,
                                      ROOT_LIFETIME,
                                      self.trust_domain, path_length=1)
        return self._save(Authority(fingerprint_id(certificate), certificate, key))

    def new_issuer(self, root: Authority) -> Authority:
        if root.key is None:
            raise IdentityError(f"the key of root {root.id} is not here, so it cannot sign a "
                                "new issuer", hint="import a new issuer with `tulle certs "
                                                   "import`")
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _ca_certificate(_name(f"tulle issuer {secrets.token_hex(4)}"), key, root,
                                      ISSUER_LIFETIME,
                                      self.trust_domain, path_length=0)
        return self._save(Authority(fingerprint_id(certificate), certificate, key))

    def add(self, certificate: x509.Certificate,
            key: ec.EllipticCurvePrivateKey | None) -> Authority:
        return self._save(Authority(fingerprint_id(certificate), certificate, key))

    def commit(self, state: CaState,
               redo: Callable[[CaState], CaState] | None = None) -> None:
        """Make ``state`` current, in the files first so that a crash resumes from it. Written
        only over the state.json this CA last read or wrote: when another replica wrote it
        since, it is read again (``reload``) and the change made again on it, by ``redo``
        (default: ``state`` as given, which a rotation step, the one writer of everything but
        the revocations under its election, decides, with the revocations of both)."""
        for _ in range(COMMIT_TRIES):
            raw = state.to_json().encode()
            if self.files.swap("state.json", self._state_raw, raw):
                self.state, self._state_raw = state, raw
                return
            self.reload()
            fresh = self.state
            state = redo(fresh) if redo is not None else replace(
                state, revoked=live((*state.revoked, *fresh.revoked),
                                    _utcnow().timestamp()))
        raise ConflictError(f"the CA's state in {self.files.where} kept changing while it was "
                            f"written ({COMMIT_TRIES} tries)", hint="try again")

    def with_rotation(self, rotation: Rotation | None) -> CaState:
        return replace(self.state, rotation=rotation)

    def _save(self, authority: Authority) -> Authority:
        self.files.write(f"{authority.id}.crt", authority.pem.encode())
        if authority.key is not None:
            self.files.write(f"{authority.id}.key", authority.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
        self._authorities[authority.id] = authority
        return authority

