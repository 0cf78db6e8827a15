"""Envoy's admin interface: where it listens, and the agent's client of it.

The admin interface can drain, stop and reconfigure Envoy, and it shows Envoy's whole config
(with the xDS credential). No one but the agent may reach it: it listens on a Unix socket, not a
TCP port any local user could connect to, mode 0600, in the workload's directory, which is
0700. The directory's mode is what holds: Envoy binds the socket before it chmods it, and
between the two its mode is the umask's (the agent gives Envoy 077, but a directory does not
depend on that). The control plane reads admin pages only through the agent's admin proxy
(``adminproxy``), which needs the agent's token.

A Unix socket's path must fit in ``sun_path`` (107 bytes and a NUL), and a workload's directory
need not: the state directory can be deep (a test's temporary directory) and names are up to 63
characters each. So Envoy runs in the workload's directory and binds the relative name
``admin.sock`` there, and the agent connects by the absolute path when it fits, else by
``/proc/self/fd/N/admin.sock``, N being a descriptor of the directory (Linux: the agent is
Linux-only already, see ``envoy.die_with_parent``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from tulle.agent import http
from tulle.errors import EnvoyError

ADMIN_SOCKET = "admin.sock"
SOCKET_MODE = 0o600
SUN_PATH_MAX = 107  # bytes of a socket's path, without the NUL that ends it
_FD_DIR = "/proc/self/fd"


class AdminInterface(Protocol):
    """What readers of Envoy's admin interface need (:class:`EnvoyAdmin`; fakes in tests)."""

    async def request(self, method: str, target: str, *, timeout: float = 10.0
                      ) -> http.Response: ...


class EnvoyAdmin:
    """The admin interface of the Envoy that runs in ``directory`` (the workload's). Fails
    at once, before any Envoy starts, if the agent could not reach it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.absolute()
        if not _fits(self.path) and not Path(_FD_DIR).is_dir():
            raise EnvoyError(
                f"the path of Envoy's admin socket {self.path} is longer than the "
                f"{SUN_PATH_MAX} bytes a Unix socket's path can have, and {_FD_DIR} (the way "
                "around that limit) is not mounted",
                hint="use a shorter state directory (--state-dir or TULLE_HOME), or shorter "
                     "workload and namespace names")

    @property
    def path(self) -> Path:
        return self.directory / ADMIN_SOCKET

    def bootstrap(self) -> dict[str, Any]:
        """The bootstrap's ``admin`` section. The path is relative to Envoy's working
        directory, which must be :attr:`directory`."""
        return {"address": {"pipe": {"path": ADMIN_SOCKET, "mode": SOCKET_MODE}}}

    async def request(self, method: str, target: str, *, timeout: float = 10.0
                      ) -> http.Response:
        with connectable(self.path) as address:
            return await http.request_unix(address, method, target, timeout=timeout)


@contextlib.contextmanager
def connectable(path: Path) -> Iterator[str]:
    """A name to connect to the socket at ``path`` by, however long ``path`` is."""
    if _fits(path):
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"{_FD_DIR}/{fd}/{path.name}"
    finally:
        os.close(fd)


def _fits(path: Path) -> bool:
    return len(os.fsencode(path)) <= SUN_PATH_MAX
