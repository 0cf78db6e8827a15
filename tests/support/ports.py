"""Ports for the tests' own listeners, which must be known before the process that binds them
starts: the echo application's port (`tulle run --port P`) and `--upstream SERVICE:P` binds.

Binding port 0 and releasing it (the old ``free_port``) races: the kernel may hand the same
port to another pytest worker, or to anything else that binds port 0 or connects out, before
the application binds it. So ports come from outside the kernel's ephemeral range instead:

- Below the range in ``/proc/sys/net/ipv4/ip_local_port_range`` (above it if there is no room
  below). The kernel never chooses such a port for a bind to port 0 or an outgoing
  connection, so nothing kernel-chosen can take one: not the control plane (bound to port 0 by
  the fixture), nor the Envoy and agent ports that `tulle run` picks, nor client sockets.
- Split into blocks. A process claims a block by holding an exclusive ``flock`` on the block's
  file in the temporary directory, for as long as it lives (the kernel releases it when the
  process dies, however it dies). No other process (another xdist worker, or another pytest
  session on the same machine, which would share worker names) hands out ports from it.
- Within its block, a process hands ports out in order and never twice, so a port a finished
  test used (perhaps still in TIME_WAIT) is not reused; each one is checked bindable first,
  which skips ports held by unrelated programs.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

# Below: the ports tulle uses by default (15700-15712), so a developer's own control plane
# never meets the tests.
LOWEST = 20000
BLOCK = 250
PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOCKS = Path(tempfile.gettempdir()) / "tulle-test-ports"


def ephemeral_range(source: Path = PORT_RANGE) -> tuple[int, int]:
    """The kernel's range for port 0 and outgoing connections (Linux's default if unknown)."""
    try:
        low, high = (int(n) for n in source.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def blocks(ephemeral: tuple[int, int], lowest: int = LOWEST, size: int = BLOCK
           ) -> list[range]:
    """Every block of ``size`` ports outside ``ephemeral``, from ``lowest`` up."""
    low, high = ephemeral
    spans = [(lowest, min(low, 65536)), (max(high + 1, lowest), 65536)]
    return [range(start, start + size) for begin, end in spans
            for start in range(begin, end - size + 1, size)]


def bindable(port: int) -> bool:
    """Free on every address (the wildcard conflicts with any bind of the port), and with no
    connection left on it: no SO_REUSEADDR."""
    with socket.socket() as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
        return True


class PortPool:
    """Hands out ports from blocks this process holds; see the module's docstring."""

    def __init__(self, candidates: list[range], locks: Path = LOCKS) -> None:
        self._candidates = candidates
        self._locks = locks
        self._held: list[IO[bytes]] = []
        self._ports: Iterator[int] = iter(())
        self._mutex = threading.Lock()

    def take(self) -> int:
        with self._mutex:
            while True:
                for port in self._ports:
                    if bindable(port):
                        return port
                self._ports = iter(self._claim())

    def _claim(self) -> range:
        self._locks.mkdir(mode=0o777, parents=True, exist_ok=True)
        while self._candidates:
            block = self._candidates.pop(0)
            with contextlib.suppress(OSError):  # another user's file we may not open
                handle = (self._locks / f"{block.start}-{block.stop - 1}").open("ab")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    continue
                self._held.append(handle)  # held until the process exits
                return block
        raise RuntimeError(f"no free block of test ports left (locks in {self._locks}); "
                           f"the kernel's ephemeral range is {ephemeral_range()}")


def free_port() -> int:
    """A port no other test process and nothing kernel-chosen will take; bindable now."""
    return _pool(os.getpid()).take()


@functools.cache
def _pool(pid: int) -> PortPool:
    """One pool per process: a forked child claims blocks of its own."""
    return PortPool(blocks(ephemeral_range()))
