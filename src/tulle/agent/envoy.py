"""Starting, watching and stopping the sidecar's Envoy."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tulle.agent import http
from tulle.agent.envoyadmin import EnvoyAdmin
from tulle.errors import EnvoyError
from tulle.local import tail
from tulle.settings import SIDECAR_DRAIN_TIME_S, create_private

_PR_SET_PDEATHSIG = 1
# With the immediate drain strategy each connection accepted with a listener's old config
# closes after its next response, so busy connections move to the new config at once.
DRAIN_TIME_S = SIDECAR_DRAIN_TIME_S


def die_with_parent(signum: int) -> Callable[[], None]:
    """A preexec_fn: the child gets ``signum`` if the agent dies, even by SIGKILL."""
    # Resolve libc here, in the parent: importing in a forked child can deadlock.
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def set_parent_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)

    return set_parent_death_signal


class EnvoyProcess:
    """Envoy runs in its admin interface's directory (the workload's), where it binds its
    admin socket by a relative name: every other path it is given is absolute."""

    def __init__(self, binary: Path, bootstrap: Path, log_path: Path, admin: EnvoyAdmin, *,
                 concurrency: int = 1, log_level: str = "warning") -> None:
        # A user's --envoy-binary may be relative to where they ran `tulle run`.
        self.binary = binary.absolute()
        self.bootstrap = bootstrap.absolute()
        self.log_path = log_path.absolute()
        self.admin = admin
        self.concurrency = concurrency
        self.log_level = log_level
        self.process: asyncio.subprocess.Process | None = None
        self.ready = False  # LIVE since its last start
        self.starts = 0

    def command(self) -> Sequence[str]:
        return [str(self.binary), "-c", str(self.bootstrap),
                # Many sidecars share a host: hot restart's shared memory would collide.
                "--disable-hot-restart",
                "--concurrency", str(self.concurrency),
                "--log-level", self.log_level,
                "--log-path", str(self.log_path),
                "--drain-time-s", str(DRAIN_TIME_S), "--drain-strategy", "immediate",
                # Access logs reach their file within a second (Envoy's default is 10 s).
                "--file-flush-interval-msec", "1000"]

    async def start(self) -> None:
        self.ready = False
        self.starts += 1
        create_private(self.log_path)  # Envoy appends to an existing file, keeping its mode
        self.process = await asyncio.create_subprocess_exec(
            *self.command(), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=die_with_parent(signal.SIGKILL), start_new_session=True,
            cwd=self.admin.directory,
            # What Envoy creates is its owner's alone, whatever the umask tulle was started
            # with: the admin socket from its bind (before Envoy's chmod), its log, the access
            # log.
            umask=0o077)

    async def wait_ready(self, timeout: float) -> None:
        """Until Envoy is LIVE: its first config is ACKed and its listeners are bound."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.returncode is not None:
                raise EnvoyError(f"Envoy exited during start-up:\n{self.log_tail()}",
                                 hint=f"see {self.log_path}")
            with contextlib.suppress(OSError, http.HttpError, TimeoutError):
                response = await self.admin.request("GET", "/ready", timeout=1.0)
                if response.status == 200:
                    self.ready = True
                    return
            await asyncio.sleep(0.01)
        raise EnvoyError(f"Envoy did not become ready within {timeout:.0f}s:\n"
                         f"{self.log_tail()}",
                         hint="check that the control plane is running (`tulle status`) and "
                              f"see {self.log_path}")

    async def stop(self, timeout: float = 5.0) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def log_tail(self, lines: int = 6) -> str:
        return tail(self.log_path, lines) or "(no Envoy log)"
