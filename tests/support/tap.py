"""`tulle tap` as a user runs it: a CLI process whose JSON lines are read as they arrive, each
stamped with the time it arrived."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.mesh import TULLE, Mesh, wait_for

TAP_LOGGER = "envoy.access_loggers.http_grpc"
FILE_LOGGER = "envoy.access_loggers.file"
SECRETS = {"Authorization": "Bearer tap-secret-token", "Cookie": "session=tap-secret-cookie",
           "X-Api-Key": "tap-secret-key"}


def identity(account: str, namespace: str = "default") -> str:
    return f"spiffe://tulle.local/ns/{namespace}/sa/{account}"


REFUSED_LOG_NAME = "tulle-egress-refused"


def loggers(mesh: Mesh, name: str) -> list[str]:
    """The access loggers in a sidecar's listeners, in every state (active, warming...), but
    the outbound listener's log of refused egress, which is always there."""
    dump = json.loads(mesh.admin(name, "config_dump", resource="dynamic_listeners"))
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            found.extend(str(logger.get("name")) for logger in node.get("access_log", [])
                         if logger.get("typed_config", {}).get("common_config", {}).get(
                             "log_name") != REFUSED_LOG_NAME)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(dump)
    return found


@dataclass(frozen=True)
class Arrival:
    event: dict[str, Any]
    at: float  # time.time() when the line reached the test


@dataclass
class Tap:
    """A running `tulle tap ... -o json` (or `-o table`: then only ``lines`` fill)."""

    process: subprocess.Popen[str]
    table: bool = False
    arrivals: list[Arrival] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, mesh: Mesh, *args: str, attach_timeout: float = 20.0,
              output: str = "json") -> Tap:
        process = subprocess.Popen(
            [*TULLE, "--state-dir", str(mesh.state_dir), "tap", *args, "-o", output],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=mesh.env())
        tap = cls(process, table=output == "table")
        threading.Thread(target=tap._read_stdout, daemon=True).start()
        threading.Thread(target=tap._read_stderr, daemon=True).start()
        # The CLI says "tapping ..." once every tapped sidecar has ACKed its logger.
        wait_for("the tap to attach", lambda: tap.attached or tap._exited(), attach_timeout)
        assert tap.attached, f"tap did not attach: {tap.output()}"
        return tap

    @property
    def attached(self) -> bool:
        return any(line.startswith("tapping ") for line in self.stderr)

    def _exited(self) -> bool:
        return self.process.poll() is not None

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip():
                self.lines.append(line.rstrip("\n"))
                if not self.table:
                    self.arrivals.append(Arrival(json.loads(line), time.time()))

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line.rstrip("\n"))

    def events(self, **match: Any) -> list[dict[str, Any]]:
        return [a.event for a in self.arrivals
                if all(a.event.get(k) == v for k, v in match.items())]

    def wait(self, what: str, timeout: float = 10.0, count: int = 1,
             **match: Any) -> list[Arrival]:
        """Until at least ``count`` events with these fields arrived."""
        def found() -> list[Arrival] | None:
            hits = [a for a in self.arrivals
                    if all(a.event.get(k) == v for k, v in match.items())]
            return hits if len(hits) >= count else None

        return wait_for(what, found, timeout)

    def stop(self) -> int:
        """Ctrl-C, as a user ends it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def output(self) -> str:
        return "\n".join(self.stderr)
