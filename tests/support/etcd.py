"""A real etcd server for tests: one per test process, on its own ports and data directory.

Tests share it by giving each store a prefix of its own. etcd comes from Debian's
etcd-server package, which scripts/test.sh installs; a machine without it fails with that
hint rather than skipping, since a skipped store test hides a broken store.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.mesh import wait_for
from tests.support.ports import free_port


@contextmanager
def etcd_server() -> Iterator[str]:
    """Runs etcd on loopback; yields its client URL (http://127.0.0.1:PORT)."""
    binary = shutil.which("etcd")
    if binary is None:
        raise RuntimeError("etcd is not installed: run scripts/test.sh (it installs Debian's "
                           "etcd-server), or `apt-get install etcd-server`")
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    with tempfile.TemporaryDirectory(prefix="tulle-etcd-") as data:
        log = (Path(data) / "etcd.log").open("wb")
        process = subprocess.Popen(
            [binary, "--data-dir", str(Path(data) / "data"), "--name", "test",
             "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"test=http://127.0.0.1:{peer}"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            def healthy() -> bool:
                if process.poll() is not None:
                    raise AssertionError("etcd exited: "
                                         + (Path(data) / "etcd.log").read_text()[-2000:])
                try:
                    with urllib.request.urlopen(url + "/health", timeout=1) as answer:
                        return b'"true"' in answer.read()
                except OSError:
                    return False

            wait_for("etcd to answer /health", healthy, 30)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
