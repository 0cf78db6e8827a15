"""Other hosts for tests: network namespaces joined to this one by a veth pair, or several
joined to each other by a bridge (:func:`network`).

A host gets its own loopback and one address, ``peer`` (10.213.N.2), on a point-to-point link
whose other end, ``local`` (10.213.N.1), is in the test's own namespace: processes started with
``host.command(...)`` see only their host's addresses, and reach this one at ``local``. The
link number N is claimed with an flock, like the tests' ports, so parallel tests never share a
subnet. Everything is removed when the host is closed (or its test process dies: the next
claim of N clears what is left).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LOCKS = Path(tempfile.gettempdir()) / "tulle-test-hosts"
LINKS = 1024
NETWORK_LOCKS = Path(tempfile.gettempdir()) / "tulle-test-networks"
NETWORKS = 200


def available() -> str | None:
    """Why hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@dataclass
class Host:
    name: str  # the namespace
    local: str  # this namespace's end of the link
    peer: str  # the host's address
    link: str  # the veth in this namespace
    _lock: IO[str]

    def command(self, *argv: str) -> list[str]:
        """``argv`` run on this host."""
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        """Take the link down: the host is cut off (a partition)."""
        _ip("link", "set", self.link, "down")

    def restore(self) -> None:
        _ip("link", "set", self.link, "up")

    def close(self) -> None:
        _remove(self.name, self.link)
        self._lock.close()


def _remove(name: str, link: str) -> None:
    _ip("link", "delete", link, check=False)
    _ip("netns", "delete", name, check=False)


def _claim(locks: Path = LOCKS, count: int = LINKS) -> tuple[int, IO[str]]:
    locks.mkdir(exist_ok=True)
    for number in range(count):
        handle = (locks / str(number)).open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return number, handle
    raise RuntimeError(f"all {count} test host links ({locks}) are taken")


@contextlib.contextmanager
def host() -> Iterator[Host]:
    number, lock = _claim()
    name, link = f"tulle-h{number}", f"tlh{number}a"
    _remove(name, link)  # a dead test's leftovers
    third, fourth = divmod(number, 64)
    local, peer = f"10.213.{third}.{fourth * 4 + 1}", f"10.213.{third}.{fourth * 4 + 2}"
    made = Host(name, local, peer, link, lock)
    try:
        _ip("netns", "add", name)
        _ip("link", "add", link, "type", "veth", "peer", "name", f"tlh{number}b")
        _ip("link", "set", f"tlh{number}b", "netns", name)
        _ip("addr", "add", f"{local}/30", "dev", link)
        _ip("link", "set", link, "up")
        inside = ["netns", "exec", name, "ip"]
        _ip(*inside, "addr", "add", f"{peer}/30", "dev", f"tlh{number}b")
        _ip(*inside, "link", "set", f"tlh{number}b", "up")
        _ip(*inside, "link", "set", "lo", "up")
        yield made
    finally:
        made.close()


@contextlib.contextmanager
def network(size: int) -> Iterator[list[Host]]:
    """``size`` hosts on one bridge (a switch) in this namespace: each reaches the others at
    their ``peer`` address (10.214.N.11, .12, ...), and this namespace at ``local`` (the
    bridge's, 10.214.N.1). ``cut()`` takes a host's port on the switch down: it is cut off
    from all the others and from this namespace, and keeps its own addresses."""
    number, lock = _claim(NETWORK_LOCKS, NETWORKS)
    bridge, local = f"tlbr{number}", f"10.214.{number}.1"
    names = [(f"tulle-n{number}-{k}", f"tlb{number}-{k}a", f"tlb{number}-{k}b")
             for k in range(1, size + 1)]

    def remove() -> None:
        for name, link, _ in names:
            _remove(name, link)
        _ip("link", "delete", bridge, check=False)

    remove()  # a dead test's leftovers
    hosts: list[Host] = []
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{local}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for k, (name, link, inner) in enumerate(names, start=1):
            peer = f"10.214.{number}.{10 + k}"
            _ip("netns", "add", name)
            _ip("link", "add", link, "type", "veth", "peer", "name", inner)
            _ip("link", "set", link, "master", bridge)
            _ip("link", "set", link, "up")
            _ip("link", "set", inner, "netns", name)
            inside = ["netns", "exec", name, "ip"]
            _ip(*inside, "addr", "add", f"{peer}/24", "dev", inner)
            _ip(*inside, "link", "set", inner, "up")
            _ip(*inside, "link", "set", "lo", "up")
            hosts.append(Host(name, local, peer, link, lock))
        yield hosts
    finally:
        remove()
        lock.close()
