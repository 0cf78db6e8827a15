"""Continuous traffic through a workload's sidecar, counting every failure."""

from __future__ import annotations

import threading
import time

from tests.support.mesh import Mesh, Workload


class Traffic(threading.Thread):
    """Calls a URL through the client, back to back, and counts failures."""

    def __init__(self, mesh: Mesh, client: Workload, url: str = "http://books/") -> None:
        super().__init__(daemon=True)
        self.mesh, self.client, self.url = mesh, client, url
        self.ok = 0
        self.failures: list[object] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                result = self.mesh.call(self.client, self.url)
            except OSError as exc:
                self.failures.append(exc)
            else:
                if result["status"] == 200:
                    self.ok += 1
                else:
                    self.failures.append(result)
            time.sleep(0.01)  # pacing between requests, not a readiness wait

    def stop(self) -> None:
        self._halt.set()
        self.join(15)
