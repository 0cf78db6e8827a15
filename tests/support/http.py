"""Plain HTTP requests from the test to a local port (a client sidecar's --upstream bind)."""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: Any
    seconds: float

    @property
    def workload(self) -> str | None:
        return self.body.get("workload") if isinstance(self.body, dict) else None


def request(port: int, path: str = "/", *, method: str = "GET",
            headers: dict[str, str] | None = None, timeout: float = 10.0) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.monotonic()
    try:
        connection.request(method, path, body=b"" if method != "GET" else None,
                           headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        elapsed = time.monotonic() - started
        reply_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = raw.decode(errors="replace")
    return Reply(response.status, reply_headers, body, elapsed)


def control(app_port: int, **settings: object) -> None:
    """Change how an echo application behaves (on its own port, outside the mesh)."""
    query = "&".join(f"{k}={v}" for k, v in settings.items())
    with urllib.request.urlopen(f"http://127.0.0.1:{app_port}/control?{query}", timeout=5):
        pass


def counter(app_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{app_port}/counter", timeout=5) as reply:
        return int(json.load(reply)["requests"])
