"""The xDS port is shared by the worker processes (SO_REUSEPORT). A hostile local user must
not join that group and take a share of the proxies' connections: Linux lets only sockets of
the same user share a port, and the control plane holds the port bound (``_reserve``) for as
long as it runs, so that nobody takes it between a worker's death and its replacement."""

from __future__ import annotations

import subprocess

from tests.security.support import probe
from tulle.xds.workers.pool import _reserve

# Run as another user: bind the port with SO_REUSEPORT, as a would-be worker would.
_BIND = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError as exc:
    print(exc.errno)
    sys.exit(1)
print("bound")
"""


def _bind_as_nobody(port: int) -> subprocess.CompletedProcess[str]:
    return probe(_BIND, str(port))


def test_another_user_cannot_share_the_xds_port_while_the_control_plane_holds_it() -> None:
    held, port = _reserve("127.0.0.1:0")
    try:
        refused = _bind_as_nobody(port)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert refused.stdout.strip() == "98"  # EADDRINUSE
    finally:
        held.close()
    # Without the reservation (a worker restarting, had the control plane not held the
    # port), the same bind succeeds: the reservation is what stops it.
    taken = _bind_as_nobody(port)
    assert taken.returncode == 0 and taken.stdout.strip() == "bound", taken.stderr
