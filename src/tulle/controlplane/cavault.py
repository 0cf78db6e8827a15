"""The CA's files in a store that control-plane replicas share, encrypted at rest.

Every replica signs with the same issuer and hands out the same trust bundle, so the CA's
keys live in the shared store (etcd), never in clear: each file is sealed with AES-256-GCM
under a key the operator provides (``--ca-encryption-key FILE``, or the environment variable
``TULLE_CA_ENCRYPTION_KEY``), both holding 32 random bytes in base64 (`openssl rand -base64
32`). The file's name is bound into the seal, so one sealed file cannot stand in for another.
Whoever can read etcd without the key learns nothing of the keys; whoever lacks the key cannot
start a replica.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tulle.errors import StateError, UsageError
from tulle.store.etcd import EtcdStore

ENV_KEY = "TULLE_CA_ENCRYPTION_KEY"
_MAGIC = b"tulle-ca-v1:"
CA_AREA = "ca"


def encryption_key(path: str | None) -> bytes:
    """The operator's key: from the file, else from the environment."""
    if path is not None:
        try:
            text = Path(path).read_text().strip()
        except OSError as exc:
            raise UsageError(f"--ca-encryption-key {path}: {exc.strerror or exc}",
                             hint="give the file that holds the key (`openssl rand -base64 "
                                  "32 > FILE`)") from exc
        source = f"--ca-encryption-key {path}"
    elif os.environ.get(ENV_KEY):
        text, source = os.environ[ENV_KEY].strip(), ENV_KEY
    else:
        raise UsageError("a control plane on a shared store needs a key to encrypt the CA's "
                         "keys with", hint=f"pass --ca-encryption-key FILE or set {ENV_KEY}, "
                                           "both holding `openssl rand -base64 32`; every "
                                           "replica needs the same key")
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UsageError(f"{source}: not base64", hint="make one with `openssl rand -base64 "
                                                       "32`") from exc
    if len(key) != 32:
        raise UsageError(f"{source}: {len(key)} bytes, not 32",
                         hint="make one with `openssl rand -base64 32`")
    return key


class SealedFiles:
    """The CA's files (tulle.identity.cafiles.CaFiles) in etcd, each sealed."""

    def __init__(self, store: EtcdStore, key: bytes) -> None:
        self._store = store
        self._aead = AESGCM(key)

    @property
    def where(self) -> str:
        return "the shared store (etcd, ca/)"

    def _seal(self, name: str, data: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return _MAGIC + nonce + self._aead.encrypt(nonce, data, name.encode())

    def read(self, name: str) -> bytes | None:
        return self._open(name, self._store.read_file(CA_AREA, name))

    def swap(self, name: str, expected: bytes | None, data: bytes) -> bool:
        sealed, revision = self._store.read_file_revision(CA_AREA, name)
        if self._open(name, sealed) != expected:
            return False
        return self._store.swap_file(CA_AREA, name, revision, self._seal(name, data))

    def _open(self, name: str, sealed: bytes | None) -> bytes | None:
        if sealed is None:
            return None
        if not sealed.startswith(_MAGIC):
            raise StateError(f"the CA file {name} in the shared store is not sealed by tulle",
                             hint="restore the CA from a backup")
        body = sealed[len(_MAGIC):]
        try:
            return self._aead.decrypt(body[:12], body[12:], name.encode())
        except InvalidTag as exc:
            raise StateError(f"cannot open the CA file {name} in the shared store: the "
                             "encryption key is not the one it was sealed with",
                             hint="give every replica the same --ca-encryption-key (or "
                                  f"{ENV_KEY})") from exc

    def write(self, name: str, data: bytes) -> None:
        self._store.write_file(CA_AREA, name, self._seal(name, data))

    def create(self, name: str, data: bytes) -> bool:
        return self._store.create_file(CA_AREA, name, self._seal(name, data))
