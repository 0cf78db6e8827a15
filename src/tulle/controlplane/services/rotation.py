"""Staged rotation of the trust anchor (root) or the issuer, without a failed request.

    stage 1  bundle = old + new anchors          every proxy ACKs the bundle
    stage 2  the new issuer signs; every agent    every live workload holds a certificate from
             renews at once                       the new issuer, and its proxy ACKed it
    stage 3  bundle = new anchors only            every proxy ACKs the bundle

Peers validate only against the bundle, so at every moment each certificate in use chains to
an anchor every proxy trusts. Progress is saved in ca/state.json before each stage runs, so an
interrupted rotation resumes at the stage it stopped in: on `tulle certs rotate` again, or on
its own when the control plane restarts. Issuer rotation keeps the root: stages 1 and 3 then
change nothing in the bundle, but still wait for every proxy.

With replicas on a shared store, one replica rotates: the one that holds the election
``ca-rotation`` (``RotationPeers.claim``); `tulle certs rotate` on another is refused and
names it. The others follow each stage from the CA's files in etcd (their agents renew when
the issuer changes), and each stage waits for them too: every other replica answers, through
``RotationPeers.synced`` (and ``Rotator.follow`` there), once its own proxies hold the stage.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tulle.controlplane.services import Push, WaitSynced
from tulle.errors import ConflictError, IdentityError, UsageError
from tulle.identity.ca import Authority, CertificateAuthority, Rotation
from tulle.registry.registry import WorkloadRegistry

log = logging.getLogger("tulle.rotation")

STAGE_TIMEOUT_S = 120.0
KINDS = ("root", "issuer")
RECONNECT_GRACE_S = 20.0



class RotationPeers(Protocol):
    """The other replicas of a shared store, as a rotation needs them."""

    async def claim(self) -> str | None:
        """Hold the election ``ca-rotation``: None when this replica holds it, else who does."""

    async def still_holds(self) -> bool: ...

    async def release(self) -> None: ...

    async def synced(self, bundle: str, issuer: str | None, timeout_s: float
                     ) -> tuple[int, list[str]]:
        """How many other replicas were asked, and why each that does not hold the stage
        (the bundle's hash, and with ``issuer``, every live workload on it) within
        ``timeout_s`` does not."""


def bundle_hash(bundle_pem: str) -> str:
    return hashlib.sha256(bundle_pem.encode()).hexdigest()[:16]


class Rotator:
    """``push`` rebuilds and publishes the mesh now (returns its version); ``broadcast``
    sends a control message to every connected agent; ``refresh_server_identity`` reissues
    the control plane's own TLS certificate from the current issuer and bundle."""

    def __init__(self, ca: CertificateAuthority, registry: WorkloadRegistry, *,
                 push: Push, wait_synced: WaitSynced,
                 connected: Callable[[], list[str]],
                 broadcast: Callable[[dict[str, Any]], None],
                 refresh_server_identity: Callable[[], object],
                 stage_timeout_s: float = STAGE_TIMEOUT_S, shared: bool = False,
                 peers: RotationPeers | None = None) -> None:
        self._shared = shared  # the CA lives in a store other replicas share
        self._peers = peers
        self._lagging: list[str] = []  # the other replicas that did not follow a stage
        self._followed = 0  # how many other replicas followed the last stage
        self._ca = ca
        self._registry = registry
        self._push = push
        self._wait_synced = wait_synced
        self._connected = connected
        self._broadcast = broadcast
        self._refresh_server_identity = refresh_server_identity
        self._stage_timeout_s = stage_timeout_s
        self._task: asyncio.Task[dict[str, Any]] | None = None

    # -- entry points --------------------------------------------------------------------

    def _check_alone(self) -> None:
        """A rotation's stages change the CA every replica signs with and the bundle every
        proxy trusts: on a shared store, only with the other replicas to wait for."""
        if self._shared and self._peers is None:
            raise ConflictError(
                "rotating the CA is not supported yet with the CA in a shared store: the "
                "other replicas would keep signing with the old issuer",
                hint="not possible on a shared store yet (docs/commands.md, tulle up): "
                     "the issuer stays valid for a year from the store's first start")

    def plan(self, kind: str) -> list[str]:
        """What `tulle certs rotate KIND` would do, for --dry-run."""
        self._check_kind(kind)
        self._check_alone()
        rotation = self._ca.state.rotation
        if rotation is not None and rotation.kind != kind:
            raise ConflictError(f"a {rotation.kind} rotation is in progress (stage "
                                f"{rotation.stage})",
                                hint=f"finish it first: `tulle certs rotate {rotation.kind}`")
        proxies = len(self._connected())
        workloads = len(self._live_workloads())
        same_root = "unchanged (same root)"
        stages = {
            1: f"1. add the new {kind} to the trust bundle (bundle: "
               f"{'old + new root' if kind == 'root' else same_root}); wait for {proxies} "
               "proxies to ACK",
            2: f"2. sign with the new issuer; ask {workloads} workloads to renew now; wait "
               "until each holds a new certificate and its proxy ACKed it",
            3: f"3. {'drop the old root from the bundle' if kind == 'root' else same_root}; "
               f"wait for {proxies} proxies to ACK",
        }
        first = rotation.stage if rotation else 1
        lines = [f"resume the interrupted {kind} rotation at stage {first}"] if rotation else []
        return lines + [stages[stage] for stage in range(first, 4)]

    async def rotate(self, kind: str, *, new_root: Authority | None = None,
                     new_issuer: Authority | None = None) -> dict[str, Any]:
        """Run (or resume) a rotation; concurrent callers share the same run."""
        self._check_kind(kind)
        self._check_alone()
        if self._task is None or self._task.done():
            await self._claim()
            try:
                self._start(kind, new_root, new_issuer)
            except BaseException:
                if self._peers is not None:  # refused: another replica may rotate
                    await self._peers.release()
                raise
            self._task = asyncio.create_task(self._run())
        # Shielded: the rotation goes on even if the client that asked goes away.
        return await asyncio.shield(self._task)

    def _start(self, kind: str, new_root: Authority | None,
               new_issuer: Authority | None) -> None:
        rotation = self._ca.state.rotation
        if rotation is not None and rotation.kind != kind:
            raise ConflictError(f"a {rotation.kind} rotation is in progress",
                                hint=f"finish it first: `tulle certs rotate {rotation.kind}`")
        if rotation is None:
            self._begin(kind, new_root, new_issuer)
        elif new_root or new_issuer:
            raise ConflictError("a rotation is in progress; import after it finishes")

    def resume_in_background(self) -> None:
        """After a restart: finish a rotation that was interrupted (on a shared store, if no
        other replica does)."""
        rotation = self._ca.state.rotation
        if rotation is not None and (self._task is None or self._task.done()):
            log.warning("resuming the %s rotation at stage %d", rotation.kind, rotation.stage)
            self._task = asyncio.create_task(self._resume())
            self._task.add_done_callback(_log_failure)

    async def _resume(self) -> dict[str, Any]:
        await self._claim()
        return await self._run(wait_for_agents=True)

    async def _claim(self) -> None:
        if self._peers is None:
            return
        holder = await self._peers.claim()
        if holder is not None:
            raise ConflictError(f"replica {holder} is rotating the CA now",
                                hint="follow it with `tulle certs status`; run `tulle certs "
                                     "rotate` again once it is done, or if that replica died")

    async def follow(self, bundle: str, issuer: str | None, timeout_s: float) -> str | None:
        """Another replica's rotation stage, as this replica's proxies see it: wait until
        this replica's CA has the bundle with hash ``bundle`` (its watch may lag), every live
        workload here holds a certificate from ``issuer`` (if given), and every proxy here
        ACKed a push made after. None when done in time, else why not."""
        deadline = time.monotonic() + timeout_s
        while bundle_hash(self._ca.bundle_pem()) != bundle:
            if time.monotonic() >= deadline:
                return "its CA has not followed the rotation's bundle yet"
            await asyncio.sleep(0.1)
        if issuer is not None and not await self._on_issuer(issuer, deadline):
            return f"not every workload here holds a certificate from {issuer} yet"
        if not await self._proxies_back(deadline):
            return "not every live workload's proxy here is connected"
        version = self._push()
        if not await self._wait_synced(version, max(0.5, deadline - time.monotonic())):
            return "not every proxy here ACKed the new bundle and certificates"
        return None

    # -- the stages ----------------------------------------------------------------------

    def _begin(self, kind: str, new_root: Authority | None,
               new_issuer: Authority | None) -> None:
        ca = self._ca
        state = ca.state
        if kind == "root":
            root = new_root or ca.new_root()
            issuer = new_issuer or ca.new_issuer(root)
            rotation = Rotation("root", 1, state.anchors, state.issuer, issuer.id, root.id,
                                time.time())
        else:
            signer = new_root or _signer_of(ca, ca.issuer)
            issuer = new_issuer or ca.new_issuer(signer)
            rotation = Rotation("issuer", 1, state.anchors, state.issuer, issuer.id, None,
                                time.time())
        ca.commit(ca.with_rotation(rotation))
        log.info("%s rotation started: new issuer %s%s", kind, issuer.id,
                 f", new root {rotation.new_anchor}" if rotation.new_anchor else "")

    async def _run(self, wait_for_agents: bool = False) -> dict[str, Any]:
        try:
            return await self._stages(wait_for_agents)
        finally:  # done or stopped: another replica may resume it
            if self._peers is not None:
                await self._peers.release()

    async def _stages(self, wait_for_agents: bool) -> dict[str, Any]:
        if wait_for_agents:
            await self._await_reconnects()
        ca = self._ca
        report: list[dict[str, Any]] = []
        while (rotation := ca.state.rotation) is not None:
            if self._peers is not None and not await self._peers.still_holds():
                raise ConflictError(
                    "this replica no longer holds the election for the CA rotation (its etcd "
                    "lease lapsed): it stopped before stage " + str(rotation.stage),
                    hint="the replica that holds it now resumes the rotation; check with "
                         "`tulle certs status`")
            started = time.monotonic()
            if rotation.stage == 1:
                anchors = rotation.old_anchors + ((rotation.new_anchor,)
                                                  if rotation.new_anchor else ())
                ca.commit(replace(ca.state, anchors=anchors))
                synced = await self._push_bundle()
                detail = f"bundle has {len(anchors)} anchor(s)"
            elif rotation.stage == 2:
                ca.commit(replace(ca.state, issuer=rotation.new_issuer))
                self._refresh_server_identity()
                synced = await self._reissue(rotation.new_issuer)
                detail = f"every live workload holds a certificate from {rotation.new_issuer}"
            else:
                anchors = (rotation.new_anchor,) if rotation.new_anchor else rotation.old_anchors
                ca.commit(replace(ca.state, anchors=anchors))
                synced = await self._push_bundle()
                detail = f"bundle has {len(anchors)} anchor(s)"
            if not synced:
                lagging = "; ".join(self._lagging)
                raise IdentityError(
                    f"stage {rotation.stage} of the {rotation.kind} rotation did not complete "
                    f"within {self._stage_timeout_s:.0f}s: " + (
                        f"other replicas did not follow: {lagging}" if lagging
                        else "not every proxy confirmed"),
                    hint=f"check `tulle get proxies`, then resume with `tulle certs rotate "
                         f"{rotation.kind}`")
            if self._peers is not None:
                detail += f"; {self._followed} other replica(s) followed"
            report.append({"stage": rotation.stage, "detail": detail,
                           "seconds": round(time.monotonic() - started, 3)})
            log.info("%s rotation: stage %d done (%s)", rotation.kind, rotation.stage, detail)
            following = None if rotation.stage == 3 else replace(rotation,
                                                                  stage=rotation.stage + 1)
            ca.commit(replace(ca.state, rotation=following))
        return {"stages": report, "anchors": list(ca.state.anchors),
                "issuer": ca.state.issuer}

    async def _push_bundle(self) -> bool:
        bundle = self._ca.bundle_pem()
        self._refresh_server_identity()
        self._broadcast({"bundle": bundle})
        deadline = time.monotonic() + self._stage_timeout_s
        if not await self._proxies_back(deadline):
            return False
        version = self._push()
        return (await self._wait_synced(version, max(1.0, deadline - time.monotonic()))
                and await self._others_follow(None, deadline))

    async def _proxies_back(self, deadline: float) -> bool:
        """Every live workload's proxy is connected: a stage waits for the proxies that are
        connected, so one that is reconnecting (after a control-plane restart) would miss
        it, and keep the bundle and revocation lists of before."""
        while time.monotonic() < deadline:
            connected = set(self._connected())
            if all(n in connected for n in self._live_workloads()):
                return True
            await asyncio.sleep(0.1)
        return False

    async def _others_follow(self, issuer: str | None, deadline: float) -> bool:
        """Every other replica's proxies hold the stage too (no others: True)."""
        self._lagging, self._followed = [], 0
        if self._peers is None:
            return True
        asked, self._lagging = await self._peers.synced(
            bundle_hash(self._ca.bundle_pem()), issuer, max(1.0, deadline - time.monotonic()))
        self._followed = asked - len(self._lagging)
        return not self._lagging

    async def _on_issuer(self, issuer_id: str, deadline: float) -> bool:
        """Every live workload here holds a certificate from ``issuer_id``, and its proxy is
        connected (to get it, and the push after)."""
        while time.monotonic() < deadline:
            if not [n for n in self._live_workloads()
                    if (c := self._registry.certificate(n)) is None
                    or c.issuer_id != issuer_id]:
                return await self._proxies_back(deadline)
            await asyncio.sleep(0.1)
        return False

    async def _reissue(self, issuer_id: str) -> bool:
        self._broadcast({"bundle": self._ca.bundle_pem()})
        self._broadcast({"renew": True})
        deadline = time.monotonic() + self._stage_timeout_s
        if not await self._on_issuer(issuer_id, deadline):
            return False
        version = self._push()
        return (await self._wait_synced(version, max(1.0, deadline - time.monotonic()))
                and await self._others_follow(issuer_id, deadline))

    async def _await_reconnects(self) -> None:
        """After a restart, give agents the grace period to come back before stages run."""
        deadline = time.monotonic() + RECONNECT_GRACE_S
        registry = self._registry
        while time.monotonic() < deadline:
            if all(registry.is_connected(w.node_id) for w in registry.workloads()):
                return
            await asyncio.sleep(0.2)

    def _live_workloads(self) -> list[str]:
        registry = self._registry
        return [w.node_id for w in registry.workloads() if registry.is_connected(w.node_id)]

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise UsageError(f"cannot rotate {kind!r}", hint="rotate root or issuer")


def _signer_of(ca: CertificateAuthority, issuer: Authority) -> Authority:
    for anchor in ca.anchors:
        try:
            issuer.certificate.verify_directly_issued_by(anchor.certificate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return anchor
    raise IdentityError("no anchor in the bundle signed the current issuer",
                        hint="rotate the root instead: `tulle certs rotate root`")


def load_import(ca: CertificateAuthority, root_pem: bytes, issuer_pem: bytes,
                issuer_key_pem: bytes) -> tuple[Authority, Authority]:
    """Check and store an imported root and issuer (the root's key stays with its owner)."""
    try:
        root = x509.load_pem_x509_certificate(root_pem)
        issuer = x509.load_pem_x509_certificate(issuer_pem)
        key = serialization.load_pem_private_key(issuer_key_pem, password=None)
    except (ValueError, TypeError) as exc:  # TypeError: the key is encrypted
        raise IdentityError(f"cannot read the imported PKI: {exc}",
                            hint="give PEM files: --root, --issuer and an unencrypted "
                                 "--issuer-key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise IdentityError("the issuer key must be an ECDSA key")
    if _spki(key.public_key()) != _spki(issuer.public_key()):
        raise IdentityError("the issuer key does not belong to the issuer certificate")
    for certificate, what in ((root, "root"), (issuer, "issuer")):
        try:
            is_ca = certificate.extensions.get_extension_for_class(
                x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise IdentityError(f"the {what} certificate is not a CA certificate")
    try:
        issuer.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise IdentityError("the issuer was not signed by the root") from exc
    return ca.add(root, None), ca.add(issuer, key)


def _spki(public_key: Any) -> bytes:
    return bytes(public_key.public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo))


def _log_failure(task: asyncio.Task[dict[str, Any]]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the resumed rotation stopped: %s", task.exception())
