"""Small facts about this host that several components need: free loopback ports and the end
of a log file. Standard library only (the agent uses it)."""

from __future__ import annotations

import socket
from pathlib import Path

from tulle.settings import LOOPBACK


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def tail(path: Path, lines: int = 10) -> str:
    """The last ``lines`` lines of a log file, for error messages ("" if unreadable)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
