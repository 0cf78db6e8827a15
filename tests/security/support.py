"""What the security tests share: a mesh whose only protection is tulle's own, and a way to act
as another local user.

- **A world-traversable root.** pytest's temporary directories are 0700 under a 0700 base, so
  another user could not reach anything in them whatever tulle did. The security tests put
  their state directory under a 0755 directory instead: what keeps a stranger out is then the
  modes tulle itself sets (the state directory, the workload directories, sockets, files).
- **Another local user.** ``as_nobody`` runs a command as uid/gid ``nobody`` with no
  supplementary groups (``setpriv``), as an unprivileged neighbour on a shared host would.
  Probes run with the system's Python and its standard library only (``PROBE_PYTHON``):
  nothing of tulle's, and nothing the neighbour could not run.

The tests need root to switch users, as CI has; elsewhere they fail with a message saying so
(a skipped security test would hide what it is there to catch).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

NOBODY_UID = 65534
NOBODY_GID = 65534


def probe_python() -> str:
    """A Python that the neighbour can run: the system's if present, else this one."""
    for candidate in ("/usr/bin/python3", sys.executable):
        if os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError("no Python to run probes with")


def require_root() -> None:
    if os.geteuid() != 0:
        raise AssertionError("the security tests switch to another local user: run them as "
                             "root (CI does), e.g. `sudo bash scripts/test.sh tests/security`")


def as_nobody(argv: Sequence[str], *, timeout: float = 30.0, stdin: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``nobody`` (no groups), in /, with a minimal environment."""
    require_root()
    command = ["setpriv", f"--reuid={NOBODY_UID}", f"--regid={NOBODY_GID}", "--clear-groups",
               "--", *argv]
    return subprocess.run(command, input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd="/", check=False,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/", **(env or {})})


def probe(code: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a Python snippet as ``nobody``; ``sys.argv[1:]`` are ``args``."""
    return as_nobody([probe_python(), "-c", code, *args], timeout=timeout)


@contextmanager
def exposed_root() -> Iterator[Path]:
    """A fresh directory every local user may traverse (0755), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="tulle-security-"))
    try:
        root.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
