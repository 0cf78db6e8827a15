"""Constant-rate HTTP load on a local port (a sidecar's --upstream bind), counting failures."""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Requests per second: for a report only (the machine is shared; never assert it)."""
        return self.sent / self.seconds if self.seconds else 0.0

    def report(self, what: str) -> str:
        """One line for the test's output (``pytest -s``): the figures, not a verdict."""
        line = (f"measured: {what}: {self.sent} requests, {len(self.failures)} failed, "
                f"in {self.seconds:.1f}s ({self.rate:.0f} req/s)")
        print(line)
        return line


class Load:
    """``rate`` requests per second, spread over ``threads`` keep-alive connections."""

    def __init__(self, port: int, rate: float = 240.0, threads: int = 4,
                 path: str = "/load") -> None:
        self.port, self.rate, self.path = port, rate, path
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(threads)]
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.result = LoadResult()
        self._started = 0.0

    def start(self) -> Load:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadResult:
        self._halt.set()
        for thread in self._threads:
            thread.join(15)
        self.result.seconds = time.monotonic() - self._started
        return self.result

    def _run(self) -> None:
        interval = len(self._threads) / self.rate
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        due = time.monotonic()
        while not self._halt.is_set():
            due += interval
            failure = None
            try:
                connection.request("GET", self.path)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    failure = f"HTTP {response.status} {response.getheader('x-envoy-flags')}"
            except (OSError, http.client.HTTPException) as exc:
                failure = f"{type(exc).__name__}: {exc}"
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            with self._lock:
                self.result.sent += 1
                if failure is None:
                    self.result.ok += 1
                else:
                    self.result.failures.append(failure)
            pause = due - time.monotonic()
            if pause > 0:  # pacing to the constant rate, not a readiness wait
                time.sleep(pause)
        connection.close()
