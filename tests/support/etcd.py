"""Real etcd servers for tests: one member, or a cluster of three, each on its own ports and
data directory, per test or per test process.

Tests share a server by giving each store a prefix of its own. etcd comes from Debian's
etcd-server package, which scripts/test.sh installs; a machine without it fails with that
hint rather than skipping, since a skipped store test hides a broken store.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import etcdpki
from tests.support.mesh import wait_for
from tests.support.netns import Host
from tests.support.ports import free_port


@dataclass
class Member:
    name: str
    url: str  # client URL
    process: subprocess.Popen[bytes]
    log: Path
    command: list[str]
    tls: ssl.SSLContext | None = None  # to ask a member over TLS if it is healthy

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def restart(self) -> None:
        """Start again on the same data directory (it rejoins its cluster)."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        wait_for(f"etcd {self.name} to answer /health again", lambda: _healthy(self), 30)


def _binary() -> str:
    binary = shutil.which("etcd")
    if binary is None:
        raise RuntimeError("etcd is not installed: run scripts/test.sh (it installs Debian's "
                           "etcd-server), or `apt-get install etcd-server`")
    return binary


def _healthy(member: Member) -> bool:
    if member.process.poll() is not None:
        raise AssertionError(f"etcd {member.name} exited: " + member.log.read_text()[-2000:])
    try:
        with urllib.request.urlopen(member.url + "/health", timeout=1,
                                    context=member.tls) as answer:
            return b'"true"' in answer.read()
    except OSError:
        return False


def _stop(members: list[Member]) -> None:
    for member in members:
        if member.process.poll() is None:
            member.process.terminate()
            try:
                member.process.wait(10)
            except subprocess.TimeoutExpired:
                member.kill()


@contextmanager
def etcd_cluster(size: int = 1) -> Iterator[list[Member]]:
    """Runs ``size`` etcd members on loopback as one cluster; yields them."""
    binary = _binary()
    ports = [(free_port(), free_port()) for _ in range(size)]
    names = [f"m{i}" for i in range(size)]
    initial = ",".join(f"{n}=http://127.0.0.1:{peer}"
                       for n, (_, peer) in zip(names, ports, strict=True))
    members: list[Member] = []
    with tempfile.TemporaryDirectory(prefix="tulle-etcd-") as data:
        try:
            for name, (client, peer) in zip(names, ports, strict=True):
                url = f"http://127.0.0.1:{client}"
                log = Path(data) / f"{name}.log"
                command = [binary, "--data-dir", str(Path(data) / name), "--name", name,
                           "--listen-client-urls", url, "--advertise-client-urls", url,
                           "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                           "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                           "--initial-cluster", initial, "--initial-cluster-state", "new"]
                with log.open("wb") as out:
                    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
                members.append(Member(name, url, process, log, command))
            for member in members:
                wait_for(f"etcd {member.name} to answer /health",
                         lambda m=member: _healthy(m), 30)  # type: ignore[misc]
            yield members
        finally:
            _stop(members)


@contextmanager
def etcd_server() -> Iterator[str]:
    """One etcd member on loopback; yields its client URL (http://127.0.0.1:PORT)."""
    with etcd_cluster(1) as (member,):
        yield member.url


@contextmanager
def etcd_on_hosts(hosts: list[Host], directory: Path
                  ) -> Iterator[tuple[list[Member], etcdpki.EtcdPki]]:
    """A member on each host (a network namespace), on its address, over TLS with client
    certificates for clients and peers alike: as between real hosts."""
    binary = _binary()
    pki = etcdpki.make(directory / "pki", [h.peer for h in hosts])
    initial = ",".join(f"m{k}=https://{h.peer}:2380" for k, h in enumerate(hosts))
    health = ssl.create_default_context(cafile=str(pki.ca))
    health.load_cert_chain(pki.client.cert, pki.client.key)
    members: list[Member] = []
    try:
        for k, host in enumerate(hosts):
            own = pki.members[host.peer]
            url = f"https://{host.peer}:2379"
            log = directory / f"m{k}.log"
            command = host.command(
                binary, "--data-dir", str(directory / f"m{k}"), "--name", f"m{k}",
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--listen-peer-urls", f"https://{host.peer}:2380",
                "--initial-advertise-peer-urls", f"https://{host.peer}:2380",
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--cert-file", str(own.cert), "--key-file", str(own.key),
                "--trusted-ca-file", str(pki.ca), "--client-cert-auth",
                "--peer-cert-file", str(own.cert), "--peer-key-file", str(own.key),
                "--peer-trusted-ca-file", str(pki.ca), "--peer-client-cert-auth")
            with log.open("wb") as out:
                process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
            members.append(Member(f"m{k}", url, process, log, command, health))
        for member in members:
            wait_for(f"etcd {member.name} to answer /health",
                     lambda m=member: _healthy(m), 30)  # type: ignore[misc]
        yield members, pki
    finally:
        _stop(members)
