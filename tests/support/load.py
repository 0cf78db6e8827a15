"""Constant-rate HTTP load on a local port (a sidecar's --upstream bind), counting failures."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


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
                body = response.read()
                if response.status != 200:  # Envoy's own answers say why in their body
                    failure = f"HTTP {response.status} {body[:120]!r}"
            except (OSError, http.client.HTTPException) as exc:
                failure = f"{type(exc).__name__}: {exc}"
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            if failure is not None:  # when: to tell which of a test's steps it fell in
                failure = f"at {time.monotonic() - self._started:.1f}s: {failure}"
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


class LoadOnHost:
    """:class:`Load` run on another host (a network namespace), as its own process: it
    reports its figures as a JSON line twice a second, and its last when its stdin closes."""

    def __init__(self, command: list[str], port: int, rate: float = 240.0) -> None:
        self.result = LoadResult()
        self._process = subprocess.Popen(
            [*command, sys.executable, "-m", "tests.support.load", str(port), str(rate)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPOSITORY, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def stop(self) -> LoadResult:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(30)
        self._reader.join(10)
        return self.result

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            data = json.loads(line)
            self.result = LoadResult(data["sent"], data["ok"], data["failures"],
                                     data["seconds"])


def _serve_figures(port: int, rate: float) -> None:
    load = Load(port, rate).start()
    done = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    while not done.wait(0.5):
        _print_figures(load.result, time.monotonic() - load._started)
    result = load.stop()
    _print_figures(result, result.seconds)


def _print_figures(result: LoadResult, seconds: float) -> None:
    print(json.dumps({"sent": result.sent, "ok": result.ok,
                      "failures": list(result.failures), "seconds": seconds}), flush=True)


if __name__ == "__main__":
    _serve_figures(int(sys.argv[1]), float(sys.argv[2]))
