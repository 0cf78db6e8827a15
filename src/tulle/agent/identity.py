"""The workload's identity, from the agent's side: its key, its certificate, and renewals.

- Keys are made by a child process (tulle.agent.keygen) so the agent itself never loads a
  crypto library. Each renewal makes a new key; keys are files, 0600, in a 0700 directory.
- The first certificate is paid for with the join token; renewals authenticate with the
  current certificate as the TLS client certificate. The control plane is verified against
  the trust bundle and must present its own SPIFFE ID.
- Renewal happens at about half the lifetime, with jitter, and as soon as the control plane
  asks (root and issuer rotations).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import shutil
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tulle.agent import http
from tulle.errors import IdentityError, TulleError, error_from_dict
from tulle.identity import xdsclient
from tulle.identity.spiffe import control_plane_id
from tulle.settings import ensure_private_dir, workload_key_file, write_private

log = logging.getLogger("tulle.agent")

RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0


@dataclass(frozen=True)
class Enrolment:
    """What registration told us: who we are, whom to trust, where to ask."""

    spiffe_id: str
    trust_domain: str
    trust_bundle: str
    host: str
    port: int
    join_token: str

    @property
    def control_plane_id(self) -> str:
        return control_plane_id(self.trust_domain)


class IdentityKeeper:
    def __init__(self, node_id: str, directory: Path, enrolment: Enrolment,
                 reenrol: Callable[[], Awaitable[str]]) -> None:
        """``reenrol`` gets a fresh join token over the registration's channel, for when the
        current certificate can no longer vouch for us (expired while the host slept, or
        issued from a root that was rotated out meanwhile)."""
        self._reenrol = reenrol
        self.node_id = node_id
        self.directory = directory
        self.enrolment = enrolment
        self.bundle = enrolment.trust_bundle
        self.generation = 0
        self.serial = ""
        self.renewals = 0
        self._not_after = 0.0
        self._renew_at = 0.0
        self._wake = asyncio.Event()
        self.on_renewed: list[Callable[[], None]] = []  # a new certificate is in place

    @property
    def key_file(self) -> Path:
        return workload_key_file(self.directory, self.generation)

    @property
    def cert_file(self) -> Path:
        return self.directory / f"cert-{self.generation}.pem"

    async def obtain(self, prepared: PreparedKey | None = None) -> None:
        """The first certificate, with the join token. ``prepared``: the first key, made while
        the agent was registering (it saves a process start from the critical path)."""
        ensure_private_dir(self.directory)
        csr = None
        if prepared is not None and prepared.spiffe_id == self.enrolment.spiffe_id:
            csr = await prepared.csr
        await self._request(headers={"Authorization": f"Bearer {self.enrolment.join_token}"},
                            client_cert=None, csr=csr)

    def move_to(self, host: str, port: int) -> None:
        """Renew with another control-plane replica from now on (ours is gone)."""
        self.enrolment = dataclasses.replace(self.enrolment, host=host, port=port)

    def renew_soon(self, bundle: str | None = None) -> None:
        """The control plane asked: take a new trust bundle and/or renew now."""
        if bundle:
            self.bundle = bundle
        else:
            self._renew_at = 0.0
        self._wake.set()

    async def keep(self) -> None:
        """Renew forever: at about half the lifetime, or when asked."""
        delay = RETRY_MIN_S
        while True:
            wait = self._renew_at - time.time()
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                if self._renew_at > time.time():
                    continue
            try:
                await self._renew()
                self.renewals += 1
                delay = RETRY_MIN_S
            except (TulleError, OSError, http.HttpError, TimeoutError, ssl.SSLError) as exc:
                remaining = self._not_after - time.time()
                level = logging.ERROR if remaining < 60 else logging.WARNING
                log.log(level, "certificate renewal failed (%s); %.0fs of validity left",
                        getattr(exc, "message", exc), remaining)
                self._renew_at = time.time() + min(delay, max(remaining / 10, RETRY_MIN_S))
                delay = min(delay * 2, RETRY_MAX_S)

    async def _renew(self) -> None:
        if self._not_after > time.time():
            try:
                await self._request(headers={}, client_cert=(self.cert_file, self.key_file))
            except (IdentityError, ssl.SSLError) as exc:
                log.warning("renewal with the current certificate was refused (%s); "
                            "enrolling again", getattr(exc, "message", exc))
            else:
                return
        else:
            log.warning("the certificate expired before it could be renewed; enrolling again")
        token = await self._reenrol()
        await self._request(headers={"Authorization": f"Bearer {token}"}, client_cert=None)

    async def _request(self, headers: dict[str, str], client_cert: tuple[Path, Path] | None,
                       csr: str | None = None) -> None:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname = False  # we check the SPIFFE ID instead
        tls.load_verify_locations(cadata=self.bundle)
        if client_cert is not None:
            tls.load_cert_chain(*client_cert)
        generation = self.generation + 1
        key_file = workload_key_file(self.directory, generation)
        if csr is None:
            csr = await _make_csr(key_file, self.enrolment.spiffe_id)
        try:
            response = await http.request_json(
                self.enrolment.host, self.enrolment.port, "POST", "/v1/identity/certificates",
                # Only the key's number: the control plane knows where our keys live.
                {"node": self.node_id, "csr": csr, "keyGeneration": generation},
                headers=headers, tls=tls, peer_uri=self.enrolment.control_plane_id,
                timeout=15.0)
        except BaseException:
            key_file.unlink(missing_ok=True)
            raise
        if response.status != 200:
            key_file.unlink(missing_ok=True)
            raise _error(response.status, response.body)
        answer: dict[str, Any] = response.json()
        write_private(self.directory / f"cert-{generation}.pem", answer["certificate"])
        previous = self.generation
        self.generation = generation
        self.serial = answer["serial"]
        self.bundle = answer.get("trustBundle") or self.bundle
        self._not_after = float(answer["notAfter"])
        remaining = self._not_after - time.time()
        self._renew_at = time.time() + remaining * random.uniform(0.45, 0.55)
        # Once the proxy ACKed the new certificate, only the previous key may still be in use
        # on pooled connections' handshakes in flight: keep it, delete anything older.
        self._delete_older_than(previous if answer.get("acked") else previous - 1)
        for renewed in self.on_renewed:
            renewed()
        log.info("certificate %s for %s, valid %.0fs", self.serial, self.enrolment.spiffe_id,
                 remaining)

    def forget(self) -> None:
        """Delete every key and certificate: the workload has stopped."""
        self._delete_older_than(self.generation + 1)

    def _delete_older_than(self, generation: int) -> None:
        for path in self.directory.glob("*.pem"):
            stem = path.stem.rsplit("-", 1)
            if len(stem) == 2 and stem[1].isdigit() and int(stem[1]) < generation:
                path.unlink(missing_ok=True)


def write_xds_client_secret(workdir: Path, cert_file: Path, key_file: Path) -> None:
    """The SDS file the sidecar's xDS cluster reads its client certificate from (when xDS runs
    over TLS): it names the files, and is replaced in one move, which Envoy watches for."""
    directory = workdir / xdsclient.DIRECTORY
    ensure_private_dir(directory)
    secret = {"resources": [{
        "@type": xdsclient.SECRET_TYPE, "name": xdsclient.SECRET_NAME,
        "tls_certificate": {"certificate_chain": {"filename": str(cert_file.absolute())},
                            "private_key": {"filename": str(key_file.absolute())}}}]}
    staged = directory / ".secret.json.new"
    write_private(staged, json.dumps(secret))
    staged.replace(workdir / xdsclient.FILE)


def write_xds_roots(workdir: Path, bundle_pem: str) -> None:
    """The SDS file of the roots the sidecar's xDS cluster checks the control plane against,
    replaced in one move whenever the bundle changes."""
    directory = workdir / xdsclient.DIRECTORY
    ensure_private_dir(directory)
    secret = {"resources": [{
        "@type": xdsclient.SECRET_TYPE, "name": xdsclient.ROOTS_SECRET_NAME,
        "validation_context": {"trusted_ca": {"inline_string": bundle_pem}}}]}
    staged = directory / ".roots.json.new"
    write_private(staged, json.dumps(secret))
    staged.replace(workdir / xdsclient.ROOTS_FILE)


@dataclass(frozen=True)
class PreparedKey:
    spiffe_id: str
    csr: asyncio.Task[str]


def prepare_first_key(directory: Path, spiffe_id: str) -> PreparedKey:
    """Start making the first key (key-1.pem) and its CSR in the background."""
    ensure_private_dir(directory)
    return PreparedKey(spiffe_id, asyncio.create_task(
        _make_csr(workload_key_file(directory, 1), spiffe_id)))


async def _make_csr(key_file: Path, spiffe_id: str) -> str:
    """A new key in ``key_file`` (0600) and its CSR, made by a child process: the openssl
    command when there is one (10 ms), else Python's cryptography (150 ms)."""
    openssl = shutil.which("openssl")
    if openssl is not None:
        csr = await _run_keygen([
            openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(key_file), "-subj", "/O=tulle",
            "-addext", f"subjectAltName=URI:{spiffe_id}", "-outform", "PEM"])
        if csr is not None:
            return csr
    csr = await _run_keygen([sys.executable, "-m", "tulle.agent.keygen", str(key_file),
                             spiffe_id])
    if csr is None:
        raise IdentityError("could not make a key and CSR",
                            hint="install the openssl command, or the cryptography package")
    return csr


async def _run_keygen(command: list[str]) -> str | None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL, preexec_fn=_private_umask,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    out, err = await process.communicate()
    if process.returncode != 0 or b"CERTIFICATE REQUEST" not in out:
        log.warning("%s could not make a key: %s", command[0], err.decode(errors="replace"))
        return None
    return out.decode()


def _private_umask() -> None:
    os.umask(0o077)  # the key file is created 0600


def _error(status: int, body: bytes) -> TulleError:
    try:
        return error_from_dict(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return IdentityError(f"the control plane refused the certificate request "
                             f"(HTTP {status})")
