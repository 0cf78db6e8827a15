"""Small facts about this host that several components need: free loopback ports, the end of a
log file, and the lock that makes one control plane per state directory. Standard library
only (the agent uses it)."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import IO

from tulle.errors import StateError
from tulle.settings import LOOPBACK, StatePaths, open_private


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


def tail(path: Path, lines: int = 10, since: int = 0) -> str:
    """The last ``lines`` lines of a log file, for error messages ("" if unreadable).
    ``since``: a byte offset; what an earlier run wrote before it is not shown."""
    try:
        with path.open("rb") as file:
            file.seek(since)
            text = file.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def tail_bytes(path: Path, limit: int) -> str:
    """The last ``limit`` bytes of a file, as text (a log for a bug report)."""
    with path.open("rb") as file:
        file.seek(0, 2)
        file.seek(max(0, file.tell() - limit))
        return file.read().decode(errors="replace")


# -- the state directory's lock: one control plane per state directory, released by the
# kernel when the process dies, however it dies.

def acquire_state_lock(paths: StatePaths) -> IO[str]:
    """Hold the lock (until the returned file is closed) and write our pid into it."""
    handle = _open_lock(paths)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise StateError(
            f"a control plane is already running with state directory {paths.root} "
            f"(pid {state_lock_pid(paths) or 'unknown'})",
            hint="use it, stop it with `tulle down`, or choose another --state-dir") from exc
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def state_lock_held(paths: StatePaths) -> bool:
    """Whether a control plane holds the state directory's lock now."""
    if not paths.lock_file.exists():
        return False
    with _open_lock(paths) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _open_lock(paths: StatePaths) -> IO[str]:
    return os.fdopen(open_private(paths.lock_file, os.O_RDWR | os.O_APPEND), "a+")


def state_lock_pid(paths: StatePaths) -> int | None:
    """The pid the lock's holder (or its last holder) wrote into the lock file."""
    try:
        return int(paths.lock_file.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


# -- processes: alive, stopped or gone. `diagnose` tells a frozen process (SIGSTOP, or stuck)
# from a dead one by its state letter in /proc (Linux; elsewhere every process reads as gone).

STOPPED_STATES = frozenset({"T", "t"})  # stopped by a signal, or by a tracer
DEAD_STATES = frozenset({"", "Z", "X"})  # no such process, a zombie, dead


def process_state(pid: int) -> tuple[str, str]:
    """(state letter from ``/proc/PID/stat``, command line) of ``pid``; ("", "") when there is
    no such process. The letter: R running, S sleeping, D in I/O, T stopped, Z zombie."""
    if pid <= 0:
        return "", ""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "", ""
    # "PID (COMM) STATE ...": COMM may hold spaces and parentheses, so split at the last ")".
    fields = stat[stat.rfind(")") + 1:].split()
    command = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return (fields[0] if fields else ""), command
