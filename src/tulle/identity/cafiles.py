"""Where the CA keeps its files: the state directory's ``ca/`` (one control plane), or a
store that control-plane replicas share (see tulle.controlplane.cavault), behind one small
contract. Names are flat: ``state.json``, ``<id>.crt``, ``<id>.key``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from tulle.settings import ensure_private_dir, write_private


class CaFiles(Protocol):
    @property
    def where(self) -> str:
        """Where the files are, for messages ("/home/u/.tulle/ca", "etcd /tulle/ca/")."""

    def read(self, name: str) -> bytes | None:
        """The file's bytes; None when it does not exist."""

    def write(self, name: str, data: bytes) -> None: ...

    def create(self, name: str, data: bytes) -> bool:
        """Write only if ``name`` does not exist yet; whether it was written (two replicas
        starting at once: one CA is made, the other opens it)."""

    def swap(self, name: str, expected: bytes | None, data: bytes) -> bool:
        """Write only if ``name`` still holds ``expected`` (None: does not exist); whether
        it was written (a revocation on one replica and a rotation stage on another at the
        same moment: neither overwrites the other)."""


class DirectoryFiles:
    """Files in a 0700 directory, each written 0600 and atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def where(self) -> str:
        return str(self.directory)

    def names(self) -> list[str]:
        try:
            return sorted(p.name for p in self.directory.iterdir() if not p.name.startswith("."))
        except FileNotFoundError:
            return []

    def read(self, name: str) -> bytes | None:
        try:
            return (self.directory / name).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        ensure_private_dir(self.directory)
        write_private(self.directory / name, data.decode())

    def swap(self, name: str, expected: bytes | None, data: bytes) -> bool:
        # One control plane writes this directory (its lock): nothing changes it meanwhile.
        if self.read(name) != expected:
            return False
        self.write(name, data)
        return True

    def create(self, name: str, data: bytes) -> bool:
        ensure_private_dir(self.directory)
        try:
            fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return True
